import Foundation
import XCTest
import Audio
import Engine
@testable import Inference
@testable import Models
import NN
@testable import Training

/// Fine-tuning with a parameter-efficient method: only the method's tensors (and the head, the final
/// norm) change, the checkpoint records the method so `Classifier.load` rebuilds it, and a run resumes.
final class PEFTFineTuneTests: XCTestCase {
    /// A frozen encoder (`--freeze-encoder`, `--peft linear`) runs in eval mode while its head trains: a
    /// PANNs trunk's batch norms keep their running statistics. Trained in full they move (the control).
    func testAFrozenEncoderKeepsItsBatchNormStatistics() throws {
        let dir = try temporaryFolder("frozen-bn")
        let data = try toneDataset(in: dir)
        var stats: [String: [Float]] = [:]
        for (name, frozen, peft) in [("full", false, nil), ("frozen", true, nil), ("linear", false, PEFTConfig(method: .linear))] as [(String, Bool, PEFTConfig?)] {
            var c = FineTuneConfig()
            (c.model, c.inputTdim, c.epochs, c.batchSize, c.lr, c.freezeEncoder, c.peft) = ("cnn6", 100, 1, 4, 1e-3, frozen, peft)
            let run = try RunDirectory(dir.appendingPathComponent(name))
            var lines: [String] = []
            _ = try fineTune(c, data: data, run: run) { lines.append($0) }
            XCTAssertEqual(lines.contains { $0.contains("runs in eval mode") }, name != "full", name)
            let saved = try SafeTensors.read(run.best).tensors
            stats[name] = try XCTUnwrap(saved["bn0.running_mean"]).toArray() + XCTUnwrap(saved["blocks.0.bn1.running_var"]).toArray()
        }
        let initial = [Float](repeating: 0, count: 64) + [Float](repeating: 1, count: 64)   // BatchNorm's own start
        XCTAssertEqual(stats["frozen"], initial)
        XCTAssertEqual(stats["linear"], initial)
        XCTAssertNotEqual(stats["full"], initial)
        // A released PANNs read raw dB; this run normalises its features, so its frozen trunk stays in train
        // mode and its batch norms adapt to them (as before eval mode existed), and a resume keeps that.
        let release = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ModelsTests/Fixtures/panns_cnn14_8k.pth")
        var c = FineTuneConfig()
        (c.initFrom, c.inputTdim, c.epochs, c.batchSize, c.lr, c.freezeEncoder) = (release.path, 100, 1, 4, 1e-3, true)
        let run = try RunDirectory(dir.appendingPathComponent("release"))
        var lines: [String] = []
        _ = try fineTune(c, data: data, run: run) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("stays in train mode") }, "\(lines)")
        XCTAssertFalse(lines.contains { $0.contains("runs in eval mode") })
        let start = try PANNsCheckpoint.unwrapped(TorchCheckpoint.read(release))
        XCTAssertNotEqual(try SafeTensors.read(run.best).tensors["bn0.running_mean"]?.toArray(), start["bn0.running_mean"]?.toArray())
        c.epochs = 2
        lines = []
        _ = try fineTune(c, data: data, run: run, resume: true) { lines.append($0) }
        XCTAssertFalse(lines.contains { $0.contains("runs in eval mode") }, "\(lines)")
    }

    func testLoRAAndAdapterRunsTrainOnlyTheirTensorsAndReload() throws {
        let dir = try temporaryFolder("peft")
        var records: [ClipRecord] = []
        var g = RandomGenerator(seed: 8)
        for i in 0..<24 {
            let high = i % 2 == 0
            let f = (high ? 2500.0 : 300.0) * (1 + 0.1 * Double(g.nextUniform()))
            let url = dir.appendingPathComponent("c\(i).wav")
            try writeTone(url, frequency: f, samples: 8000)
            records.append(ClipRecord(path: url.path, labels: [high ? "high" : "low"], split: i < 18 ? "train" : "test"))
        }
        let data = Dataset(records: records, layout: "tones")
        // The start: a small classifier trained in full, whose encoder the methods then adapt.
        var base = FineTuneConfig()
        (base.model, base.depth, base.inputTdim, base.epochs, base.batchSize, base.lr) = ("ssast-tiny-frame", 2, 48, 1, 6, 3e-4)
        let baseRun = try RunDirectory(dir.appendingPathComponent("base"))
        _ = try fineTune(base, data: data, run: baseRun, log: { _ in })
        let start = try SafeTensors.read(baseRun.best).tensors
        // Another base: the same architecture with other weights.
        var other = base
        other.seed = 99
        let otherRun = try RunDirectory(dir.appendingPathComponent("other-base"))
        _ = try fineTune(other, data: data, run: otherRun, log: { _ in })
        let zerosBase = otherRun.url

        for method in [PEFTConfig.Method.lora, .adapter, .bitfit, .conformer, .prefix, .prompt] {
            var ft = base
            (ft.initFrom, ft.epochs, ft.lr, ft.peft) = (baseRun.url.path, 2, 5e-3, PEFTConfig(method: method))
            ft.peft?.adapterInit = .standard
            let run = try RunDirectory(dir.appendingPathComponent(method.rawValue))
            var lines: [String] = []
            let result = try fineTune(ft, data: data, run: run) { lines.append($0) }
            XCTAssertTrue(lines.contains { $0.contains("parameters trainable") }, "\(lines.prefix(4))")
            let saved = try SafeTensors.read(run.best)
            XCTAssertNotNil(saved.metadata["peft"])
            // Frozen encoder weights are exactly the start's.
            for key in ["v.blocks.0.attn.qkv.weight", "v.blocks.1.mlp.fc1.weight", "v.patch_embed.proj.weight"] {
                XCTAssertEqual(try XCTUnwrap(saved.tensors[key]).toArray(), try XCTUnwrap(start[key]).toArray(), "\(method): \(key)")
            }
            let moved = ["bitfit": "v.blocks.0.mlp.fc1.bias", "lora": "v.blocks.0.attn.qkv.lora.0.down.weight", "adapter": "v.blocks.0.mlp.adapter.up.weight",
                         "conformer": "v.blocks.0.mlp.adapter.pw2.weight", "prefix": "v.blocks.0.attn.prefix_key",
                         "prompt": "v.prompts.sets.1.tokens"][method.rawValue]!
            let movedStart = try start[moved] ?? Tensor.zeros(XCTUnwrap(saved.tensors[moved]).shape)
            XCTAssertNotEqual(try XCTUnwrap(saved.tensors[moved]).toArray(), movedStart.toArray(), "\(method): \(moved) trained")
            // The classifier reloads with its method (LoRA merged into plain layers) and scores as the run did.
            let clf = try Classifier.load(run.url)
            let (again, _) = try evaluate(clf, on: data.split("test"))
            XCTAssertEqual(again.accuracy, result.test.accuracy, "\(method)")
            if method == .lora { XCTAssertFalse(clf.model.namedParameters().contains { $0.0.contains(".lora.") }, "merged") }
            // The delta: the trained tensors alone, a fraction of the model, loading onto its own base only.
            let deltaSize = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: run.delta.path)[.size] as? Int)
            let bestSize = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: run.best.path)[.size] as? Int)
            XCTAssertLessThan(deltaSize * 5, bestSize, "\(method): delta \(deltaSize) B against \(bestSize) B")
            XCTAssertThrowsError(try Classifier.load(run.delta)) { XCTAssertTrue("\($0)".contains("--base"), "\($0)") }
            let fromDelta = try Classifier.load(run.delta, base: baseRun.url)
            let (deltaEval, _) = try evaluate(fromDelta, on: data.split("test"))
            XCTAssertEqual(deltaEval.accuracy, result.test.accuracy, "\(method): delta + base = the run")
            let x = Tensor.randn([1, 48, 128])
            let a = try GradMode.noGrad { try clf.model.logits(x) }, b = try GradMode.noGrad { try fromDelta.model.logits(x) }
            XCTAssertLessThanOrEqual(zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max()!, 1e-5)
            XCTAssertThrowsError(try Classifier.load(run.delta, base: zerosBase)) { XCTAssertTrue("\($0)".contains("has hash"), "\($0)") }
        }
        // PETL_AST's all-zero adapters: GELU(0) = 0 leaves both matrices without a gradient; only up.bias learns.
        var zeros = base
        (zeros.initFrom, zeros.epochs, zeros.lr, zeros.peft) = (baseRun.url.path, 1, 5e-3, PEFTConfig(method: .adapter))
        let zerosRun = try RunDirectory(dir.appendingPathComponent("zeros"))
        _ = try fineTune(zeros, data: data, run: zerosRun, log: { _ in })
        let z = try SafeTensors.read(zerosRun.last).tensors
        XCTAssertTrue(try XCTUnwrap(z["v.blocks.0.mlp.adapter.up.weight"]).toArray().allSatisfy { $0 == 0 })
        XCTAssertTrue(try XCTUnwrap(z["v.blocks.0.mlp.adapter.down.weight"]).toArray().allSatisfy { $0 == 0 })
        XCTAssertTrue(try XCTUnwrap(z["v.blocks.0.mlp.adapter.up.bias"]).toArray().contains { $0 != 0 })

        // A resumed parameter-efficient run rebuilds its wrappers before its checkpoint loads.
        var ft = base
        (ft.initFrom, ft.epochs, ft.lr, ft.peft) = (baseRun.url.path, 3, 5e-3, PEFTConfig(method: .adapter))
        var lines: [String] = []
        _ = try fineTune(ft, data: data, run: try RunDirectory(dir.appendingPathComponent("adapter")), resume: true) { lines.append($0) }
        XCTAssertTrue(lines.contains("resuming after epoch 2"), "\(lines.prefix(5))")
    }

    /// A PANNs trunk trained by BitFit (in train mode) moves its batch-norm statistics though no weight of
    /// theirs trains: the delta carries them, so delta + base scores exactly as the run's checkpoint.
    func testABatchNormDeltaOnItsBaseIsTheRun() throws {
        let dir = try temporaryFolder("bn-delta")
        let release = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ModelsTests/Fixtures/panns_cnn14_8k.pth")
        var c = FineTuneConfig()
        (c.initFrom, c.inputTdim, c.epochs, c.batchSize, c.lr, c.peft) = (release.path, 100, 1, 4, 1e-3, PEFTConfig(method: .bitfit))
        let run = try RunDirectory(dir.appendingPathComponent("run"))
        _ = try fineTune(c, data: try toneDataset(in: dir), run: run) { _ in }
        let delta = try SafeTensors.read(run.delta).tensors
        let start = try PANNsCheckpoint.unwrapped(TorchCheckpoint.read(release))
        XCTAssertNotEqual(try XCTUnwrap(delta["bn0.running_mean"]).toArray(), try XCTUnwrap(start["bn0.running_mean"]).toArray(), "moved in training")
        XCTAssertNil(delta["blocks.0.conv1.weight"], "frozen weights stay out")
        let fromRun = try Classifier.load(run.url), fromDelta = try Classifier.load(run.delta, base: release)
        let x = Tensor.randn([2, 100, fromRun.model.inputBins], mean: -20, std: 10)
        XCTAssertEqual(try GradMode.noGrad { try fromDelta.model.logits(x) }.toArray(), try GradMode.noGrad { try fromRun.model.logits(x) }.toArray())
    }
}
