import Foundation
import XCTest
import Audio
import Engine
@testable import Inference
import Models

/// A model that takes any length (SSAMBA) embeds and classifies a recording of minutes in one pass:
/// the whole clip is one sequence, not a mean over windows of the model's input.
final class LongClipTests: XCTestCase {
    func testSSAMBAEmbedsAMinutesLongRecordingInOnePass() throws {
        let dir = try temporaryFolder("long")
        // Two minutes: a tone that steps every 10 s, under noise.
        var g = RandomGenerator(seed: 3)
        let samples = (0..<(120 * 16000)).map { i -> Float in
            let f = 300 + 200 * Double(i / 160_000)
            return Float(0.2 * sin(2 * Double.pi * f * Double(i) / 16000)) + 0.02 * g.nextNormal()
        }
        let wav = dir.appendingPathComponent("long.wav")
        try AudioFile.writeWAV(samples, sampleRate: 16000, to: wav)
        Random.seed(4)
        let model = try ModelRegistry.entry(named: "ssamba-tiny-patch").classifier(ModelShape(frames: 64, outputs: 3, depth: 2))
        model.eval()
        let clf = Classifier(model: model, classes: ["a", "b", "c"],
                             pipeline: .astFbank(targetFrames: 64, mean: -4.27, std: 4.57), multiLabel: false)
        XCTAssertTrue(clf.onePass)
        let (vectors, report) = try clf.embeddings(of: [wav.path])
        XCTAssertTrue(report.isEmpty)
        let features = try WindowedPass.clipFeatures(wav, pipeline: clf.pipeline, window: 64).0
        XCTAssertEqual(features.shape, [11998, 128])
        let whole = try GradMode.noGrad { try model.embedding(features.unsqueeze(0)).squeeze(0) }
        let got = try XCTUnwrap(vectors[wav.path])
        for (x, y) in zip(got.toArray(), whole.toArray()) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        // Not what the windowed mean gives (the old behaviour), so the one pass did run.
        let windowed = try GradMode.noGrad {
            try WindowedPass.windowMeans([features], window: 64, batchSize: 8) { try model.embedding($0) }[0]
        }
        let gap = zip(got.toArray(), windowed.toArray()).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(gap, 1e-3)
        // classify and probabilities take the same one pass.
        var scored: [Float] = []
        _ = try clf.classify([wav.path]) { _, s in scored = s.scores }
        let direct = try clf.probabilities(features.unsqueeze(0)).squeeze(0).toArray()
        for (x, y) in zip(scored, direct) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        XCTAssertEqual(scored.reduce(0, +), 1, accuracy: 1e-4)
        // A windowed model (AST) is not one-pass.
        let ast = try ModelRegistry.entry(named: "ast-tiny").classifier(ModelShape(frames: 64, outputs: 3, depth: 1))
        XCTAssertFalse(Classifier(model: ast, classes: ["a", "b", "c"], pipeline: clf.pipeline, multiLabel: false).onePass)
    }
}
