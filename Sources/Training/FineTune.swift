import Audio
import Engine
import Foundation
import Models
import NN

public struct FineTuneConfig: Codable, Sendable {
    /// What to start from (`PretrainedEncoder`): an SSAST run, checkpoint or release, or an AST release,
    /// Hugging Face folder or classifier; nil trains from scratch.
    public var initFrom: String?
    public var size = "tiny"
    public var depth: Int?
    public var variant: SSAST.Variant = .patch
    public var inputTdim = 1024
    /// Train on a random window of this many frames from each clip's `inputTdim` (a random time crop:
    /// every epoch sees other parts of a long clip at the cost of a short one); the model's input is
    /// the window, and evaluation averages windows over the whole clip (`Classifier.probabilities`).
    public var cropFrames: Int?
    public var epochs = 10
    public var batchSize = 8
    public var lr: Float = 1e-4
    public var freezeEncoder = false
    /// SpecAugment mask widths (0 = off) and mixup α (0 = off).
    public var freqm = 0, timem = 0
    public var mixup: Float = 0
    /// AST's "noise" augmentation after SpecAugment (`Augment.astNoise`: small uniform noise, then a
    /// roll of −10…9 frames); its ESC-50 and Speech Commands recipes turn it on.
    public var noise = false
    public var labelSmoothing: Float = 0
    /// Stochastic depth: the largest drop-path rate, reached by the last block (timm's `drop_path_rate`,
    /// rising linearly from 0 over the blocks). A regulariser for small datasets; AST's recipes use 0.
    public var dropPath: Float = 0
    /// Adam's (coupled, L2) weight decay; AST's recipes use 5e-7.
    public var weightDecay: Float = 5e-7
    /// Learning-rate decay: ×`lrDecay` every epoch from epoch `lrDecayStart` (AST's ESC-50 recipe: 5, 0.85).
    public var lrDecayStart = 5
    public var lrDecay: Float = 0.85
    public var seed: UInt64 = 0
    public var mean: Float = -4.2677393
    public var std: Float = 4.5689974
    /// Evaluation split name, or a fold number for k-fold datasets.
    public var testSplit = "test"
    /// Train on at most this many clips per class, a seeded draw from the training split (`seed`):
    /// few-shot adaptation and label-efficiency studies. nil trains on every clip.
    public var shotsPerClass: Int?
    public var classes: [String] = []
    public var multiLabel = false
    /// What an original AST `.pth` to start from does not record (strides, heads, mel bins).
    public var releaseShape: ReleaseShape?
    /// Fbank bins (nil: 128); set from an AST start with other bins.
    public var melBins: Int?
    public init() {}

    public var pipeline: FeaturePipeline {
        .astFbank(bins: melBins ?? 128, targetFrames: inputTdim, mean: mean, std: std)
    }
}

/// A fine-tuned classifier with what it needs to run on new audio (from a checkpoint's metadata).
public struct Classifier {
    public let model: AST
    public let classes: [String]
    public let pipeline: FeaturePipeline
    public let multiLabel: Bool

    /// Loads a fine-tuning run folder (its best checkpoint) or a checkpoint file.
    public static func load(_ path: URL) throws -> Classifier {
        let file = try RunDirectory.modelFile(path)
        var st = try SafeTensors.read(file)
        let d = JSONDecoder()
        guard let c = st.metadata["ast_config"], let config = try? d.decode(ASTConfig.self, from: Data(c.utf8)),
              let k = st.metadata["classes"], let classes = try? d.decode([String].self, from: Data(k.utf8)),
              let p = st.metadata["pipeline"], let pipeline = try? d.decode(FeaturePipeline.self, from: Data(p.utf8)) else {
            if let encoder = try? PretrainedEncoder.read(file), encoder.source == .ssast {
                throw NNError("\(file.path): an SSAST pretraining checkpoint has no classifier head; fine-tune it first "
                              + "(earshot finetune --init-from \(path.path) ...), or embed with it (earshot embed --model)")
            }
            throw NNError("\(file.path): not an Earshot classifier checkpoint (metadata ast_config, classes, pipeline missing)")
        }
        do { try config.validate() } catch { throw NNError("\(file.path): \(error)") }
        let model = Random.withoutInitialisation { AST(config) }   // every weight comes from the file
        var weights = st.takeTensors()
        do { try model.load(consuming: &weights) } catch { throw NNError("\(file.path): \(error)") }
        model.eval()
        return Classifier(model: model, classes: classes, pipeline: pipeline, multiLabel: st.metadata["multi_label"] == "true")
    }

    /// Class probabilities (softmax, or sigmoid for multi-label) for features [B, T, F]. Features longer
    /// than the model's input (a model trained on crops) are scored as windows of its length, half a
    /// window apart and covering the clip to its last frame, and the windows' probabilities averaged.
    public func probabilities(_ features: Tensor) throws -> Tensor {
        try windowMean(features) { x in
            let logits = try model(x)
            return multiLabel ? logits.sigmoid() : try logits.softmax(axis: -1)
        }
    }

    /// Pooled encoder embedding [B, dim] of features [B, T, F], averaged over windows as `probabilities`.
    public func embedding(_ features: Tensor) throws -> Tensor {
        try windowMean(features) { try model.embed($0) }
    }

    /// Embeddings of audio files, keyed by path, computed in batches while the loader decodes the next
    /// (the same vectors as `embedding` clip by clip). Unreadable files are skipped and reported.
    public func embeddings(of paths: [String], batchSize: Int = 8,
                           progress: ((String) -> Void)? = nil) throws -> (embeddings: [String: Tensor], report: SkipReport) {
        var out: [String: Tensor] = [:]
        let report = try forEachFile(paths, batchSize: batchSize, label: "embed", progress: progress, embedding) { out[$0] = $1 }
        return (out, report)
    }

    /// Class probabilities of audio files, handed to `body` file by file in their order (unreadable
    /// ones skipped and reported), computed in batches as `embeddings`.
    public func probabilities(of paths: [String], batchSize: Int = 8, progress: ((String) -> Void)? = nil,
                              _ body: (String, [Float]) throws -> Void) throws -> SkipReport {
        try forEachFile(paths, batchSize: batchSize, label: "classify", progress: progress, probabilities) { try body($0, $1.toArray()) }
    }

    /// `f` on batches of the files' features; `body` gets each file's row; `progress` a line with an
    /// ETA every 10 seconds of a long job.
    private func forEachFile(_ paths: [String], batchSize: Int, label: String, progress: ((String) -> Void)?,
                             _ f: (Tensor) throws -> Tensor, _ body: (String, Tensor) throws -> Void) throws -> SkipReport {
        let clips = Dataset(records: paths.map { ClipRecord(path: $0, labels: []) }, layout: "files")
        let loader = try FeatureLoader(dataset: clips, pipeline: pipeline, batchSize: batchSize, shuffle: false)
        try onePass(loader, label: label, progress: progress) { batch in
            let rows = try f(batch.features)
            for (row, index) in batch.indices.enumerated() {
                try body(paths[index], try rows.slice(axis: 0, start: row, end: row + 1).squeeze(0))
            }
        }
        return loader.report
    }

    /// The mean of `f` over the model-sized windows of `features` (just `f(features)` when they fit), without grad.
    private func windowMean(_ features: Tensor, _ f: (Tensor) throws -> Tensor) throws -> Tensor {
        try GradMode.noGrad {
            let window = model.config.inputTdim, frames = features.rank == 3 ? features.shape[1] : 0
            let starts = Classifier.windowStarts(frames: frames, window: window)
            if starts.count == 1 { return try f(features) }
            var total = try f(features.slice(axis: 1, start: starts[0], end: starts[0] + window))
            for start in starts.dropFirst() { total = try total + f(features.slice(axis: 1, start: start, end: start + window)) }
            return total * (1 / Float(starts.count))
        }
    }

    /// Window starts for `frames` frames: [0] when the clip fits, else every window/2 and the last window.
    static func windowStarts(frames: Int, window: Int) -> [Int] {
        guard frames > window, window > 0 else { return [0] }
        var starts = Array(stride(from: 0, to: frames - window, by: max(window / 2, 1)))
        starts.append(frames - window)
        return starts
    }
}

public struct EvaluationResult: Sendable {
    public var accuracy: Double
    public var macroF1: Double
    public var confusion: [[Int]]
    public var mAP: Double, auc: Double, dPrime: Double
    public var clips: Int

    public var json: [String: Any] {
        ["accuracy": accuracy, "macro_f1": macroF1, "confusion_matrix": confusion, "mAP": mAP, "auc": auc, "d_prime": dPrime, "clips": clips]
    }
}

/// Scores a classifier on a dataset (clips with no label or a label outside its classes are left out;
/// none left throws).
/// Unreadable clips are skipped and named in the returned report (`report`, when a run shares one).
/// `progress`, where given, receives a line with an ETA every 10 seconds of a long evaluation.
public func evaluate(_ classifier: Classifier, on data: Dataset, batchSize: Int = 8,
                     report: SkipReport = SkipReport(), progress: ((String) -> Void)? = nil) throws -> (EvaluationResult, SkipReport) {
    let known = Dataset(records: data.records.filter { $0.labels.allSatisfy(classifier.classes.contains) && !$0.labels.isEmpty },
                        layout: data.layout)
    guard !known.records.isEmpty else {
        let shown = classifier.classes.prefix(8).joined(separator: ", ") + (classifier.classes.count > 8 ? ", ..." : "")
        throw NNError("evaluate: none of the \(data.records.count) clips has a label among the model's \(classifier.classes.count) classes (\(shown))")
    }
    let loader = try FeatureLoader(dataset: known, pipeline: classifier.pipeline, batchSize: batchSize, shuffle: false, report: report)
    var predicted: [Int] = [], target: [Int] = [], scores: [[Float]] = [], truth: [[Bool]] = []
    let k = classifier.classes.count
    try onePass(loader, label: "evaluate", progress: progress) { batch in
        let p = try classifier.probabilities(batch.features)
        let best = try p.argmax(axis: -1)
        for (i, idx) in batch.indices.enumerated() {
            let labels = known.records[idx].labels.compactMap(classifier.classes.firstIndex(of:))
            predicted.append(best[i]); target.append(labels.first ?? -1)
            scores.append(Array(p.toArray()[(i * k)..<((i + 1) * k)]))
            truth.append((0..<k).map(labels.contains))
        }
    }
    let ml = Metrics.multiLabel(scores: scores, targets: truth)
    return (EvaluationResult(accuracy: Metrics.accuracy(predicted, target), macroF1: Metrics.macroF1(predicted, target, classes: k),
                             confusion: Metrics.confusionMatrix(predicted, target, classes: k), mAP: ml.mAP, auc: ml.auc,
                             dPrime: ml.dPrime, clips: predicted.count), loader.report)
}

/// One unshuffled pass over `loader` (evaluate, classify, embed); `progress`, where given, gets a line
/// with an ETA every 10 seconds of a long pass.
func onePass(_ loader: FeatureLoader, label: String, progress: ((String) -> Void)?, _ body: (Batch) throws -> Void) throws {
    var meter = progress.map { Progress(total: loader.batchesPerEpoch, label: label, onlyIfSlow: true, log: $0) }, batches = 0
    try loader.forEachBatch(epoch: 0) { batch in
        try body(batch)
        batches += 1
        meter?.update(batches)
    }
}

/// The classifier's architecture, recorded back into `cfg` (size, variant, depth, mel bins) so the run's
/// config says what was built: a resumed run's own (its last checkpoint's); else the start's (an AST
/// release, Hugging Face folder or classifier keeps its architecture; an SSAST encoder gives its named
/// size, variant and depth); else the named SSAST size of `cfg`.
func classifierArchitecture(_ cfg: inout FineTuneConfig, saved: ASTConfig?, start: PretrainedEncoder?) throws -> ASTConfig {
    let frames = cfg.cropFrames ?? cfg.inputTdim
    var mc: ASTConfig
    if let start, cfg.depth != nil, cfg.depth != start.config.depth {
        throw NNError("finetune: depth \(cfg.depth!) differs from the \(start.config.depth) blocks of \(start.file.path)")
    }
    if let saved {
        mc = saved
    } else if let start, start.source == .ast {
        mc = start.classifierConfig(inputTdim: frames, labelDim: 1)
    } else {
        if let start, let shape = start.ssastShape { (cfg.size, cfg.variant, cfg.depth) = (shape.size, shape.variant, start.config.depth) }
        guard let named = SSAST.config(cfg.size, variant: cfg.variant, inputTdim: frames) else {
            throw NNError("finetune: unknown model size '\(cfg.size)'")
        }
        mc = named
        if let d = cfg.depth { mc.depth = d }
    }
    if mc.inputFdim != 128 { cfg.melBins = mc.inputFdim }
    return mc
}

/// Supervised fine-tuning of an AST classifier (optionally from an SSAST encoder), evaluating on the
/// test split every epoch and keeping the best checkpoint; returns the best epoch's result.
public func fineTuneAST(_ config: FineTuneConfig, data: Dataset, run: RunDirectory, resume: Bool = false, overwrite: Bool = false,
                        log: @escaping (String) -> Void = { print($0) }) throws -> EvaluationResult {
    let resuming = run.canResume(resume)
    var cfg = run.settings(config, resuming: resuming, epochs: \.epochs, log: log)
    let unlabelled = data.records.filter { $0.labels.isEmpty }
    if let first = unlabelled.first {
        throw NNError("finetune: \(unlabelled.count) of \(data.records.count) clips have no label (first: \(first.path)); "
                      + "fine-tuning needs one per clip: a manifest with a label column, or a folder per class")
    }
    if cfg.classes.isEmpty { cfg.classes = data.classes }
    cfg.multiLabel = cfg.multiLabel || data.multiLabel
    if let crop = cfg.cropFrames, crop <= 0 || crop > cfg.inputTdim {
        throw NNError("finetune: crop-frames \(crop) must be between 1 and the target length \(cfg.inputTdim)")
    }
    // A resumed run rebuilds the model its last checkpoint describes and never needs its start again.
    let saved = resuming ? try SafeTensors.read(run.last).metadata["ast_config"].flatMap { try? JSONDecoder().decode(ASTConfig.self, from: Data($0.utf8)) } : nil
    var pretrained = resuming ? nil : try cfg.initFrom.map { try PretrainedEncoder.read(URL(fileURLWithPath: $0), shape: cfg.releaseShape ?? ReleaseShape()) }
    var mc = try classifierArchitecture(&cfg, saved: saved, start: pretrained)
    guard cfg.dropPath >= 0 && cfg.dropPath < 1 else { throw NNError("finetune: drop-path \(cfg.dropPath) must be in [0, 1)") }
    guard cfg.weightDecay >= 0 else { throw NNError("finetune: weight-decay \(cfg.weightDecay) must not be negative") }
    mc.dropPath = cfg.dropPath
    mc.labelDim = cfg.classes.count
    do { try mc.validate() } catch { throw NNError("finetune: \(error)") }
    guard cfg.epochs >= 1 else { throw NNError("finetune: epochs \(cfg.epochs) must be at least 1") }
    guard cfg.lr > 0 && cfg.lr.isFinite else { throw NNError("finetune: learning rate \(cfg.lr) must be positive") }
    Random.seed(cfg.seed)
    let model = AST(mc)
    try pretrained?.initialiseReleasing(model)   // its weights are not needed again
    if let pretrained {
        log("initialised the encoder from \(pretrained.file.path) (\(pretrained.source.rawValue == "ast" ? "AST" : "SSAST"))")
    }
    if cfg.freezeEncoder { model.freeze(prefix: "v.") }
    let optimizer = Adam([ParameterGroup(model.trainableParameters(), lr: cfg.lr, weightDecay: cfg.weightDecay)], betas: (0.95, 0.999))
    let firstEpoch = try run.begin(resuming: resuming, resume: resume, overwrite: overwrite, settings: cfg, epochs: cfg.epochs,
                                   model: model, optimizer: optimizer, log: log)

    let isTest: (ClipRecord) -> Bool = { $0.isIn(split: cfg.testSplit) }
    // Both sides keep the run's class list: a class absent from the training split must not shift the
    // ids of the others (the loader maps labels through its dataset's classes).
    let labelled = Dataset(records: data.records, layout: data.layout, classes: cfg.classes)
    var trainSet = labelled.filter { !isTest($0) }
    let testSet = labelled.filter(isTest)
    guard !trainSet.records.isEmpty, !testSet.records.isEmpty else {
        throw NNError("finetune: split '\(cfg.testSplit)' leaves \(trainSet.records.count) training and \(testSet.records.count) test clips")
    }
    if let shots = cfg.shotsPerClass {
        trainSet = try trainSet.sampled(perClass: shots, seed: cfg.seed)
        log("training on \(trainSet.records.count) clips: at most \(shots) per class, drawn with seed \(cfg.seed)")
    }
    // One report for both splits: an unreadable test clip is named as a training one is.
    let skips = SkipReport()
    let loader = try FeatureLoader(dataset: trainSet, pipeline: cfg.pipeline, batchSize: cfg.batchSize, seed: cfg.seed, report: skips)
    let k = cfg.classes.count
    let enc = JSONEncoder()
    let meta = ["ast_config": String(data: try enc.encode(mc), encoding: .utf8)!,
                "classes": String(data: try enc.encode(cfg.classes), encoding: .utf8)!,
                "pipeline": String(data: try enc.encode(cfg.pipeline), encoding: .utf8)!,
                "multi_label": cfg.multiLabel ? "true" : "false"]
    // AST's ESC recipe: ×lrDecay once per epoch index from lrDecayStart on (0-based epochs; start ≥ 1).
    let decayStart = max(cfg.lrDecayStart, 1)
    let padValue = (0 - cfg.mean) / (2 * cfg.std)   // SpecAugment fills 0 in the log domain, before normalisation
    // Linear warmup over the first epoch: a 12-layer encoder collapses to uniform outputs without it.
    let warmup = WarmupSchedule(warmupSteps: max(loader.batchesPerEpoch, 1), startFactor: 0.01)
    var step = firstEpoch * loader.batchesPerEpoch
    var best = -1.0, bestResult = EvaluationResult(accuracy: 0, macroF1: 0, confusion: [], mAP: 0, auc: 0, dPrime: 0, clips: 0)
    if firstEpoch > 0 && FileManager.default.fileExists(atPath: run.best.path) {
        // A resumed run keeps the best of its earlier epochs: scored again from best.safetensors (a
        // full result, confusion matrix included), so a worse later epoch cannot overwrite it and a
        // run resumed after its last epoch still reports its best.
        let (result, _) = try evaluate(try Classifier.load(run.best), on: testSet, batchSize: cfg.batchSize, report: skips)
        (best, bestResult) = (cfg.multiLabel ? result.mAP : result.accuracy, result)
    }
    for epoch in firstEpoch..<cfg.epochs {
        var gen = RandomGenerator(seed: cfg.seed &+ UInt64(epoch) &* 104_729)
        let epochLR = cfg.lr * Foundation.pow(cfg.lrDecay, Float(max(0, epoch - decayStart + 1)))
        var progress = Progress(total: loader.batchesPerEpoch, label: "finetune epoch \(epoch + 1)/\(cfg.epochs)", log: log)
        var trainLoss = 0.0, batches = 0
        model.train()
        try loader.forEachBatch(epoch: epoch) { batch in
            optimizer.setLearningRate(warmup.lr(step: step, base: epochLR))
            step += 1
            var feats = batch.features
            if cfg.freqm > 0 || cfg.timem > 0 || cfg.noise || cfg.cropFrames != nil {
                let items = try (0..<feats.shape[0]).map { i -> Tensor in
                    var x = try feats.slice(axis: 0, start: i, end: i + 1).squeeze(0)
                    if let crop = cfg.cropFrames, crop < x.shape[0] {
                        x = try Augment.randomCrop(x, frames: crop, padValue: padValue, generator: &gen)
                    }
                    if cfg.freqm > 0 { x = try Augment.mask(x, axis: 1, param: cfg.freqm, value: padValue, generator: &gen) }
                    if cfg.timem > 0 { x = try Augment.mask(x, axis: 0, param: cfg.timem, value: padValue, generator: &gen) }
                    if cfg.noise { x = try Augment.astNoise(x, generator: &gen) }
                    return x
                }
                feats = try Tensor.stack(items)
            }
            var targets = batch.multiHot(classes: k)
            if cfg.mixup > 0 && feats.shape[0] > 1 {
                let lambda = Augment.beta(cfg.mixup, generator: &gen)
                let perm = Array((1..<feats.shape[0])) + [0]
                feats = try feats * lambda + feats.indexSelect(axis: 0, indices: perm) * (1 - lambda)
                targets = try targets * lambda + targets.indexSelect(axis: 0, indices: perm) * (1 - lambda)
            }
            let logits = try model(feats)
            let loss: Tensor
            if cfg.multiLabel { loss = try logits.binaryCrossEntropyWithLogits(targets: targets) }
            else if cfg.mixup > 0 { loss = try logits.crossEntropy(softTargets: targets) }
            else { loss = try logits.crossEntropy(targets: batch.labels.map { $0.first ?? 0 }, labelSmoothing: cfg.labelSmoothing) }
            optimizer.zeroGrad()
            try loss.backward()
            try optimizer.step()
            trainLoss += Double(try loss.item()); batches += 1
            progress.update(batches, String(format: "loss %.4f", trainLoss / Double(batches)))
        }
        model.eval()
        let clf = Classifier(model: model, classes: cfg.classes, pipeline: cfg.pipeline, multiLabel: cfg.multiLabel)
        let (result, _) = try evaluate(clf, on: testSet, batchSize: cfg.batchSize, report: skips)
        let score = cfg.multiLabel ? result.mAP : result.accuracy
        let isBest = score > best
        if isBest { best = score; bestResult = result }
        var line = result.json
        line["epoch"] = epoch + 1; line["train_loss"] = trainLoss / Double(max(batches, 1)); line["skipped"] = skips.skipped.count
        line["train_clips"] = trainSet.records.count
        line.removeValue(forKey: "confusion_matrix")
        try run.appendMetrics(line)
        try run.saveCheckpoint(model: model, optimizer: optimizer, epoch: epoch, metadata: meta, isBest: isBest)
        log(String(format: "epoch %d: train loss %.4f, test accuracy %.3f, macro F1 %.3f%@", epoch + 1, trainLoss / Double(max(batches, 1)),
                   result.accuracy, result.macroF1, cfg.multiLabel ? String(format: ", mAP %.3f", result.mAP) : ""))
    }
    if !skips.skipped.isEmpty { log(skips.summary) }
    return bestResult
}

/// k-fold cross-validation for fold-based datasets (ESC-50 style): one fine-tuning run per fold
/// under `root/fold-k`, each testing on fold k; returns the per-fold best results and writes their
/// mean and standard deviation to `root/kfold.json`, with the last epoch's accuracy beside the best
/// (picking the best epoch on the test fold flatters, so both are reported).
public func crossValidate(_ config: FineTuneConfig, data: Dataset, root: URL, resume: Bool = false, overwrite: Bool = false,
                          log: @escaping (String) -> Void = { print($0) }) throws -> (folds: [Int: EvaluationResult], mean: Double, std: Double, lastEpochMean: Double?) {
    let folds = Array(Set(data.records.compactMap(\.fold))).sorted()
    guard folds.count >= 2 else { throw NNError("cross-validation: the dataset has \(folds.count) folds (needs a fold per clip, at least 2)") }
    var results: [Int: EvaluationResult] = [:], lastAccuracy: [Int: Double] = [:]
    for k in folds {
        var c = config
        c.testSplit = String(k)
        log("fold \(k) of \(folds.count)")
        let run = try RunDirectory(root.appendingPathComponent("fold-\(k)"))
        results[k] = try fineTuneAST(c, data: data, run: run, resume: resume, overwrite: overwrite, log: log)
        lastAccuracy[k] = run.metricsHistory(throughEpoch: config.epochs).last?["accuracy"] as? Double
    }
    func meanAndStd(_ values: [Double]) -> (Double, Double) {
        let mean = values.reduce(0, +) / Double(values.count)
        return (mean, (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot())
    }
    let (mean, std) = meanAndStd(folds.map { results[$0]!.accuracy })
    var summary: [String: Any] = ["mean_accuracy": mean, "std_accuracy": std]
    summary["folds"] = folds.map { k -> [String: Any] in
        var fold: [String: Any] = ["fold": k, "accuracy": results[k]!.accuracy, "macro_f1": results[k]!.macroF1]
        fold["last_epoch_accuracy"] = lastAccuracy[k]
        return fold
    }
    var lastEpochMean: Double?
    if lastAccuracy.count == folds.count {
        let (lastMean, lastStd) = meanAndStd(folds.map { lastAccuracy[$0]! })
        summary["mean_last_epoch_accuracy"] = lastMean; summary["std_last_epoch_accuracy"] = lastStd
        lastEpochMean = lastMean
    }
    try AtomicFile.write(try JSONSerialization.data(withJSONObject: jsonSafe(summary), options: [.prettyPrinted, .sortedKeys]),
                         to: root.appendingPathComponent("kfold.json"))
    return (results, mean, std, lastEpochMean)
}
