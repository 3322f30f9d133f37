import Foundation
import XCTest
import Audio
import Engine
@testable import Inference
import Models

/// classify, embed and evaluate cover every clip from start to end, whatever the model's input length.
final class WholeClipTests: XCTestCase {
    func testLaterSecondsChangeTheEmbedding() throws {
        let dir = try temporaryFolder("whole")
        func tone(_ f: Double, _ seconds: Double) -> [Float] {
            (0..<Int(seconds * 16000)).map { Float(0.3 * sin(2 * Double.pi * f * Double($0) / 16000)) }
        }
        // Same first second, different last three: a model that reads one 0.48 s window would not tell them apart.
        let a = dir.appendingPathComponent("a.wav"), b = dir.appendingPathComponent("b.wav")
        try AudioFile.writeWAV(tone(440, 1) + tone(3000, 3), sampleRate: 16000, to: a)
        try AudioFile.writeWAV(tone(440, 1) + [Float](repeating: 0, count: 48_000), sampleRate: 16000, to: b)
        Random.seed(1)
        let model = try ModelRegistry.entry(named: "ssast-tiny-frame").classifier(ModelShape(frames: 48, outputs: 2, depth: 1))
        model.eval()
        let clf = Classifier(model: model, classes: ["x", "y"],
                             pipeline: .astFbank(targetFrames: 48, mean: -4.27, std: 4.57), multiLabel: false)
        let (vectors, report) = try clf.embeddings(of: [a.path, b.path])
        XCTAssertTrue(report.isEmpty)
        let difference = zip(try XCTUnwrap(vectors[a.path]).toArray(), try XCTUnwrap(vectors[b.path]).toArray()).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(difference, 1e-3, "the clips differ only after their first second")
        // Windows: 398 frames at a 48-frame input, half a window apart, the last ending at the last frame.
        let frames = try WindowedPass.clipFeatures(a, pipeline: clf.pipeline, window: 48).0.shape[0]
        XCTAssertEqual(frames, 398)
        let starts = Classifier.windowStarts(frames: frames, window: 48)
        XCTAssertEqual(starts.first, 0)
        XCTAssertEqual(starts.last, frames - 48)
        XCTAssertEqual(starts.count, 16)
        // The batched pass gives the mean over those windows.
        let whole = try WindowedPass.clipFeatures(a, pipeline: clf.pipeline, window: 48).0
        var mean = Tensor.zeros([model.embeddingWidth])
        for s in starts {
            mean = try mean + GradMode.noGrad { try model.embedding(whole.slice(axis: 0, start: s, end: s + 48).unsqueeze(0)).squeeze(0) }
        }
        let expected = (mean * (1 / Float(starts.count))).toArray()
        for (x, y) in zip(try XCTUnwrap(vectors[a.path]).toArray(), expected) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        // A clip shorter than one window is padded (silence, before normalisation) to one window.
        let short = dir.appendingPathComponent("short.wav")
        try AudioFile.writeWAV(tone(440, 0.2), sampleRate: 16000, to: short)
        XCTAssertEqual(try WindowedPass.clipFeatures(short, pipeline: clf.pipeline, window: 48).0.shape, [48, 128])
    }

    func testMeanStdPoolingIsTheTokensMeanAndStdOverWindows() throws {
        let dir = try temporaryFolder("pooling")
        let a = dir.appendingPathComponent("a.wav")
        try AudioFile.writeWAV((0..<32_000).map { Float(0.3 * sin(2 * Double.pi * (300 + Double($0) / 20) * Double($0) / 16000)) },
                               sampleRate: 16000, to: a)
        Random.seed(2)
        let model = try ModelRegistry.entry(named: "ssast-tiny-frame").classifier(ModelShape(frames: 48, outputs: 2, depth: 1))
        model.eval()
        let clf = Classifier(model: model, classes: ["x", "y"], pipeline: .astFbank(targetFrames: 48, mean: -4.27, std: 4.57), multiLabel: false)
        let pooled = try XCTUnwrap(clf.embeddings(of: [a.path], pooling: .meanStd).embeddings[a.path]).toArray()
        let own = try XCTUnwrap(clf.embeddings(of: [a.path]).embeddings[a.path]).toArray()
        let d = model.embeddingWidth
        XCTAssertEqual(pooled.count, 2 * d)
        // SSAST pools by the mean of its content tokens, so the first half is its own embedding.
        for (x, y) in zip(pooled[0..<d], own) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        // The second half: each window's population std over tokens, averaged over the windows.
        let whole = try WindowedPass.clipFeatures(a, pipeline: clf.pipeline, window: 48).0
        let starts = Classifier.windowStarts(frames: whole.shape[0], window: 48)
        XCTAssertGreaterThan(starts.count, 1)
        var std = [Double](repeating: 0, count: d)
        for s in starts {
            let tokens = try GradMode.noGrad { try model.encoder.tokens(whole.slice(axis: 0, start: s, end: s + 48).unsqueeze(0)) }
            let n = tokens.shape[1] - model.encoder.prefixTokens, t = tokens.toArray()
            for j in 0..<d {
                let v = (0..<n).map { Double(t[(model.encoder.prefixTokens + $0) * d + j]) }
                let m = v.reduce(0, +) / Double(n)
                std[j] += (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n)).squareRoot() / Double(starts.count)
            }
        }
        for (x, y) in zip(pooled[d...], std) { XCTAssertEqual(Double(x), y, accuracy: 1e-4) }
        XCTAssertGreaterThan(std.max()!, 1e-3)
    }
}
