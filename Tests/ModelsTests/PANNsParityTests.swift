import Foundation
import XCTest
import Audio
import Engine
import NN
@testable import Models

/// PANNs against the reference architecture (tools/make_panns_fixtures.py: small random Cnn14, Cnn10 and
/// Cnn6 in PyTorch with the released key names): a released-format `.pth` with its front-end buffers, the
/// log-mel front end from the waveform, clip-wise probabilities, embeddings and decision-level max
/// frame-wise output.
final class PANNsParityTests: XCTestCase {
    var pth: URL { modelFixtures.appendingPathComponent("panns_cnn14_8k.pth") }
    func outputs() throws -> [String: Tensor] {
        try SafeTensors.read(modelFixtures.appendingPathComponent("panns_cnn14_8k_outputs.safetensors")).tensors
    }

    func testReleasedCnn14LoadsFromItsPthAndMatchesFromTheWaveform() throws {
        let fx = try outputs()
        let loaded = try XCTUnwrap(try PANNsFamily().releasedClassifier(pth, options: ReleasedCheckpointOptions()))
        let model = try XCTUnwrap(loaded.model as? PANNs)
        XCTAssertEqual(model.config.variant, .cnn14)
        XCTAssertEqual(model.config.channels, [4, 8, 8, 16, 16, 32])
        XCTAssertEqual(model.config.frontEnd.sampleRate, 8000, "the 8 kHz front end, read from the buffers")
        XCTAssertTrue(loaded.multiLabel)
        // The front end: our log-mel of the waveform against torchlibrosa's.
        let wave = try XCTUnwrap(fx["waveform"])
        let logMel = try LogMel(model.config.frontEnd)
        let features = try Tensor.stack((0..<2).map { b in try logMel(Array(wave.toArray()[(b * 12000)..<((b + 1) * 12000)])) })
        XCTAssertEqual(features.shape, [2, 151, 64])
        XCTAssertLessThanOrEqual(maxAbs(features, try XCTUnwrap(fx["logmel"])), 2e-3, "dB")
        let (probs, embedding) = try GradMode.noGrad { (try model.logits(features).sigmoid(), try model.embedding(features)) }
        XCTAssertLessThanOrEqual(maxAbs(probs, try XCTUnwrap(fx["clipwise"])), 1e-4)
        XCTAssertLessThanOrEqual(maxAbs(embedding, try XCTUnwrap(fx["embedding"])), 1e-4)
        XCTAssertGreaterThan(maxAbs(try embedding.slice(axis: 0, start: 0, end: 1), try embedding.slice(axis: 0, start: 1, end: 2)), 1e-3,
                             "the two clips give different embeddings")
    }

    func testDecisionLevelMaxGivesTheReferenceFrameWiseOutput() throws {
        let fx = try outputs()
        var state = PANNsCheckpoint.unwrapped(try TorchCheckpoint.read(pth))
        let config = try PANNsCheckpoint.config(of: state, file: pth, decisionLevelMax: true)
        let model = Random.withoutInitialisation { PANNs(config) }
        try PANNsCheckpoint.load(consuming: &state, into: model, file: pth)
        model.eval()
        let logmel = try XCTUnwrap(fx["logmel"])
        let (clip, frames) = try GradMode.noGrad { (try model.logits(logmel).sigmoid(), try model.framewise(logmel)) }
        XCTAssertEqual(frames.shape, [2, 151, 5])
        XCTAssertLessThanOrEqual(maxAbs(clip, try XCTUnwrap(fx["dlm_clipwise"])), 1e-4)
        XCTAssertLessThanOrEqual(maxAbs(frames, try XCTUnwrap(fx["dlm_framewise"])), 1e-4)
    }

    func testCnn10AndCnn6MatchTheReference() throws {
        for name in ["cnn10", "cnn6"] {
            let fx = try SafeTensors.read(modelFixtures.appendingPathComponent("panns_\(name).safetensors")).tensors
            let file = URL(fileURLWithPath: name)
            var state = fx.filter { !["logmel", "clipwise", "embedding"].contains($0.key) }
            let config = try PANNsCheckpoint.config(of: state, file: file, decisionLevelMax: false, frames: 96)
            XCTAssertEqual(config.variant.rawValue, name)
            let model = Random.withoutInitialisation { PANNs(config) }
            try PANNsCheckpoint.load(consuming: &state, into: model, file: file)
            model.eval()
            let x = try XCTUnwrap(fx["logmel"])
            let (probs, embedding) = try GradMode.noGrad { (try model.logits(x).sigmoid(), try model.embedding(x)) }
            XCTAssertLessThanOrEqual(maxAbs(probs, try XCTUnwrap(fx["clipwise"])), 1e-4, name)
            XCTAssertLessThanOrEqual(maxAbs(embedding, try XCTUnwrap(fx["embedding"])), 1e-4, name)
        }
    }

    /// `convertConvolutions(to: .bf16)` (what `--precision bf16` adds to the linear layers) runs Cnn6's 5x5
    /// convolutions in bf16 where the CPU has a bf16 kernel: the reference's probabilities to bf16 rounding,
    /// the weights untouched (still fp32, so the model still saves and trains).
    func testCnn6WithBF16ConvolutionsStaysCloseToTheReference() throws {
        let fx = try SafeTensors.read(modelFixtures.appendingPathComponent("panns_cnn6.safetensors")).tensors
        let file = URL(fileURLWithPath: "cnn6")
        var state = fx.filter { !["logmel", "clipwise", "embedding"].contains($0.key) }
        let config = try PANNsCheckpoint.config(of: state, file: file, decisionLevelMax: false, frames: 96)
        let model = Random.withoutInitialisation { PANNs(config) }
        try PANNsCheckpoint.load(consuming: &state, into: model, file: file)
        model.eval()
        let before = model.stateDict().mapValues { $0.toArray() }
        XCTAssertEqual(model.convertConvolutions(to: .bf16), 1, "the encoder's trunk")
        let probs = try GradMode.noGrad { try model.logits(try XCTUnwrap(fx["logmel"])).sigmoid() }
        let drift = maxAbs(probs, try XCTUnwrap(fx["clipwise"]))
        XCTAssertLessThanOrEqual(drift, 1e-2)
        if !CPUFeatures.host.hasAVX512BF16 { XCTAssertLessThanOrEqual(drift, 1e-4, "no bf16 units: fp32") }
        XCTAssertEqual(model.stateDict().mapValues { $0.toArray() }, before, "the weights are unchanged")
        XCTAssertEqual(model.convertConvolutions(to: .int8), 1)
        XCTAssertLessThanOrEqual(maxAbs(try GradMode.noGrad { try model.logits(try XCTUnwrap(fx["logmel"])).sigmoid() },
                                        try XCTUnwrap(fx["clipwise"])), 1e-4, "int8 leaves the convolutions fp32")
    }

    func testAModelOfAnotherSampleRateOrSizeIsNamed() throws {
        var state = PANNsCheckpoint.unwrapped(try TorchCheckpoint.read(pth))
        var config = try PANNsCheckpoint.config(of: state, file: pth, decisionLevelMax: false)
        config.frontEnd = .panns   // a 32 kHz model given the 8 kHz buffers
        XCTAssertThrowsError(try PANNsCheckpoint.load(consuming: &state, into: PANNs(config), file: pth)) {
            XCTAssertTrue("\($0)".contains("8 kHz") && "\($0)".contains("32 kHz"), "\($0)")
        }
        state = PANNsCheckpoint.unwrapped(try TorchCheckpoint.read(pth))
        config = try PANNsCheckpoint.config(of: state, file: pth, decisionLevelMax: false)
        config.channels[2] = 12
        XCTAssertThrowsError(try PANNsCheckpoint.load(consuming: &state, into: PANNs(config), file: pth)) {
            XCTAssertTrue("\($0)".contains("blocks.2.conv1.weight"), "\($0)")
        }
    }

    /// Fine-tuning from a release: PANNs' transfer template (trunk and fc1 kept, a new fc_transfer head).
    func testAReleaseStartsFineTuningWithATransferHead() throws {
        let start = try ModelRegistry.start(pth)
        let model = try XCTUnwrap(try start.build(ModelShape(frames: 200, outputs: 3)) as? PANNs)
        XCTAssertTrue(model.config.transferHead)
        XCTAssertEqual(model.headPrefixes, ["fc_transfer."])
        let released = PANNsCheckpoint.unwrapped(try TorchCheckpoint.read(pth))
        let mine = model.stateDict()
        XCTAssertEqual(mine["fc_transfer.weight"]?.shape, [3, 32])
        XCTAssertNil(mine["fc_audioset.weight"])
        XCTAssertLessThanOrEqual(maxAbs(try XCTUnwrap(mine["blocks.5.conv2.weight"]), try XCTUnwrap(released["conv_block6.conv2.weight"])), 0)
        XCTAssertLessThanOrEqual(maxAbs(try XCTUnwrap(mine["fc1.weight"]), try XCTUnwrap(released["fc1.weight"])), 0)
    }
}
