import Audio
import Engine
import Foundation
import Models
import NN

/// Everything a self-supervised SSAST run needs; written to the run's config.json.
public struct PretrainConfig: Codable, Sendable {
    public var size = "tiny"
    public var variant: SSAST.Variant = .patch
    /// Optional smaller encoder depth (quick runs and tests).
    public var depth: Int?
    public var inputTdim = 1024
    /// Pretrain on random windows of this many frames of each `inputTdim`-frame clip (nil: the whole
    /// input). The encoder's input is the window; a new one is drawn every epoch, so long clips give
    /// the pretext task more distinct audio than their first seconds.
    public var cropFrames: Int?
    public var maskCount = 400
    public var epochs = 10
    public var batchSize = 8
    public var lr: Float = 1e-4
    public var warmupSteps = 100
    public var seed: UInt64 = 0
    public var mean: Float = -4.2677393
    public var std: Float = 4.5689974
    public init() {}

    public var modelConfig: ASTConfig? {
        guard var c = SSAST.config(size, variant: variant, inputTdim: cropFrames ?? inputTdim) else { return nil }
        if let depth { c.depth = depth }
        return c
    }
    public var pipeline: FeaturePipeline {
        FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: inputTdim, mean: mean, std: std)
    }
}

/// Held-out clips: the dataset's own test/validation split when it has one, else every tenth clip.
func heldOutSplit(_ ds: Dataset) -> (train: Dataset, heldOut: Dataset) {
    let marked = ds.records.filter { ["test", "validation", "valid", "val"].contains($0.split ?? "") }
    if !marked.isEmpty && marked.count < ds.records.count {
        let heldPaths = Set(marked.map(\.path))   // a set: a list made this quadratic (hours on AudioSet-sized data)
        return (Dataset(records: ds.records.filter { !heldPaths.contains($0.path) }, layout: ds.layout),
                Dataset(records: marked, layout: ds.layout))
    }
    let train = ds.records.enumerated().filter { $0.offset % 10 != 9 }.map(\.element)
    let held = ds.records.enumerated().filter { $0.offset % 10 == 9 }.map(\.element)
    return (Dataset(records: train, layout: ds.layout), Dataset(records: held.isEmpty ? train : held, layout: ds.layout))
}

public struct PretrainReport: Sendable {
    public var epochs: Int
    public var heldOutAccuracy: Float
    public var heldOutLoss: Float
    public var skipped: Int
}

/// Masked spectrogram patch modelling (SSAST): joint nce + 10·mse with two independently masked
/// passes, Adam with warmup, learning rate halved when held-out pretext accuracy plateaus.
public func pretrainSSAST(_ config: PretrainConfig, data: Dataset, run: RunDirectory, resume: Bool = false, overwrite: Bool = false,
                          log: @escaping (String) -> Void = { print($0) }) throws -> PretrainReport {
    let resuming = run.canResume(resume)
    let config = run.settings(config, resuming: resuming, epochs: \.epochs, log: log)
    if let crop = config.cropFrames, crop <= 0 || crop > config.inputTdim {
        throw NNError("pretrain: crop of \(crop) frames must be in 1...\(config.inputTdim) (the target length)")
    }
    guard let mc = config.modelConfig else { throw NNError("pretrain: unknown model size '\(config.size)' (tiny, small, base)") }
    do { try mc.validate() } catch { throw NNError("pretrain: \(error)") }
    guard config.epochs >= 1 else { throw NNError("pretrain: epochs \(config.epochs) must be at least 1") }
    guard config.lr > 0 && config.lr.isFinite else { throw NNError("pretrain: learning rate \(config.lr) must be positive") }
    guard config.maskCount > 0 && config.maskCount < mc.patches else {
        throw NNError("pretrain: masking \(config.maskCount) patches (--mask-patches) needs 1 to \(mc.patches - 1): a \(config.inputTdim)-frame clip has \(mc.patches) patches")
    }
    Random.seed(config.seed)
    let model = SSAST(mc)
    let optimizer = Adam([ParameterGroup(model.trainableParameters(), lr: config.lr, weightDecay: 5e-7)], betas: (0.95, 0.999))
    var plateau = ReduceOnPlateau(mode: .max, factor: 0.5, patience: 2)
    let firstEpoch = try run.begin(resuming: resuming, resume: resume, overwrite: overwrite, settings: config, epochs: config.epochs,
                                   model: model, optimizer: optimizer, log: log)
    let (trainSet, heldOut) = heldOutSplit(data)
    // One report for both splits: an unreadable held-out clip is named as a training one is.
    let skips = SkipReport()
    let loader = try FeatureLoader(dataset: trainSet, pipeline: config.pipeline, batchSize: config.batchSize, seed: config.seed, report: skips)
    let evalLoader = try FeatureLoader(dataset: heldOut, pipeline: config.pipeline, batchSize: config.batchSize, shuffle: false, report: skips)
    let schedule = WarmupSchedule(warmupSteps: config.warmupSteps)
    let meta = ["ssast_config": String(data: try JSONEncoder().encode(mc), encoding: .utf8)!,
                "pretrain_config": String(data: try JSONEncoder().encode(config), encoding: .utf8)!]
    var bestAcc: Float = -1, report = PretrainReport(epochs: 0, heldOutAccuracy: 0, heldOutLoss: .nan, skipped: 0)
    var lrScale: Float = 1
    // A resumed run replays its held-out history: the best score (so a worse epoch cannot overwrite
    // best.safetensors) and the plateau schedule's state (so the learning rate continues where it was).
    for line in run.metricsHistory(throughEpoch: firstEpoch) {
        guard let acc = (line["heldout_acc"] as? Double).map(Float.init) else { continue }
        bestAcc = max(bestAcc, acc)
        lrScale = plateau.observe(acc, base: 1)
        report = PretrainReport(epochs: line["epoch"] as? Int ?? 0, heldOutAccuracy: acc,
                                heldOutLoss: (line["heldout_loss"] as? Double).map(Float.init) ?? .nan,
                                skipped: line["skipped"] as? Int ?? 0)
    }
    var step = firstEpoch * loader.batchesPerEpoch
    let padValue = (0 - config.mean) / (2 * config.std)  // padding is 0 in the log domain, before normalisation
    func crops(_ features: Tensor, _ g: inout RandomGenerator) throws -> Tensor {
        guard let crop = config.cropFrames, crop < features.shape[1] else { return features }
        return try Tensor.stack((0..<features.shape[0]).map { i in
            try Augment.randomCrop(try features.slice(axis: 0, start: i, end: i + 1).squeeze(0), frames: crop,
                                   padValue: padValue, generator: &g)
        })
    }
    for epoch in firstEpoch..<config.epochs {
        var gen = RandomGenerator(seed: config.seed &+ UInt64(epoch) &* 7919)
        var progress = Progress(total: loader.batchesPerEpoch, label: "pretrain epoch \(epoch + 1)/\(config.epochs)", log: log)
        var trainLoss = 0.0, trainAcc = 0.0, batches = 0
        model.train()
        try loader.forEachBatch(epoch: epoch) { batch in
            optimizer.setLearningRate(schedule.lr(step: step, base: config.lr) * lrScale)
            let (loss, _, acc, _) = try model.jointLoss(try crops(batch.features, &gen), maskCount: config.maskCount, generator: &gen)
            optimizer.zeroGrad()
            try loss.backward()
            try optimizer.step()
            step += 1; batches += 1
            trainLoss += Double(try loss.item()); trainAcc += Double(acc)
            progress.update(batches, String(format: "loss %.4f acc %.3f", trainLoss / Double(batches), trainAcc / Double(batches)))
        }
        // Held-out pretext scores with fixed masks, so epochs compare fairly.
        model.eval()
        var evalGen = RandomGenerator(seed: 12345), evalCropGen = RandomGenerator(seed: 54321)
        var vLoss = 0.0, vAcc = 0.0, vBatches = 0
        try evalLoader.forEachBatch(epoch: 0) { batch in
            let x = try crops(batch.features, &evalCropGen)
            let r = try GradMode.noGrad { try model.jointLoss(x, maskCount: config.maskCount, generator: &evalGen) }
            vLoss += Double(try r.loss.item()); vAcc += Double(r.accuracy); vBatches += 1
        }
        let acc = Float(vAcc / Double(max(vBatches, 1))), heldLoss = Float(vLoss / Double(max(vBatches, 1)))
        lrScale = plateau.observe(acc, base: 1)
        let isBest = acc > bestAcc
        bestAcc = max(bestAcc, acc)
        try run.appendMetrics(["epoch": epoch + 1, "train_loss": trainLoss / Double(max(batches, 1)), "train_acc": trainAcc / Double(max(batches, 1)),
                               "heldout_loss": Double(heldLoss), "heldout_acc": Double(acc), "lr": Double(config.lr * lrScale),
                               "skipped": skips.skipped.count])
        try run.saveCheckpoint(model: model, optimizer: optimizer, epoch: epoch, metadata: meta, isBest: isBest)
        log(String(format: "epoch %d: train loss %.4f, held-out loss %.4f, held-out pretext accuracy %.3f", epoch + 1,
                   trainLoss / Double(max(batches, 1)), heldLoss, acc))
        report = PretrainReport(epochs: epoch + 1, heldOutAccuracy: acc, heldOutLoss: heldLoss, skipped: skips.skipped.count)
    }
    if !skips.skipped.isEmpty { log(skips.summary) }
    return report
}
