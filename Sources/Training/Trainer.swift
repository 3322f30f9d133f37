import Audio
import Engine
import Foundation
import Inference
import NN

/// A batch as a task sees it: named fields, so objectives that need more than features and labels
/// (captions, text tokens, preference pairs, auxiliary targets) have somewhere to ride.
public struct TrainingBatch {
    /// [B, frames, bins]
    public var features: Tensor
    /// Class indices per clip (one for single-label, any number for multi-label).
    public var labels: [[Int]]
    /// Indices of the clips in the dataset's records.
    public var indices: [Int]
    /// Token ids [B, L] and their attention mask [B, L] of a text per clip (contrastive tasks).
    public var textTokens: Tensor? = nil
    public var textMask: Tensor? = nil
    /// Pairs of rows (i, j) with a preference or relation between them (pairwise tasks).
    public var pairs: [(Int, Int)] = []
    /// Extra per-clip targets by name (auxiliary heads).
    public var auxiliaryTargets: [String: Tensor] = [:]

    public init(features: Tensor, labels: [[Int]], indices: [Int]) {
        self.features = features; self.labels = labels; self.indices = indices
    }

    init(_ batch: Batch) { self.init(features: batch.features, labels: batch.labels, indices: batch.indices) }

    /// Multi-hot targets [B, classes].
    public func multiHot(classes: Int) -> Tensor {
        let t = Tensor.zeros([labels.count, classes])
        for (i, ls) in labels.enumerated() { for l in ls { t.data[i * classes + l] = 1 } }
        return t
    }
}

/// A training objective: the module it trains, the loss of a batch, and the validation score that
/// chooses the checkpoint. The `Trainer` does everything else.
public protocol TrainingTask: AnyObject {
    /// The module trained and checkpointed.
    var module: Module { get }
    /// What every checkpoint records besides the weights (architecture, config, classes, pipeline).
    var checkpointMetadata: [String: String] { get }
    /// The validation number that selects the best checkpoint (higher is better), as logged.
    var selectionMetric: String { get }
    /// The loss of one training batch, and numbers to average over the epoch (logged as `train_<name>`).
    func loss(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Tensor, metrics: [String: Double])
    /// Scores on the validation split after an epoch (names without a split prefix; the trainer adds
    /// `validation_`); must include `selectionMetric`.
    func validate() throws -> [String: Any]
    /// Modules trained beside `module` that its checkpoints leave out (training-only heads, so the
    /// best checkpoint stays an ordinary classifier): kept in `RunDirectory.lastTrainingHeads` for a
    /// resume. Default none.
    var trainingOnlyModule: Module? { get }
    /// Called before each epoch's first batch (0-based), e.g. to redraw preference partners. Default none.
    func beginEpoch(_ epoch: Int) throws
    /// Numbers over the whole epoch just trained (ratios a per-batch average would bias), logged as
    /// `train_<name>`. Default none.
    func epochSummary() -> [String: Double]
    /// Backpropagates one batch into the parameters' `.grad` (the trainer has zeroed them) and returns
    /// its loss and metrics; the trainer takes the optimizer step where the loss is finite. By default
    /// `loss`, then its backward pass; a task that needs several backward passes a step (FLAD: the
    /// auxiliary and the target gradient apart) does its own.
    func accumulateGradients(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Float, metrics: [String: Double])
    /// Fields for the metrics line of the epoch that just ended, as they stand at its end (FLAD: the
    /// bandit's state); none by default.
    func endEpoch() -> [String: Any]
}

extension TrainingTask {
    public var trainingOnlyModule: Module? { nil }
    public func beginEpoch(_ epoch: Int) throws {}
    public func epochSummary() -> [String: Double] { [:] }
    public func accumulateGradients(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Float, metrics: [String: Double]) {
        let (loss, metrics) = try self.loss(batch, generator: &generator)
        let value = try loss.item()
        // NaN guard: a non-finite loss is not backpropagated; the trainer skips its step.
        if value.isFinite { try loss.backward() }
        return (value, metrics)
    }

    public func endEpoch() -> [String: Any] { [:] }
}

/// The schedule and bookkeeping of a run (the optimizer, with its weight decay and betas, is the caller's).
public struct TrainerSettings: Sendable {
    public var epochs: Int
    public var lr: Float
    public var seed: UInt64 = 0
    /// Linear warmup from `warmupStart`·lr over this many steps.
    public var warmupSteps = 0
    public var warmupStart: Float = 0
    /// Per-epoch factor on the learning rate (decay), from the epoch index.
    public var epochFactor: @Sendable (Int) -> Float = { _ in 1 }
    /// Halve-on-plateau of the validation score (SSAST's pretraining), nil for none.
    public var plateau: ReduceOnPlateau? = nil
    /// Label for progress lines (`finetune`, `pretrain`).
    public var label = "train"
    /// Seconds of training (the metrics' `train_seconds`, summed over the run, a resumed run's earlier
    /// epochs included) after which the run stops, nil for none: "the same budget" for two models whose
    /// epochs cost different times. The step that crosses it ends the epoch early; that partial epoch is
    /// validated and checkpointed like a whole one, so the budget costs at most one step more.
    public var timeBudgetSeconds: Double? = nil

    public init(epochs: Int, lr: Float) { self.epochs = epochs; self.lr = lr }
}

/// What a run reached: the epoch the validation split chose and its validation numbers.
public struct TrainingReport: CustomStringConvertible {
    public var epochsRun: Int
    public var bestEpoch: Int
    public var bestScore: Double
    public var validation: [String: Any]
    public var skipped: Int

    public var description: String {
        "\(epochsRun) epochs; best validation score \(bestScore) at epoch \(bestEpoch); \(skipped) clips skipped"
    }
}

/// One training loop for every task: seeded batches, Adam with warmup and per-epoch decay (or
/// halving on a validation plateau), a NaN guard, progress with an ETA, per-epoch validation, atomic
/// best (chosen on validation) and last checkpoints with the optimizer state, and resume.
public final class Trainer {
    public let run: RunDirectory
    public let settings: TrainerSettings
    let log: (String) -> Void

    public init(run: RunDirectory, settings: TrainerSettings, log: @escaping (String) -> Void) {
        self.run = run; self.settings = settings; self.log = log
    }

    /// Trains `task` on `loader` from `firstEpoch` (see `RunDirectory.begin`; 0 for a new run) through
    /// `settings.epochs`, after `prepare` has restored a resumed run's model and optimizer.
    public func fit(_ task: TrainingTask, loader: FeatureLoader, optimizer: Adam, firstEpoch: Int) throws -> TrainingReport {
        let s = settings
        let scoreKey = "validation_" + task.selectionMetric
        var best = -Double.infinity, bestEpoch = 0, bestValidation: [String: Any] = [:]
        var plateau = s.plateau, lrScale: Float = 1
        var spent = 0.0   // training seconds so far, against `timeBudgetSeconds`
        // A resumed run replays its validation history: the best score (so a worse epoch cannot
        // overwrite best.safetensors), the plateau schedule's state and the training time spent.
        for line in run.metricsHistory(throughEpoch: firstEpoch) {
            spent += line["train_seconds"] as? Double ?? 0
            guard let score = line[scoreKey] as? Double else { continue }
            if score > best { (best, bestEpoch, bestValidation) = (score, line["epoch"] as? Int ?? 0, line) }
            if plateau != nil { lrScale = plateau!.observe(Float(score), base: 1) }
        }
        if firstEpoch > 0, let heads = task.trainingOnlyModule, FileManager.default.fileExists(atPath: run.lastTrainingHeads.path) {
            _ = try heads.load(from: run.lastTrainingHeads)
        }
        let warmup = WarmupSchedule(warmupSteps: s.warmupSteps, startFactor: s.warmupStart)
        var step = firstEpoch * loader.batchesPerEpoch
        var epochsRun = firstEpoch
        for epoch in firstEpoch..<s.epochs {
            if let budget = s.timeBudgetSeconds, spent >= budget {
                log(String(format: "%@: the time budget of %.0f s is spent (%.0f s over %d epochs)", s.label, budget, spent, epochsRun))
                break
            }
            var generator = RandomGenerator(seed: s.seed &+ UInt64(epoch) &* 104_729)
            let epochLR = s.lr * s.epochFactor(epoch) * lrScale
            var progress = Progress(total: loader.batchesPerEpoch, label: "\(s.label) epoch \(epoch + 1)/\(s.epochs)", log: log)
            var sums: [String: Double] = [:], batches = 0, nonFinite = 0
            task.module.train()
            task.trainingOnlyModule?.train()
            try task.beginEpoch(epoch)
            let started = Date()
            var budgetEnded = false
            do {
                try loader.forEachBatch(epoch: epoch) { batch in
                    optimizer.setLearningRate(warmup.lr(step: step, base: epochLR))
                    step += 1
                    optimizer.zeroGrad()
                    let (value, metrics) = try task.accumulateGradients(TrainingBatch(batch), generator: &generator)
                    // NaN guard: a non-finite loss skips its step instead of poisoning the weights.
                    guard value.isFinite else { nonFinite += 1; return }
                    try optimizer.step()
                    batches += 1
                    sums["loss", default: 0] += Double(value)
                    for (k, v) in metrics { sums[k, default: 0] += v }
                    progress.update(batches + nonFinite, String(format: "loss %.4f", sums["loss"]! / Double(batches)))
                    if let budget = s.timeBudgetSeconds, spent + Date().timeIntervalSince(started) >= budget { throw TimeBudgetSpent() }
                }
            } catch is TimeBudgetSpent { budgetEnded = true }
            if nonFinite > 0 {
                guard batches > 0 else {
                    throw NNError("\(s.label): every batch of epoch \(epoch + 1) gave a non-finite loss; lower the learning rate (\(s.lr))")
                }
                log("\(s.label) epoch \(epoch + 1): \(nonFinite) batches with a non-finite loss were skipped")
            }
            let trainSeconds = Date().timeIntervalSince(started)
            spent += trainSeconds
            epochsRun = epoch + 1
            task.module.eval()
            task.trainingOnlyModule?.eval()
            let validation = try task.validate()
            guard let score = (validation[task.selectionMetric] as? Double) ?? (validation[task.selectionMetric] as? Float).map(Double.init) else {
                throw NNError("\(s.label): validation gave no '\(task.selectionMetric)'")
            }
            if plateau != nil { lrScale = plateau!.observe(Float(score), base: 1) }
            let isBest = score > best
            var line: [String: Any] = ["epoch": epoch + 1, "lr": Double(epochLR), "skipped": loader.report.skipped.count,
                                       "train_clips": loader.dataset.records.count, "train_skipped_batches": nonFinite,
                                       // What a step costs (data loading included) and the process's peak so far.
                                       "train_seconds": trainSeconds, "train_ms_per_step": 1000 * trainSeconds / Double(max(batches + nonFinite, 1)),
                                       "peak_rss_mb": Memory.peakRSSMegabytes()]
            for (k, v) in sums { line["train_" + k] = v / Double(max(batches, 1)) }
            for (k, v) in task.epochSummary() { line["train_" + k] = v }
            for (k, v) in validation { line["validation_" + k] = v }
            for (k, v) in task.endEpoch() { line[k] = v }
            if budgetEnded {   // how much of the epoch the budget allowed (the next epoch is not started)
                line["time_budget_spent"] = true
                line["train_epoch_fraction"] = Double(batches + nonFinite) / Double(max(loader.batchesPerEpoch, 1))
            }
            if isBest { (best, bestEpoch, bestValidation) = (score, epoch + 1, line) }
            try run.appendMetrics(line)
            try run.saveCheckpoint(model: task.module, optimizer: optimizer, epoch: epoch, metadata: task.checkpointMetadata, isBest: isBest)
            try task.trainingOnlyModule?.save(to: run.lastTrainingHeads, metadata: ["epoch": String(epoch)])
            log(String(format: "epoch %d: train loss %.4f, validation %@ %.3f%@", epoch + 1, sums["loss", default: .nan] / Double(max(batches, 1)),
                       task.selectionMetric, score, isBest ? " (best so far)" : ""))
            if budgetEnded {
                log(String(format: "%@: the time budget of %.0f s is spent, in epoch %d after %d of %d steps", s.label,
                           s.timeBudgetSeconds ?? 0, epoch + 1, batches + nonFinite, loader.batchesPerEpoch))
                break
            }
        }
        return TrainingReport(epochsRun: epochsRun, bestEpoch: bestEpoch, bestScore: best, validation: bestValidation,
                              skipped: loader.report.skipped.count)
    }
}

/// Thrown out of a batch loop when `TrainerSettings.timeBudgetSeconds` is spent; caught by `fit`.
private struct TimeBudgetSpent: Error {}
