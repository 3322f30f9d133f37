import Audio
import Engine
import Foundation
import Inference
import XCTest
@testable import Models

/// The encoders committed under pretrained/ (ShippedModels): found by name, matching their cards,
/// loading as an embedder and as a fine-tuning start.
final class ShippedModelTests: XCTestCase {
    func testExistingPathsWinAndUnknownNamesStayPaths() throws {
        let dir = try temporaryFolder("shipped")
        let own = dir.appendingPathComponent("earshot-ssast-tiny")
        try Data([1]).write(to: own)
        XCTAssertEqual(try ShippedModels.resolve(own.path), own)
        XCTAssertEqual(try ShippedModels.resolve("no-such-model-\(UUID().uuidString)").lastPathComponent.hasPrefix("no-such-model-"), true)
        let missing = ShippedModels.Entry(name: "earshot-missing", file: "earshot-missing.safetensors", summary: "")
        XCTAssertThrowsError(try ShippedModels.file(missing)) { error in
            XCTAssertTrue("\(error)".contains("earshot-missing.safetensors") && "\(error)".contains("EARSHOT_PRETRAINED"), "\(error)")
        }
    }

    func testEnvironmentFolderComesFirst() throws {
        let dir = try temporaryFolder("shipped-env")
        let entry = try XCTUnwrap(ShippedModels.entry(named: "earshot-ssast-tiny"))
        let copy = dir.appendingPathComponent(entry.file)
        try FileManager.default.copyItem(at: try ShippedModels.file(entry), to: copy)
        setenv("EARSHOT_PRETRAINED", dir.path, 1)
        defer { unsetenv("EARSHOT_PRETRAINED") }
        XCTAssertEqual(try ShippedModels.resolve("earshot-ssast-tiny").standardizedFileURL, copy.standardizedFileURL)
    }

    func testShippedEncodersMatchTheirCardsAndLoad() throws {
        for entry in ShippedModels.all {
            let file = try ShippedModels.file(entry)
            let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! Int
            XCTAssertLessThanOrEqual(size, 12_000_000, "\(entry.name): at most 12 MB")
            // The card names the file's content hash: a replaced file without a new card fails here.
            let card = try String(contentsOf: file.deletingPathExtension().appendingPathExtension("md"), encoding: .utf8)
            let hash = try DeltaCheckpoint.contentHash(file)
            XCTAssertTrue(card.contains("content hash (FNV-1a 64): `\(hash)`"), "\(entry.name): card does not name hash \(hash)")

            let embedder = try Classifier.loadEmbedder(try ShippedModels.resolve(entry.name))
            let dir = try temporaryFolder("shipped-embed")
            let clip = dir.appendingPathComponent("tone.wav")
            try writeTone(clip, frequency: 440, samples: 24_000)
            let (embeddings, report) = try embedder.embeddings(of: [clip.path])
            XCTAssertTrue(report.isEmpty)
            let e = try XCTUnwrap(embeddings[clip.path]).toArray()
            XCTAssertEqual(e.count, embedder.model.embeddingWidth)
            XCTAssertTrue(e.allSatisfy(\.isFinite))
            XCTAssertGreaterThan(e.map { $0 * $0 }.reduce(0, +), 0)

            let start = try ModelRegistry.start(try ShippedModels.resolve(entry.name))
            let classifier = try start.build(ModelShape(frames: 128, outputs: 7))
            classifier.eval()
            let logits = try classifier.logits(Tensor.zeros([2, 128, start.bins]))
            XCTAssertEqual(logits.shape, [2, 7])
        }
    }
}
