import Audio
import Engine
import Foundation
import XCTest
@testable import Inference

/// An embedder that counts the clips it is asked for: the cache must spare it a second run.
final class CountingEmbedder: ClipEmbedder {
    var calls = 0, clips = 0
    let cacheKey: String
    init(key: String = "counting v1") { cacheKey = key }
    var summary: String { "file size" }
    func embed(_ paths: [String], progress: ((String) -> Void)?) throws -> (embeddings: [String: [Float]], report: SkipReport) {
        calls += 1; clips += paths.count
        var out: [String: [Float]] = [:]
        for p in paths { out[p] = [Float((try? Data(contentsOf: URL(fileURLWithPath: p)).count) ?? 0), 1] }
        return (out, SkipReport())
    }
}

final class ProbeEndToEndTests: XCTestCase {
    func testCacheHitDoesNotRecompute() throws {
        let dir = try temporaryFolder("probe-cache")
        let paths = try (0..<3).map { i -> String in
            let url = dir.appendingPathComponent("clip\(i).wav")
            try writeTone(url, frequency: 300 + 100 * Double(i), samples: 1600 * (i + 1))
            return url.path
        }
        let cache = try EmbeddingCache(directory: dir.appendingPathComponent("cache"))
        let embedder = CountingEmbedder()
        let first = try cache.embeddings(of: paths, with: embedder)
        XCTAssertEqual([first.computed, embedder.calls, embedder.clips], [3, 1, 3])
        let second = try cache.embeddings(of: paths, with: embedder)
        XCTAssertEqual([second.computed, embedder.calls, embedder.clips], [0, 1, 3], "every clip read back from the cache")
        XCTAssertEqual(second.embeddings, first.embeddings)
        // New bytes in one file: only that clip is embedded again.
        try writeTone(URL(fileURLWithPath: paths[1]), frequency: 999, samples: 800)
        let third = try cache.embeddings(of: paths, with: embedder)
        XCTAssertEqual([third.computed, embedder.clips], [1, 4])
        XCTAssertNotEqual(third.embeddings[paths[1]], first.embeddings[paths[1]])
        // Another model (another key) shares nothing.
        let other = CountingEmbedder(key: "counting v2")
        XCTAssertEqual(try cache.embeddings(of: paths, with: other).computed, 3)
    }

    func testSplitsFollowFoldsSpeakersAndTestSplit() throws {
        // ESC-like: every clip has a fold, no test split: one round per fold, inner folds by the others.
        let esc = (0..<20).map { ClipRecord(path: "e\($0)", labels: [String($0 % 2)], fold: 1 + $0 % 4) }
        let p = try ProbeSplits.plan(esc)
        XCTAssertTrue(p.kFold)
        XCTAssertEqual(p.rounds.map(\.test.count), [5, 5, 5, 5])
        XCTAssertEqual(Set(p.rounds[0].innerFold).count, 3)
        // FSDD-like: a test split and speakers: inner folds never split a speaker.
        let fsdd = (0..<60).map { i in
            ClipRecord(path: "f\(i)", labels: [String(i % 3)], speaker: "s\(i % 4)", split: i % 5 == 0 ? "test" : "train")
        }
        let q = try ProbeSplits.plan(fsdd)
        XCTAssertFalse(q.kFold)
        XCTAssertEqual(q.rounds[0].test.count, 12)
        var foldOf: [String: Int] = [:]
        for (i, f) in zip(q.rounds[0].train, q.rounds[0].innerFold) {
            XCTAssertEqual(foldOf[fsdd[i].speaker!, default: f], f, "speaker \(fsdd[i].speaker!) in two folds")
            foldOf[fsdd[i].speaker!] = f
        }
        XCTAssertEqual(Set(q.rounds[0].innerFold).count, 4, "4 speakers: 4 folds")
        XCTAssertTrue(q.description.contains("speaker-disjoint"))
        // Its test clips are grouped by speaker for the standard errors.
        XCTAssertEqual(q.rounds[0].testGroups, q.rounds[0].test.map { fsdd[$0].speaker! })
        XCTAssertTrue(q.description.contains("clustered by speaker (4 in the test split)"), q.description)
        // Labelled by speaker: speakers cannot be held out, so the folds are stratified.
        let bySpeaker = fsdd.map { r -> ClipRecord in var c = r; c.labels = [r.speaker!]; return c }
        XCTAssertTrue(try ProbeSplits.plan(bySpeaker).description.contains("stratified"))
        XCTAssertNil(try ProbeSplits.plan(bySpeaker).rounds[0].testGroups, "labelled by speaker: clips are not grouped by their label")
        XCTAssertNil(try ProbeSplits.plan(esc).rounds[0].testGroups)
    }

    /// Two classes of tones (low and high, varied in pitch, level and length) in class folders:
    /// logmel-stats separates them, and the whole probe (cache, splits, both classifiers) says so.
    func testLogMelStatsProbeOnTones() throws {
        let dir = try temporaryFolder("probe-tones")
        var g = RandomGenerator(seed: 9)
        for (label, base) in [("low", 300.0), ("high", 2000.0)] {
            let folder = dir.appendingPathComponent("data/\(label)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<15 {
                let f = base * (1 + 0.3 * Double(g.nextUniform())), level = 0.05 + 0.3 * Double(g.nextUniform())
                let n = 4000 + Int(g.next() % 4000)
                let samples = (0..<n).map { Float(level * sin(2 * Double.pi * f * Double($0) / 16000)) + 0.01 * g.nextNormal() }
                try AudioFile.writeWAV(samples, sampleRate: 16000, to: folder.appendingPathComponent("\(i).wav"))
            }
        }
        let ds = try Dataset.load(dir.appendingPathComponent("data"))
        let cache = try EmbeddingCache(directory: dir.appendingPathComponent("cache"))
        let (embeddings, report, computed) = try cache.embeddings(of: ds.records.map(\.path), with: LogMelStatsEmbedder())
        XCTAssertEqual(computed, 30)
        XCTAssertTrue(report.skipped.isEmpty)
        XCTAssertEqual(embeddings.values.first?.count, 256)
        let result = try Probe.run(ds, name: "tones", embeddings: embeddings)
        XCTAssertEqual(result.clips, 30)
        XCTAssertEqual(result.rounds.map(\.test), [6], "20% held out, stratified")
        XCTAssertGreaterThanOrEqual(result.logistic.accuracy, 0.99)
        XCTAssertGreaterThanOrEqual(result.knn.accuracy, 0.99)
        XCTAssertEqual(result.logistic.accuracySE, 0)
        XCTAssertEqual(try cache.embeddings(of: ds.records.map(\.path), with: LogMelStatsEmbedder()).computed, 0)
    }

    /// Two embeddings of the same clips, one that knows the class and one that does not: the paired
    /// comparison finds the first ahead, per fold and on one held-out split, and a model against itself even.
    func testComparingTwoEmbeddingsOfTheSameClips() throws {
        var g = RandomGenerator(seed: 4)
        for folds in [true, false] {
            let records = (0..<100).map { ClipRecord(path: "clip\($0)", labels: [String($0 % 2)], fold: folds ? 1 + $0 % 5 : nil) }
            var informative: [String: [Float]] = [:], noise: [String: [Float]] = [:]
            for (i, r) in records.enumerated() {
                informative[r.path] = [Float(i % 2) * 2 + 0.6 * g.nextNormal(), g.nextNormal()]
                noise[r.path] = [g.nextNormal(), g.nextNormal()]
            }
            let ds = Dataset(records: records, layout: "test")
            let a = try Probe.run(ds, name: "toy", embeddings: informative), b = try Probe.run(ds, name: "toy", embeddings: noise)
            let c = try ProbeComparison.compare(a, against: b)
            XCTAssertEqual(c.logistic.difference, a.logistic.accuracy - b.logistic.accuracy, accuracy: 1e-12)
            XCTAssertGreaterThan(c.logistic.difference, 0.25, "class-aware features ahead of noise (folds: \(folds))")
            XCTAssertGreaterThan(c.logistic.differenceSE, 0)
            XCTAssertLessThan(c.logistic.differenceSE, c.logistic.difference / 2)
            XCTAssertGreaterThan(c.knn.onlyA, c.knn.onlyB)
            XCTAssertEqual(a.testClips.count, folds ? 5 : 1)
            let itself = try ProbeComparison.compare(a, against: try Probe.run(ds, name: "toy", embeddings: informative))
            XCTAssertEqual([itself.logistic.difference, itself.knn.difference, Double(itself.logistic.onlyA + itself.logistic.onlyB)], [0, 0, 0])
            // A probe of fewer clips has another plan: refused rather than paired wrongly; `Probe.compare`
            // probes both on the clips both have instead.
            let fewer = noise.filter { $0.key != "clip3" }
            XCTAssertThrowsError(try ProbeComparison.compare(a, against: try Probe.run(ds, name: "toy", embeddings: fewer)))
            let both = try Probe.compare(ds, name: "toy", embeddings: informative, against: fewer)
            XCTAssertEqual([both.shared, both.model.clips, both.against.clips], [99, 99, 99])
            XCTAssertEqual(both.model.testClips, both.against.testClips)
            XCTAssertFalse(both.model.testClips.joined().contains("clip3"))
            XCTAssertGreaterThan(both.comparison.logistic.difference, 0.25)
        }
    }

    /// An untrained registry encoder embeds through the same path as a checkpoint (windows averaged).
    func testRandomEncoderEmbedsWholeClips() throws {
        let dir = try temporaryFolder("probe-random")
        let url = dir.appendingPathComponent("a.wav")
        try writeTone(url, frequency: 500, samples: 8000)
        let e = try ModelEmbedder.random("ssast-tiny-frame", frames: 32, seed: 1)
        let (out, report) = try e.embed([url.path], progress: nil)
        XCTAssertTrue(report.skipped.isEmpty)
        XCTAssertEqual(out[url.path]?.count, e.classifier.model.embeddingWidth)
        XCTAssertTrue(out[url.path]!.allSatisfy(\.isFinite))
        XCTAssertNotEqual(try ModelEmbedder.random("ssast-tiny-frame", frames: 32, seed: 2).cacheKey, e.cacheKey)
        // Pooled as token mean and std: twice the width, its own cache entries; logmel-stats refuses the option.
        let meanStd = e.pooled(.meanStd)
        XCTAssertEqual(try meanStd.embed([url.path], progress: nil).embeddings[url.path]?.count, 2 * e.classifier.model.embeddingWidth)
        XCTAssertNotEqual(meanStd.cacheKey, e.cacheKey)
        XCTAssertThrowsError(try probeEmbedder("logmel-stats", pooling: .meanStd)) { XCTAssertTrue("\($0)".contains("--pooling"), "\($0)") }
    }
}
