import Foundation
import XCTest
import Engine
import Inference

/// The search index: add, replace, remove, search order and scores, files, and what it refuses.
final class EmbeddingIndexTests: XCTestCase {
    func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-index-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func unit(_ v: [Float]) -> [Float] {
        let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return v.map { $0 / n }
    }

    func testAddSearchReplaceRemove() throws {
        let index = try EmbeddingIndex(dim: 3, modelHash: "m1")
        let a = unit([1, 0, 0]), b = unit([1, 1, 0]), c = unit([0, 0, 1])
        XCTAssertEqual(try index.add(paths: ["a", "b", "c"], embeddings: a + b + c, modelHash: "m1"), 3)
        let q = unit([1, 0.2, 0])
        var hits = try index.search(queries: q + c, modelHash: "m1", top: 2)
        XCTAssertEqual(hits[0].map(\.path), ["a", "b"])
        XCTAssertEqual(hits[0][0].score, zip(q, a).reduce(0) { $0 + $1.0 * $1.1 }, accuracy: 1e-6)
        XCTAssertEqual(hits[1].map(\.path), ["c", "a"], "a and b both score 0 against c: the earlier row first")
        // Re-adding a path replaces its embedding; it keeps its row.
        XCTAssertEqual(try index.add(paths: ["a"], embeddings: c, modelHash: "m1"), 0)
        XCTAssertEqual(index.count, 3)
        hits = try index.search(queries: c, modelHash: "m1", top: 3)
        XCTAssertEqual(hits[0].map(\.path), ["a", "c", "b"])
        XCTAssertEqual(index.remove(paths: ["c", "nowhere"]), ["nowhere"])
        XCTAssertEqual(index.paths, ["a", "b"])
        XCTAssertEqual(index.vectors, c + b, "rows after a removed one move up")
        hits = try index.search(queries: b, modelHash: "m1", top: 10)
        XCTAssertEqual(hits[0].map(\.path), ["b", "a"])
    }

    /// Rows added in chunks that outgrow the store several times keep their values and order, a refused
    /// chunk (a NaN in its last row) leaves the rows as they were, and search sees every row.
    func testGrowingTheRowsInChunks() throws {
        let dim = 24, index = try EmbeddingIndex(dim: dim, modelHash: "m")
        var g = RandomGenerator(seed: 3), all: [Float] = []
        for c in 0..<5 {
            let rows = (0..<(700 * dim)).map { _ in g.nextUniform() - 0.5 }
            try index.add(paths: (0..<700).map { "c\(c)-\($0)" }, embeddings: rows, modelHash: "m")
            all += rows
            var bad = rows
            bad[bad.count - 1] = .infinity
            XCTAssertThrowsError(try index.add(paths: (0..<700).map { "bad\(c)-\($0)" }, embeddings: bad, modelHash: "m")) {
                XCTAssertTrue("\($0)".contains("bad\(c)-699 is not finite"), "\($0)")
            }
        }
        XCTAssertEqual(index.count, 3500)
        XCTAssertEqual(index.vectors, all)
        let q = Array(all[(3499 * dim)...])
        let best = (0..<3500).max { a, b in
            (0..<dim).reduce(Float(0)) { $0 + q[$1] * all[a * dim + $1] } < (0..<dim).reduce(Float(0)) { $0 + q[$1] * all[b * dim + $1] }
        }!
        XCTAssertEqual(try index.search(queries: q, modelHash: "m", top: 1)[0].first?.path, "c\(best / 700)-\(best % 700)")
    }

    func testAnotherModelsQueryIsRefusedByName() throws {
        let index = try EmbeddingIndex(dim: 2, modelHash: "aaaa", location: "idx")
        try index.add(paths: ["x"], embeddings: [1, 0], modelHash: "aaaa")
        XCTAssertThrowsError(try index.search(queries: [1, 0], modelHash: "bbbb", top: 1)) { error in
            XCTAssertEqual(error as? EmbeddingIndexError, .modelMismatch(index: "idx", indexModel: "aaaa", queryModel: "bbbb"))
            XCTAssertTrue("\(error)".contains("built by model aaaa"), "\(error)")
        }
        XCTAssertThrowsError(try index.add(paths: ["y"], embeddings: [0, 1], modelHash: "bbbb"))
        XCTAssertThrowsError(try index.add(paths: ["y"], embeddings: [0, 1, 0], modelHash: "aaaa")) {
            XCTAssertTrue("\($0)".contains("dimension 2"), "\($0)")
        }
        XCTAssertThrowsError(try index.add(paths: ["y"], embeddings: [.nan, 1], modelHash: "aaaa")) {
            XCTAssertTrue("\($0)".contains("y is not finite"), "\($0)")
        }
        XCTAssertThrowsError(try index.add(paths: ["y", "z", "y"], embeddings: [0, 1, 1, 1, 1, 0], modelHash: "aaaa")) {
            XCTAssertTrue("\($0)".contains("y is given twice (items 1 and 3)"), "\($0)")
        }
        XCTAssertEqual(index.paths, ["x"], "a refused add changes nothing")
        XCTAssertEqual(try index.search(queries: [0, 1], modelHash: "aaaa", top: 5)[0].map(\.path), ["x"])
        XCTAssertThrowsError(try index.search(queries: [1, 0, 0], modelHash: "aaaa", top: 1))
        XCTAssertThrowsError(try index.search(queries: [1, 0], modelHash: "aaaa", top: 0))
    }

    func testSaveLoadRoundTripAndAtomicReplacement() throws {
        let folder = try temporaryFolder().appendingPathComponent("idx")
        let index = try EmbeddingIndex(dim: 4, modelHash: "h", model: "/models/clap")
        var g = RandomGenerator(seed: 3)
        let rows = (0..<40).map { _ in g.nextNormal() }
        try index.add(paths: (0..<10).map { "clip\($0).wav" }, embeddings: rows, modelHash: "h")
        index.modelOptions = ["tokenizer": "/models/roberta"]
        try index.save(to: folder)
        let first = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        XCTAssertEqual(first.count, 2, "\(first)")
        let loaded = try EmbeddingIndex.load(folder)
        XCTAssertEqual(loaded.paths, index.paths); XCTAssertEqual(loaded.vectors, index.vectors)
        XCTAssertEqual(loaded.model, "/models/clap"); XCTAssertEqual(loaded.modelHash, "h"); XCTAssertEqual(loaded.dim, 4)
        XCTAssertEqual(loaded.modelOptions, ["tokenizer": "/models/roberta"])
        // An update writes a new embeddings file and drops the old one; the folder never holds two.
        loaded.remove(paths: ["clip3.wav"])
        try loaded.save(to: folder)
        let second = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        XCTAssertEqual(second.count, 2, "\(second)")
        XCTAssertNotEqual(first, second)
        XCTAssertEqual(try EmbeddingIndex.load(folder).count, 9)
    }

    func testDamagedIndexFilesAreNamed() throws {
        let folder = try temporaryFolder()
        XCTAssertThrowsError(try EmbeddingIndex.load(folder)) { XCTAssertTrue("\($0)".contains("no readable index.json"), "\($0)") }
        let index = try EmbeddingIndex(dim: 2, modelHash: "h")
        try index.add(paths: ["a", "b"], embeddings: [1, 0, 0, 1], modelHash: "h")
        try index.save(to: folder)
        let json = folder.appendingPathComponent("index.json")
        var meta = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any])
        meta["count"] = 3
        meta["paths"] = ["a", "b", "c"]
        try JSONSerialization.data(withJSONObject: meta).write(to: json)
        XCTAssertThrowsError(try EmbeddingIndex.load(folder)) { XCTAssertTrue("\($0)".contains("index.json says 3 paths"), "\($0)") }
        meta["count"] = 2; meta["paths"] = ["a", "b"]; meta["modelHash"] = "other"
        try JSONSerialization.data(withJSONObject: meta).write(to: json)
        XCTAssertThrowsError(try EmbeddingIndex.load(folder)) { XCTAssertTrue("\($0)".contains("model hash h differs"), "\($0)") }
        try Data("{}".utf8).write(to: json)
        XCTAssertThrowsError(try EmbeddingIndex.load(folder)) { XCTAssertTrue("\($0)".contains("not an earshot index file"), "\($0)") }
    }
}
