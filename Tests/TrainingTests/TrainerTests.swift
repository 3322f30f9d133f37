import Foundation
import XCTest
import Audio
import Engine
import NN
@testable import Training

/// The Trainer with a task of the test's own: the NaN guard skips non-finite steps and says so, and stops
/// a run whose every step is non-finite; validation chooses best.safetensors.
final class TrainerTests: XCTestCase {
    final class ProbeTask: TrainingTask {
        let linear = Linear(128, 2)
        var calls = 0
        let nanEvery: Int
        var scores: [Double]
        init(nanEvery: Int, scores: [Double]) { self.nanEvery = nanEvery; self.scores = scores }
        var module: Module { linear }
        var checkpointMetadata: [String: String] { ["task": "probe"] }
        var selectionMetric: String { "score" }
        func loss(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Tensor, metrics: [String: Double]) {
            calls += 1
            let logits = try linear(batch.features.mean(axis: 1))
            let loss = try logits.crossEntropy(targets: batch.labels.map { $0.first ?? 0 })
            return (calls % nanEvery == 0 ? try loss * Float.nan : loss, [:])
        }
        func validate() throws -> [String: Any] { ["score": scores.removeFirst()] }
    }

    func testNaNGuardAndValidationChoosesTheCheckpoint() throws {
        let dir = try temporaryFolder("trainer")
        var records: [ClipRecord] = []
        for i in 0..<8 {
            let url = dir.appendingPathComponent("c\(i).wav")
            try AudioFile.writeWAV((0..<4000).map { Float(0.2 * sin(Double($0) * Double(i + 1) * 0.05)) }, sampleRate: 16000, to: url)
            records.append(ClipRecord(path: url.path, labels: [i % 2 == 0 ? "a" : "b"]))
        }
        let data = Dataset(records: records, layout: "tones")
        let loader = try FeatureLoader(dataset: data, pipeline: FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 24),
                                       batchSize: 2, seed: 0)
        let run = try RunDirectory(dir.appendingPathComponent("run"))
        var settings = TrainerSettings(epochs: 3, lr: 1e-3)
        settings.label = "probe"
        var lines: [String] = []
        let task = ProbeTask(nanEvery: 2, scores: [0.2, 0.7, 0.5])
        let optimizer = Adam([ParameterGroup(task.linear.trainableParameters(), lr: 1e-3)])
        let report = try Trainer(run: run, settings: settings) { lines.append($0) }.fit(task, loader: loader, optimizer: optimizer, firstEpoch: 0)
        XCTAssertEqual(report.bestEpoch, 2, "the best validation score, not the last epoch")
        XCTAssertEqual(try SafeTensors.read(run.best).metadata["epoch"], "1", "best.safetensors holds epoch 2 (0-based 1)")
        XCTAssertTrue(lines.contains { $0.contains("2 batches with a non-finite loss were skipped") }, "\(lines)")
        let history = run.metricsHistory(throughEpoch: 3)
        XCTAssertEqual(history.map { $0["train_skipped_batches"] as? Int }, [2, 2, 2])
        XCTAssertEqual(history.map { $0["validation_score"] as? Double }, [0.2, 0.7, 0.5])
        XCTAssertTrue(task.linear.weight.toArray().allSatisfy(\.isFinite), "no NaN reached the weights")

        let hopeless = ProbeTask(nanEvery: 1, scores: [0])
        let again = try RunDirectory(dir.appendingPathComponent("nan"))
        XCTAssertThrowsError(try Trainer(run: again, settings: settings) { _ in }
            .fit(hopeless, loader: loader, optimizer: Adam([ParameterGroup(hopeless.linear.trainableParameters(), lr: 1e-3)]), firstEpoch: 0)) {
            XCTAssertTrue("\($0)".contains("every batch of epoch 1 gave a non-finite loss"), "\($0)")
        }
    }

    /// A checkpoint save that stopped between its files (a full disk) leaves an optimizer state of another
    /// epoch beside `last`: a resume restores the model and starts the optimizer afresh, saying so,
    /// instead of pairing the weights with moments from another step.
    func testResumeLeavesOutAnOptimizerStateOfAnotherEpoch() throws {
        let run = try RunDirectory(try temporaryFolder("resume-optimizer"))
        Random.seed(1)
        let model = Linear(4, 2)
        let optimizer = Adam([ParameterGroup(model.trainableParameters(), lr: 1e-2)])
        let x = Tensor.randn([3, 4])
        for _ in 0..<2 {
            optimizer.zeroGrad()
            let y = try model(x)
            try (try (y * y).mean()).backward()
            try optimizer.step()
        }
        try run.saveCheckpoint(model: model, optimizer: optimizer, epoch: 1, metadata: [:], isBest: true)
        func resumed() throws -> (epoch: Int, moments: [Float], lines: [String]) {
            let fresh = Linear(4, 2)
            let adam = Adam([ParameterGroup(fresh.trainableParameters(), lr: 1e-2)])
            var lines: [String] = []
            let epoch = try run.resume(model: fresh, optimizer: adam) { lines.append($0) }
            XCTAssertEqual(fresh.weight.toArray(), model.weight.toArray())
            return (epoch, adam.stateTensors().values.flatMap { $0.toArray() }, lines)
        }
        let matched = try resumed()
        XCTAssertEqual(matched.epoch, 1)
        XCTAssertTrue(matched.lines.isEmpty, "\(matched.lines)")
        XCTAssertTrue(matched.moments.contains { $0 != 0 }, "the saved moments are restored")
        // The optimizer file of an epoch whose model never reached `last`.
        try SafeTensors.write(optimizer.stateTensors(), to: run.lastOptimizer, metadata: ["epoch": "2"])
        let mismatched = try resumed()
        XCTAssertEqual(mismatched.epoch, 1)
        XCTAssertEqual(mismatched.lines, ["last-optimizer.safetensors is from epoch 2, the model from epoch 1: the optimizer starts afresh"])
        XCTAssertTrue(mismatched.moments.allSatisfy { $0 == 0 }, "no moments from another epoch")
    }
}
