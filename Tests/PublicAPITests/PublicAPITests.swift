import Earshot
import Foundation
import XCTest

/// What a Swift app that depends on Earshot can do through its public API alone (no @testable):
/// fine-tune a classifier on a small generated set, load it back, classify and embed a clip.
final class PublicAPITests: XCTestCase {
    func testFineTuneLoadClassifyAndEmbedThroughThePublicAPI() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-api-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Two classes of tones, in a folder per class.
        var generator = RandomGenerator(seed: 3)
        for i in 0..<16 {
            let label = i % 2 == 0 ? "low" : "high"
            let f = (label == "high" ? 2500.0 : 300.0) * (1 + 0.1 * Double(generator.nextUniform()))
            let wave = (0..<12_000).map { n in Float(0.3 * sin(2 * Double.pi * f * Double(n) / 16000)) }
            try FileManager.default.createDirectory(at: dir.appendingPathComponent(label), withIntermediateDirectories: true)
            try AudioFile.writeWAV(wave, sampleRate: 16000, to: dir.appendingPathComponent("\(label)/clip\(i).wav"))
        }
        let data = try Dataset.load(dir)
        XCTAssertEqual(data.classes, ["high", "low"])

        var config = FineTuneConfig()
        (config.model, config.depth, config.inputTdim, config.epochs, config.batchSize, config.lr) = ("ssast-tiny-frame", 1, 48, 1, 4, 3e-4)
        let run = try RunDirectory(dir.appendingPathComponent("run"))
        let result = try fineTune(config, data: data, run: run, log: { _ in })
        XCTAssertEqual(result.bestEpoch, 1)
        XCTAssertGreaterThan(result.testClips, 0, "a test split was held out of data that had none")

        let classifier = try Classifier.load(run.url)
        XCTAssertEqual(classifier.classes, ["high", "low"])
        let clip = dir.appendingPathComponent("high/clip1.wav").path
        var scored: [ClassScores] = []
        let report = try classifier.classify([clip]) { _, scores in scored.append(scores) }
        XCTAssertTrue(report.isEmpty, "\(report)")
        let scores = try XCTUnwrap(scored.first)
        XCTAssertEqual(Set(scores.ranked.map(\.label)), ["high", "low"])
        XCTAssertEqual(scores.scores.reduce(0, +), 1, accuracy: 1e-4, "softmax scores")

        let (embeddings, _) = try classifier.embeddings(of: [clip])
        XCTAssertEqual(try XCTUnwrap(embeddings[clip]).shape, [classifier.model.embeddingWidth])
        XCTAssertTrue(ModelRegistry.entries.contains { $0.name == "ast-base" })
    }

    func testShippedEncoderByName() throws {
        // An app embeds with the encoder shipped in pretrained/ by its name.
        let file = try ShippedModels.resolve("earshot-ssast-tiny")
        let embedder = try Classifier.loadEmbedder(file)
        XCTAssertEqual(embedder.model.embeddingWidth, 192)
        XCTAssertNotNil(ShippedModels.entry(named: "earshot-ssast-tiny"))
    }
}
