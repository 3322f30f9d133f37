import Audio
import Engine
import Foundation
import Models
import NN

/// Everything a self-supervised masked-patch run needs; written to the run's config.json.
public struct PretrainConfig: Codable, Sendable {
    /// Registry name of the model (`earshot models`): one with a pretraining objective.
    public var model = "ssast-tiny-patch"
    /// Optional smaller encoder depth (quick runs and tests).
    public var depth: Int?
    public var inputTdim = 1024
    /// Pretrain on random windows of this many frames of each `inputTdim`-frame clip (nil: the whole
    /// input). The encoder's input is the window; a new one is drawn every epoch, so long clips give
    /// the pretext task more distinct audio than their first seconds.
    public var cropFrames: Int?
    public var maskCount = 400
    /// Weight of the generative (MSE) term, nce + w·mse (nil: SSAST's 10; 0 skips the generative pass).
    public var generativeWeight: Float?
    /// InfoNCE temperature τ (nil: SSAST's 1).
    public var nceTemperature: Float?
    /// Weight of the clip-level contrastive term between two views of each clip (nil or 0: off, SSAST's
    /// objective; `SSAST.setClipContrast`).
    public var clipContrastWeight: Float?
    /// Its temperature (nil: 0.1).
    public var clipTemperature: Float?
    /// Largest share of another clip mixed into each view (nil: BYOL-A's 0.4; `PretextViews`).
    public var viewMixRatio: Float?
    public var epochs = 10
    /// Minutes of training after which the run stops (`TrainerSettings.timeBudgetSeconds`); nil: all epochs.
    public var timeBudgetMinutes: Double?
    public var batchSize = 8
    public var lr: Float = 1e-4
    public var warmupSteps = 100
    public var seed: UInt64 = 0
    public var mean: Float = -4.2677393
    public var std: Float = 4.5689974
    /// A pretraining run, checkpoint or shipped encoder to continue from (`PretrainStart`); its model,
    /// depth and window replace this config's. nil: from scratch.
    public var initFrom: String?
    public init() {}
}

/// Sets the joint objective's weights on the model; an error for a model that has no such knobs.
func applyPretextWeights(_ config: PretrainConfig, to model: any MaskedPatchModel) throws {
    guard config.generativeWeight != nil || config.nceTemperature != nil || config.clipContrastWeight != nil else { return }
    guard let ssast = model as? SSAST else {
        throw NNError("pretrain: --generative-weight, --nce-temperature and --clip-contrast need an SSAST-style objective (\(config.model) has none)")
    }
    if let c = config.clipContrastWeight {
        do { try ssast.setClipContrast(weight: c, temperature: config.clipTemperature ?? 0.1) } catch { throw NNError("pretrain: \(error)") }
    }
    if let r = config.viewMixRatio, !(r >= 0 && r < 1) { throw NNError("pretrain: view mix ratio \(r) (--view-mix) must be in [0, 1)") }
    if let w = config.generativeWeight {
        guard w >= 0 && w.isFinite else { throw NNError("pretrain: generative weight \(w) must be finite and at least 0") }
        ssast.generativeWeight = w
    }
    if let t = config.nceTemperature {
        guard t > 0 && t.isFinite else { throw NNError("pretrain: InfoNCE temperature \(t) must be positive") }
        ssast.nceTemperature = t
    }
}

/// Held-out clips: the dataset's own test/validation split when it has one, else every tenth clip.
func heldOutSplit(_ ds: Dataset) -> (train: Dataset, heldOut: Dataset) {
    let marked = ds.records.filter { (["test"] + validationSplitNames).contains($0.split ?? "") }
    if !marked.isEmpty && marked.count < ds.records.count {
        let heldPaths = Set(marked.map(\.path))   // a set: a list made this quadratic (hours on AudioSet-sized data)
        return (Dataset(records: ds.records.filter { !heldPaths.contains($0.path) }, layout: ds.layout),
                Dataset(records: marked, layout: ds.layout))
    }
    let train = ds.records.enumerated().filter { $0.offset % 10 != 9 }.map(\.element)
    let held = ds.records.enumerated().filter { $0.offset % 10 == 9 }.map(\.element)
    return (Dataset(records: train, layout: ds.layout), Dataset(records: held.isEmpty ? train : held, layout: ds.layout))
}

public struct PretrainReport: Sendable, CustomStringConvertible {
    public var epochs: Int
    /// The epoch (1-based) whose checkpoint is best.safetensors, what a run folder stands for; the held-out
    /// numbers are that epoch's (the last epoch's were reported before, beside the best epoch's checkpoint).
    public var bestEpoch: Int
    public var heldOutAccuracy: Float
    public var heldOutLoss: Float
    public var skipped: Int

    public var description: String {
        String(format: "%d epochs: held-out pretext accuracy %.3f, loss %.4f at epoch %d (best.safetensors) (%d clips skipped)",
               epochs, heldOutAccuracy, heldOutLoss, bestEpoch, skipped)
    }
}

/// Self-supervised masked patch modelling on unlabelled audio (SSAST's joint nce + 10·mse with two
/// independently masked passes), Adam with warmup, the learning rate halved when held-out pretext
/// accuracy plateaus; the best held-out epoch is kept as best.safetensors.
public func pretrain(_ config: PretrainConfig, data: Dataset, run: RunDirectory, resume: Bool = false, overwrite: Bool = false,
                     log: @escaping (String) -> Void = { print($0) }) throws -> PretrainReport {
    let resuming = run.canResume(resume)
    let requestedBudget = config.timeBudgetMinutes   // like the epochs, a resumed run may be given a new budget
    var config = run.settings(config, resuming: resuming, epochs: \.epochs, log: log)
    if let budget = requestedBudget { config.timeBudgetMinutes = budget }
    if let crop = config.cropFrames, crop <= 0 || crop > config.inputTdim {
        throw NNError("pretrain: crop of \(crop) frames must be in 1...\(config.inputTdim) (the target length)")
    }
    guard config.epochs >= 1 else { throw NNError("pretrain: epochs \(config.epochs) must be at least 1") }
    guard config.lr > 0 && config.lr.isFinite else { throw NNError("pretrain: learning rate \(config.lr) must be positive") }
    if let budget = config.timeBudgetMinutes, !(budget > 0 && budget.isFinite) {
        throw NNError("pretrain: time budget of \(budget) minutes (--time-budget) must be positive")
    }
    // A start (continued pretraining) keeps its own architecture; a resumed run has its weights already.
    var start = resuming ? nil : try config.initFrom.map(PretrainStart.read)
    if let s = start {
        if (config.model, config.depth) != (s.settings.model, s.settings.depth) {
            log("pretrain: continuing \(s.settings.model)\(s.settings.depth.map { " (depth \($0))" } ?? "") from \(s.file.path)")
        }
        (config.model, config.depth) = (s.settings.model, s.settings.depth)
        guard (config.cropFrames ?? config.inputTdim) == s.frames else {
            throw NNError("pretrain: \(s.file.path) was pretrained on \(s.frames)-frame windows and its positions cover those; "
                          + "continue it with --crop-frames \(s.frames) (or --target-length \(s.frames)), not \(config.cropFrames ?? config.inputTdim)")
        }
        if (config.mean, config.std) != (s.settings.mean, s.settings.std) {
            log(String(format: "pretrain: note: features normalised with mean %g, std %g; the start was pretrained with %g, %g",
                       config.mean, config.std, s.settings.mean, s.settings.std))
        }
    }
    let entry: ModelEntry
    do { entry = try ModelRegistry.entry(named: config.model) } catch { throw NNError("pretrain: \(error)") }
    guard let makePretrainer = entry.pretrainer else { throw NNError("pretrain: \(entry.name) has no self-supervised objective") }
    Random.seed(config.seed)
    let model: any MaskedPatchModel
    do { model = try makePretrainer(ModelShape(frames: config.cropFrames ?? config.inputTdim, depth: config.depth)) } catch {
        throw NNError("pretrain: \(error)")
    }
    guard config.maskCount > 0 && config.maskCount < model.patchCount else {
        throw NNError("pretrain: masking \(config.maskCount) patches (--mask-patches) needs 1 to \(model.patchCount - 1): a \(model.inputFrames)-frame clip has \(model.patchCount) patches")
    }
    try applyPretextWeights(config, to: model)
    if var s = start {
        start = nil   // `s` alone holds the tensors, so each is freed as the model takes it
        try s.load(into: model, log: log)
        log("pretrain: initialised from \(s.file.path) (its encoder and pretext heads; the optimiser starts afresh)")
    }
    let optimizer = Adam([ParameterGroup(model.trainableParameters(), lr: config.lr, weightDecay: 5e-7)], betas: (0.95, 0.999))
    let firstEpoch = try run.begin(resuming: resuming, resume: resume, overwrite: overwrite, settings: config, epochs: config.epochs,
                                   model: model, optimizer: optimizer, log: log)
    let (trainSet, heldOut) = heldOutSplit(data)
    // One report for both splits: an unreadable held-out clip is named as a training one is.
    let skips = SkipReport()
    let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: config.inputTdim, mean: config.mean, std: config.std)
    let loader = try FeatureLoader(dataset: trainSet, pipeline: pipeline, batchSize: config.batchSize, seed: config.seed, report: skips)
    let evalLoader = try FeatureLoader(dataset: heldOut, pipeline: pipeline, batchSize: config.batchSize, shuffle: false, report: skips)
    let enc = JSONEncoder()
    let meta = ["pipeline": String(data: try enc.encode(pipeline), encoding: .utf8)!,
                "pretrain_config": String(data: try enc.encode(config), encoding: .utf8)!]
    let task = MaskedPatchTask(model: model, maskCount: config.maskCount, cropFrames: config.cropFrames,
                               padValue: (0 - config.mean) / (2 * config.std),   // padding is 0 in the log domain
                               heldOut: evalLoader, metadata: meta,
                               mixRatio: config.viewMixRatio ?? 0.4, scale: 2 * config.std)
    var settings = TrainerSettings(epochs: config.epochs, lr: config.lr)
    (settings.seed, settings.warmupSteps, settings.label) = (config.seed, config.warmupSteps, "pretrain")
    settings.plateau = ReduceOnPlateau(mode: .max, factor: 0.5, patience: 2)
    settings.timeBudgetSeconds = config.timeBudgetMinutes.map { $0 * 60 }
    let report = try Trainer(run: run, settings: settings, log: log).fit(task, loader: loader, optimizer: optimizer, firstEpoch: firstEpoch)
    let history = run.metricsHistory(throughEpoch: report.epochsRun)
    let best = history.first { $0["epoch"] as? Int == report.bestEpoch } ?? history.last ?? [:]
    if !skips.isEmpty { log(skips.summary) }
    return PretrainReport(epochs: report.epochsRun, bestEpoch: best["epoch"] as? Int ?? report.epochsRun,
                          heldOutAccuracy: Float(best["validation_pretext_accuracy"] as? Double ?? .nan),
                          heldOutLoss: Float(best["validation_loss"] as? Double ?? .nan), skipped: skips.skipped.count)
}
