import Foundation
import XCTest
import Audio
import Engine
@testable import Inference
@testable import Models

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

    /// PANNs runs a clip of any length at that length, as the reference does: a 1.5 s clip of a model whose
    /// window is 4 s is not padded to 4 s (padding with 0 dB changed its scores), and a 9 s clip is one
    /// pass, not a mean over windows; only clips below the pooling stages' 64 frames are padded, to 64.
    func testPANNsClassifiesShortAndLongClipsAtTheirOwnLength() throws {
        let dir = try temporaryFolder("panns-lengths")
        Random.seed(12)
        var c = PANNsConfig(.cnn10, classes: 3, frames: 400, frontEnd: LogMelConfig(sampleRate: 8000, nFFT: 256, hop: 80, nMels: 32, fMin: 50, fMax: 4000))
        (c.channels, c.embeddingWidth) = ([2, 3, 3, 4], 6)
        let model = PANNs(c)
        model.eval()
        let clf = Classifier(model: model, classes: ["a", "b", "c"], pipeline: FeaturePipeline(kind: .logMel(c.frontEnd)), multiLabel: true)
        XCTAssertTrue(clf.onePass)
        XCTAssertEqual(clf.minimumFrames, 64)
        var g = RandomGenerator(seed: 2)
        for (name, seconds, frames) in [("short", 1.5, 151), ("long", 9.0, 901), ("tiny", 0.3, 64)] {
            let samples = (0..<Int(seconds * 8000)).map { i in Float(0.3 * sin(Double(i) * 0.07)) + 0.05 * g.nextNormal() }
            let wav = dir.appendingPathComponent("\(name).wav")
            try AudioFile.writeWAV(samples, sampleRate: 8000, to: wav)
            let features = try WindowedPass.clipFeatures(wav, pipeline: clf.pipeline, window: clf.minimumFrames).0
            XCTAssertEqual(features.shape[0], frames, name)
            var scored: [Float] = []
            _ = try clf.classify([wav.path]) { _, s in scored = s.scores }
            let direct = try clf.probabilities(features.unsqueeze(0)).squeeze(0).toArray()
            for (x, y) in zip(scored, direct) { XCTAssertEqual(x, y, accuracy: 1e-5, name) }
            if name == "short" {   // what padding to the 400-frame window gave, which the reference never does
                let padded = try WindowedPass.clipFeatures(wav, pipeline: clf.pipeline, window: 400).0
                let old = try clf.probabilities(padded.unsqueeze(0)).squeeze(0).toArray()
                XCTAssertGreaterThan(zip(scored, old).map { abs($0 - $1) }.max()!, 1e-4)
            }
        }
    }
}
