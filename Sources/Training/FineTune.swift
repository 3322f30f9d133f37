import Audio
import Engine
import Foundation
import Inference
import Models
import NN

public struct FineTuneConfig: Codable, Sendable {
    /// What to start from (`ModelRegistry.start`): a pretraining run, checkpoint or release, a released
    /// classifier or an Earshot classifier; nil trains `model` from scratch.
    public var initFrom: String?
    /// Registry name of the model to train from scratch (`earshot models`); a start's own architecture wins.
    public var model = "ssast-tiny-patch"
    public var depth: Int?
    public var inputTdim = 1024
    /// Train on a random window of this many frames from each clip's `inputTdim` (a random time crop:
    /// every epoch sees other parts of a long clip at the cost of a short one); the model's input is
    /// the window, and evaluation averages windows over the whole clip (`Classifier`).
    public var cropFrames: Int?
    public var epochs = 10
    public var batchSize = 8
    public var lr: Float = 1e-4
    public var freezeEncoder = false
    /// SpecAugment mask widths (0 = off); nil takes the model's default (`defaultMasks`), as `earshot
    /// finetune` does where no width is given.
    public var freqm: Int? = 0, timem: Int? = 0
    /// Mixup α (0 = off).
    public var mixup: Float = 0
    /// AST's "noise" augmentation after SpecAugment (`Augment.astNoise`: small uniform noise, then a
    /// roll of −10…9 frames); its ESC-50 and Speech Commands recipes turn it on.
    public var noise = false
    public var labelSmoothing: Float = 0
    /// Stochastic depth: the largest drop-path rate, reached by the last block (timm's `drop_path_rate`).
    public var dropPath: Float = 0
    /// Adam's (coupled, L2) weight decay; AST's recipes use 5e-7.
    public var weightDecay: Float = 5e-7
    /// Learning-rate decay: ×`lrDecay` every epoch from epoch `lrDecayStart` (AST's ESC-50 recipe: 5, 0.85).
    public var lrDecayStart = 5
    public var lrDecay: Float = 0.85
    public var seed: UInt64 = 0
    /// Feature normalisation `(x − mean) / (2·std)`; nil (both) leaves the features as the front end
    /// gives them (a released PANNs or CLAP reads raw dB). Default: AudioSet's Kaldi-fbank statistics, AST's.
    public var mean: Float? = -4.2677393
    public var std: Float? = 4.5689974
    /// Take the start's own normalisation instead of `mean`/`std`, where the start records the features
    /// its encoder was trained on (an Earshot run's statistics; none for a released PANNs; a Hugging Face
    /// AST folder's preprocessor config): `earshot finetune` without `--mean`/`--std`. Applied when the run
    /// begins, so `mean`/`std` in its settings are what it used (and what a resume uses).
    public var normalisationFromStart: Bool?
    /// Test split name, or a fold number for k-fold datasets; scored once, on the checkpoint validation chose.
    public var testSplit = "test"
    /// Where the data has no clip in `testSplit` (and it is "test"): this fraction becomes the test split.
    public var testFraction = 0.2
    /// Where the data has no validation split: this fraction of the training clips becomes one.
    public var valFraction = 0.1
    /// Train on at most this many clips per class, a seeded draw from the training split (`seed`).
    public var shotsPerClass: Int?
    public var classes: [String] = []
    public var multiLabel = false
    /// Class-balanced sampling (PANNs' BalancedTrainSampler) instead of a shuffle of the training clips.
    public var balancedSampling = false
    /// What a bare release to start from does not record (strides, heads, mel bins).
    public var releaseShape: ReleaseShape?
    /// A parameter-efficient method (adapters, LoRA, BitFit, linear probe); nil trains every weight.
    public var peft: PEFTConfig?
    /// Whether the frozen encoder runs in eval mode while the head trains, decided when the run starts
    /// (and kept for a resume; nil in runs from before it existed, which trained it in train mode).
    public var encoderHeldInEval: Bool?
    /// Preference pairs (P2C) and auxiliary heads trained beside the classifier (`AuxiliaryTask`).
    public var auxiliary: AuxiliaryConfig?
    /// Auxiliary datasets mixed into the training, one batch a step, chosen by a bandit (FLAD); nil for none.
    public var flad: FLADConfig?
    /// Knowledge distillation from a teacher's scores on the training clips (`--teacher`).
    public var distillation: DistillationConfig?
    public init() {}
}

/// A fine-tuning run's outcome: the test split scored once on the checkpoint the validation split
/// chose, with that choice.
public struct FineTuneResult: CustomStringConvertible {
    public var test: EvaluationResult
    public var bestEpoch: Int
    /// The chosen epoch's validation numbers (`validation_accuracy`, ...).
    public var validation: [String: Any]
    public var trainClips: Int, validationClips: Int, testClips: Int

    /// The chosen epoch's validation accuracy.
    public var validationAccuracy: Double { validation["validation_accuracy"] as? Double ?? .nan }

    public var description: String {
        String(format: "test %@ (scored once, on epoch %d chosen by validation accuracy %.3f; %d training, %d validation clips)",
               test.description, bestEpoch, validationAccuracy, trainClips, validationClips)
    }
}

/// Names a validation split goes by in datasets that ship one.
let validationSplitNames = ["validation", "valid", "val", "dev"]

/// Train, validation and test sets: the test split (or fold) as given, else `testFraction` of the data;
/// the data's own validation split, else `valFraction` of the rest (both stratified, speaker-disjoint
/// where speakers are known, seeded).
func splitForFineTuning(_ data: Dataset, _ cfg: FineTuneConfig, log: (String) -> Void) throws -> (train: Dataset, validation: Dataset, test: Dataset) {
    var data = data
    if !data.records.contains(where: { $0.isIn(split: cfg.testSplit) }) {
        guard cfg.testSplit == "test" else {
            throw NNError("finetune: no clip is in split or fold '\(cfg.testSplit)' (--test)")
        }
        data = try data.holdingOut(cfg.testFraction, as: "test", seed: cfg.seed) { !validationSplitNames.contains($0.split ?? "") }
        log("the data has no test split: \(data.records.filter { $0.isIn(split: "test") }.count) clips (\(Int(cfg.testFraction * 100))%) held out as test with seed \(cfg.seed)")
    }
    let isTest: (ClipRecord) -> Bool = { $0.isIn(split: cfg.testSplit) }
    let ownValidation = data.records.contains { r in !isTest(r) && validationSplitNames.contains(r.split ?? "") }
    if !ownValidation {
        // Validation mirrors the test split: held-out speakers where the test speakers are unseen in
        // training (the demo's voices), a per-class draw where they are not (FSDD's official split).
        let testSpeakers = Set(data.records.filter(isTest).compactMap(\.speaker))
        let unseen = !testSpeakers.isEmpty && data.records.allSatisfy { isTest($0) || !testSpeakers.contains($0.speaker ?? "") }
        data = try data.holdingOut(cfg.valFraction, as: "validation", seed: cfg.seed &+ 1, bySpeaker: unseen) { !isTest($0) }
    }
    let isValidation: (ClipRecord) -> Bool = { r in !isTest(r) && validationSplitNames.contains(r.split ?? "") }
    let test = data.filter(isTest), validation = data.filter(isValidation)
    let train = data.filter { !isTest($0) && !isValidation($0) }
    guard !train.records.isEmpty, !validation.records.isEmpty, !test.records.isEmpty else {
        throw NNError("finetune: split '\(cfg.testSplit)' leaves \(train.records.count) training, \(validation.records.count) validation and \(test.records.count) test clips")
    }
    let speakers = Set(validation.records.compactMap(\.speaker))
    let disjoint = !speakers.isEmpty && train.records.allSatisfy { !speakers.contains($0.speaker ?? "") }
    let how = ownValidation ? "the data's own" : "\(Int(cfg.valFraction * 100))% of the training clips\(disjoint ? " (whole speakers)" : ""), seed \(cfg.seed)"
    log("\(train.records.count) training, \(validation.records.count) validation (\(how)) and \(test.records.count) test clips")
    return (train, validation, test)
}

/// Supervised fine-tuning of a classifier (from a pretrained start or from scratch): validation picks
/// the best epoch's checkpoint, and the test split is scored once, on it.
public func fineTune(_ config: FineTuneConfig, data: Dataset, run: RunDirectory, resume: Bool = false, overwrite: Bool = false,
                     log: @escaping (String) -> Void = { print($0) }) throws -> FineTuneResult {
    let resuming = run.canResume(resume)
    var cfg = run.settings(config, resuming: resuming, epochs: \.epochs, log: log)
    // Clips without a label train on a teacher's scores alone (semi-supervised distillation); without a teacher
    // there is nothing to train them on.
    let unlabelled = data.records.filter { $0.labels.isEmpty }
    if let first = unlabelled.first, cfg.distillation == nil {
        throw NNError("finetune: \(unlabelled.count) of \(data.records.count) clips have no label (first: \(first.path)); "
                      + "fine-tuning needs one per clip (a manifest with a label column, or a folder per class), or a --teacher to learn them from")
    }
    if cfg.classes.isEmpty { cfg.classes = data.classes }
    cfg.multiLabel = cfg.multiLabel || data.multiLabel
    // One class gives a softmax that is always 1: every clip "right", validation accuracy 1.0, nothing learnt.
    guard cfg.multiLabel || cfg.classes.count >= 2 else {
        throw NNError("finetune: the labels name only one class (\(cfg.classes.first ?? "none")); a classifier needs at least two")
    }
    if let crop = cfg.cropFrames, crop <= 0 || crop > cfg.inputTdim {
        throw NNError("finetune: crop-frames \(crop) must be between 1 and the target length \(cfg.inputTdim)")
    }
    guard cfg.dropPath >= 0 && cfg.dropPath < 1 else { throw NNError("finetune: drop-path \(cfg.dropPath) must be in [0, 1)") }
    guard cfg.weightDecay >= 0 else { throw NNError("finetune: weight-decay \(cfg.weightDecay) must not be negative") }
    guard cfg.epochs >= 1 else { throw NNError("finetune: epochs \(cfg.epochs) must be at least 1") }
    guard cfg.lr > 0 && cfg.lr.isFinite else { throw NNError("finetune: learning rate \(cfg.lr) must be positive") }
    if !unlabelled.isEmpty {
        // Their targets are the teacher's alone: nothing for a multi-label BCE, mixup or a per-class queue to use.
        guard !cfg.multiLabel else { throw NNError("finetune: clips without labels train on a teacher's scores in single-label runs only (this one is multi-label)") }
        guard cfg.mixup == 0 else { throw NNError("finetune: --mixup does not go with clips without labels (their targets are the teacher's alone)") }
        guard !cfg.balancedSampling else { throw NNError("finetune: --balanced samples per class; clips without labels have none") }
    }
    let labelled = Dataset(records: data.records.filter { !$0.labels.isEmpty }, layout: data.layout, classes: cfg.classes)
    let (trainAll, validation, test) = try splitForFineTuning(labelled, cfg, log: log)
    // Unlabelled clips join the training split only; one marked for testing or validation stays out (training on
    // test audio, even without its label, would leak it).
    let heldOutSplits = Set(validationSplitNames + [cfg.testSplit])
    let unlabelledTraining = unlabelled.filter { r in !heldOutSplits.contains(r.split ?? "") && !(r.fold.map { String($0) == cfg.testSplit } ?? false) }
    if !unlabelled.isEmpty {
        log("\(unlabelledTraining.count) clips without labels train on the teacher's scores alone"
            + (unlabelledTraining.count < unlabelled.count ? " (\(unlabelled.count - unlabelledTraining.count) in the test or validation split left out)" : ""))
    }

    // The model: a resumed run's own (its last checkpoint's architecture); else the start's; else the named config.
    let shape = ModelShape(frames: cfg.cropFrames ?? cfg.inputTdim, outputs: cfg.classes.count, depth: cfg.depth, dropPath: cfg.dropPath)
    let model: any AudioClassifierModel
    Random.seed(cfg.seed)
    var startFile: URL?   // the weights file the start was read from (a delta records its hash)
    var startPipeline: FeaturePipeline?   // the features the start's encoder was trained on, where it records them
    if resuming {
        guard let arch = ModelRegistry.architecture(try SafeTensors.read(run.last).metadata) else {
            throw NNError("\(run.last.path): no architecture in the checkpoint metadata")
        }
        model = try ModelRegistry.classifier(arch, dropPath: cfg.dropPath)
    } else if let initFrom = cfg.initFrom {
        let start = try ModelRegistry.start(ShippedModels.resolve(initFrom), shape: cfg.releaseShape ?? ReleaseShape())
        do { model = try start.build(shape) } catch { throw NNError("finetune: \(error)") }
        if let name = start.modelName { (cfg.model, cfg.depth) = (name, start.depth) }
        (startFile, startPipeline) = (start.file, start.pipeline)
        log("initialised the encoder from \(start.file.path) (\(start.kind))")
        if cfg.normalisationFromStart == true, let features = start.pipeline {
            (cfg.mean, cfg.std) = (features.mean, features.std)
            log(features.mean.map { String(format: "features normalised as the start's were: mean %g, std %g", $0, features.std ?? .nan) }
                ?? "features left unnormalised, as the start read them")
        }
    } else {
        do { model = try ModelRegistry.entry(named: cfg.model).classifier(shape) } catch { throw NNError("finetune: \(error)") }
    }
    guard model.outputs == cfg.classes.count else {
        throw NNError("finetune: the model has \(model.outputs) outputs for the run's \(cfg.classes.count) classes")
    }
    if cfg.freezeEncoder { model.freeze { key, _ in !model.isHead(key) } }
    if let peft = cfg.peft {
        do { log("\(peft): " + (try peft.apply(to: model)).description) } catch { throw NNError("finetune: \(error)") }
    }
    let masks = defaultMasks(for: model, frames: cfg.cropFrames ?? cfg.inputTdim)
    (cfg.freqm, cfg.timem) = (cfg.freqm ?? masks.freqm, cfg.timem ?? masks.timem)
    let pipeline = try ModelRegistry.family(of: model).pipeline(for: model, frames: cfg.inputTdim, mean: cfg.mean, std: cfg.std)
    // An encoder none of whose parameters train is a fixed feature extractor: eval mode while the head
    // trains, so its batch norms keep their statistics (PANNs, HTSAT) and no dropout or in-model SpecAugment
    // runs. Only where the run feeds it the features its start was trained on: a released PANNs read raw
    // dB, and with the run's dataset normalisation its batch norms have to adapt in train mode.
    let encoderParameters = model.encoder.namedParameters()
    let frozen = !encoderParameters.isEmpty && encoderParameters.allSatisfy { !$0.1.requiresGrad }
    if cfg.encoderHeldInEval == nil && !resuming {
        let sameFeatures = startPipeline.map { $0.mean == pipeline.mean && $0.std == pipeline.std } ?? true
        cfg.encoderHeldInEval = frozen && sameFeatures
        if frozen && !sameFeatures {
            log("the encoder is frozen, but its start read features without this run's normalisation: it stays in train mode so its batch norms adapt")
        }
    }
    if frozen && cfg.encoderHeldInEval == true {
        model.encoder.holdInEvalMode()
        log("the encoder is frozen: it runs in eval mode (batch-norm statistics kept, no dropout) while the head trains")
    }
    if cfg.distillation != nil && (cfg.auxiliary != nil || cfg.flad != nil) {
        throw NNError("finetune: --teacher does not combine with --pairs, --aux-head or --aux-data in one run yet")
    }
    try cfg.distillation?.validate()
    if cfg.auxiliary != nil && cfg.flad != nil {
        throw NNError("finetune: --aux-data (FLAD) does not combine with --pairs or --aux-head in one run yet")
    }
    let auxiliary = try AuxiliarySetup(cfg, data: Dataset(records: data.records, layout: data.layout, classes: cfg.classes),
                                       train: trainAll, model: model, log: log)
    let auxiliaryData = try cfg.flad.map { flad -> [AuxiliaryDataset] in
        guard !resuming else { throw NNError("finetune: --resume cannot continue a FLAD run (--aux-data): its bandit and auxiliary heads are not checkpointed") }
        return try AuxiliaryDataset.load(flad, targetClasses: cfg.classes, heldOut: Set((validation.records + test.records).map { AuxiliaryDataset.standardPath($0.path) }),
                                         pipeline: pipeline, log: log)
    }
    let optimizer = Adam([ParameterGroup(model.trainableParameters(), lr: cfg.lr, weightDecay: cfg.weightDecay)]
                         + (auxiliary.map { [$0.parameterGroup(lr: cfg.lr, weightDecay: cfg.weightDecay)] } ?? []), betas: (0.95, 0.999))
    var train = trainAll
    if let shots = cfg.shotsPerClass {
        train = try train.sampled(perClass: shots, seed: cfg.seed)
        log("training on \(train.records.count) clips: at most \(shots) per class, drawn with seed \(cfg.seed)")
    }
    if !unlabelledTraining.isEmpty { train = Dataset(records: train.records + unlabelledTraining, layout: train.layout, classes: cfg.classes) }
    // One report for every split: an unreadable validation or test clip is named as a training one is.
    let skips = SkipReport()
    // The teacher scores the training clips before the run folder is touched: a teacher that cannot serve stops nothing
    // begun. A resumed run reads the scores it began with, where they are kept for these settings and clips.
    let teacherFile = run.url.appendingPathComponent(TeacherTargets.fileName)
    var teacherKept = false
    let teacherFingerprint = cfg.distillation.map { TeacherTargets.fingerprint($0, classes: cfg.classes, multiLabel: cfg.multiLabel, records: train.records) }
    let teacher = try cfg.distillation.map { kd -> TeacherTargets in
        if resuming, let kept = TeacherTargets.kept(teacherFile, fingerprint: teacherFingerprint!, config: kd, classes: cfg.classes.count,
                                                    multiLabel: cfg.multiLabel, count: train.records.count) {
            log("teacher scores read from \(teacherFile.path) (\(kept.scored) clips), as the run began with them")
            teacherKept = true
            return kept
        }
        return try TeacherTargets.make(kd, classes: cfg.classes, multiLabel: cfg.multiLabel, records: train.records, batchSize: cfg.batchSize, report: skips, log: log)
    }
    let firstEpoch = try run.begin(resuming: resuming, resume: resume, overwrite: overwrite, settings: cfg, epochs: cfg.epochs,
                                   model: model, optimizer: optimizer, log: log)
    if let teacher, !teacherKept { try teacher.save(to: teacherFile, fingerprint: teacherFingerprint!) }
    let loader = try FeatureLoader(dataset: train, pipeline: pipeline, batchSize: cfg.batchSize, seed: cfg.seed, report: skips,
                                   balanced: cfg.balancedSampling)
    var augmentation = ClassificationAugmentation()
    (augmentation.cropFrames, augmentation.freqm, augmentation.timem, augmentation.noise, augmentation.mixup, augmentation.labelSmoothing) =
        (cfg.cropFrames, cfg.freqm ?? 0, cfg.timem ?? 0, cfg.noise, cfg.mixup, cfg.labelSmoothing)
    // SpecAugment fills 0 in the log domain, before normalisation.
    if let mean = pipeline.mean, let std = pipeline.std { augmentation.padValue = (0 - mean) / (2 * std) }
    let classification = ClassificationTask(model: model, classes: cfg.classes, multiLabel: cfg.multiLabel, pipeline: pipeline,
                                            augmentation: augmentation, peft: cfg.peft, validation: validation, batchSize: cfg.batchSize, report: skips)
    classification.distillation = teacher
    let task: TrainingTask = try auxiliary?.task(wrapping: classification, loader: loader, validation: validation, seed: cfg.seed, log: log)
        ?? classification
    var settings = TrainerSettings(epochs: cfg.epochs, lr: cfg.lr)
    (settings.seed, settings.label) = (cfg.seed, "finetune")
    // Linear warmup over the first epoch: a 12-layer encoder collapses to uniform outputs without it.
    (settings.warmupSteps, settings.warmupStart) = (max(loader.batchesPerEpoch, 1), 0.01)
    // AST's ESC recipe: ×lrDecay once per epoch index from lrDecayStart on (0-based epochs; start ≥ 1).
    let (decayStart, decay) = (max(cfg.lrDecayStart, 1), cfg.lrDecay)
    settings.epochFactor = { epoch in Foundation.pow(decay, Float(max(0, epoch - decayStart + 1))) }
    let trained: TrainingTask = try auxiliaryData.map {
        try FLADTask(target: classification, auxiliary: $0, bandit: cfg.flad!.bandit, optimizer: optimizer, batchSize: cfg.batchSize, seed: cfg.seed, report: skips)
    } ?? task
    let report = try Trainer(run: run, settings: settings, log: log).fit(trained, loader: loader, optimizer: optimizer, firstEpoch: firstEpoch)

    if let peft = cfg.peft, peft.method != .full, let initFrom = cfg.initFrom {
        // A resumed run did not read its start: only then is it found again.
        let base = try startFile ?? ModelRegistry.start(ShippedModels.resolve(initFrom), shape: cfg.releaseShape ?? ReleaseShape()).file
        try writeDelta(run: run, model: model, base: base, releaseShape: cfg.releaseShape)
        log("wrote \(run.delta.lastPathComponent): the \(model.parameterCount(trainableOnly: true)) trained parameters, to load with --base \(initFrom)")
    }
    // The test split, once, on the checkpoint validation chose.
    let chosen = try Classifier.load(run.best)
    let (result, _) = try evaluate(chosen, on: test, batchSize: cfg.batchSize, report: skips)
    var line = result.json
    line.removeValue(forKey: "confusion_matrix")
    var testLine: [String: Any] = ["split": "test", "scored_once_on_epoch": report.bestEpoch, "selected_on": "validation"]
    for (k, v) in line { testLine["test_" + k] = v }
    // A resume of a finished run trains nothing: its test line, on the same checkpoint, is already the
    // history's last; a second copy would read as a second scoring.
    if run.closingTestLine?["scored_once_on_epoch"] as? Int != report.bestEpoch { try run.appendMetrics(testLine) }
    // AudioSet-style evaluation reports every class: AP, AUC and d' per class beside metrics.jsonl.
    let perClass = try JSONSerialization.data(withJSONObject: jsonSafe(["split": "test", "classes": result.perClassJSON(classes: chosen.classes)]),
                                              options: [.prettyPrinted, .sortedKeys])
    try perClass.write(to: run.url.appendingPathComponent("test_per_class.json"), options: .atomic)
    log(String(format: "test (scored once, on epoch %d chosen by validation): accuracy %.3f, macro F1 %.3f over %d clips",
               report.bestEpoch, result.accuracy, result.macroF1, result.clips))
    if !skips.isEmpty { log(skips.summary) }
    return FineTuneResult(test: result, bestEpoch: report.bestEpoch, validation: report.validation,
                          trainClips: train.records.count, validationClips: validation.records.count, testClips: test.records.count)
}

/// `repeats` fine-tuning runs with seeds `config.seed`, `config.seed + 1`, ...: for few-shot runs
/// (`shotsPerClass`) each draws other clips, so the spread says how much the result depends on the
/// draw. Runs go under `root/draw-<i>`; `root/repeats.json` gets each run's test score and their mean
/// and standard deviation.
public func repeatedRuns(_ config: FineTuneConfig, data: Dataset, root: URL, repeats: Int, resume: Bool = false, overwrite: Bool = false,
                         log: @escaping (String) -> Void = { print($0) }) throws -> (runs: [FineTuneResult], mean: Double, std: Double) {
    guard repeats >= 1 else { throw NNError("repeats \(repeats) must be at least 1") }
    var runs: [FineTuneResult] = []
    for i in 0..<repeats {
        var c = config
        c.seed = config.seed &+ UInt64(i)
        log("draw \(i + 1) of \(repeats) (seed \(c.seed))")
        runs.append(try fineTune(c, data: data, run: try RunDirectory(root.appendingPathComponent("draw-\(i)")), resume: resume,
                                 overwrite: overwrite, log: log))
    }
    let (mean, std) = meanAndStd(runs.map(\.test.accuracy))
    let summary: [String: Any] = ["mean_test_accuracy": mean, "std_test_accuracy": std, "selected_on": "validation",
                                  "shots_per_class": config.shotsPerClass as Any? ?? NSNull(),
                                  "draws": runs.enumerated().map { i, r in
                                      ["seed": Int(config.seed) + i, "test_accuracy": r.test.accuracy, "test_macro_f1": r.test.macroF1,
                                       "best_epoch": r.bestEpoch, "train_clips": r.trainClips] as [String: Any] }]
    try AtomicFile.write(try JSONSerialization.data(withJSONObject: jsonSafe(summary), options: [.prettyPrinted, .sortedKeys]),
                         to: root.appendingPathComponent("repeats.json"))
    return (runs, mean, std)
}

/// SpecAugment widths where the run names none: AST's (24 bins; 96 frames per 1024 of the training
/// window, so a short crop is not blanked by one mask), none for a model that masks its own input
/// (PANNs' drop stripes: its recipe has no second SpecAugment, and the two together kept Cnn6 at chance on FSDD),
/// and none for a model that says its input does not take them (`SelfAugmentingModel.takesDatasetSpecAugment`:
/// CLAP's unnormalised log-mel, where a mask filled with 0 would be a block of loud sound).
func defaultMasks(for model: any AudioClassifierModel, frames: Int) -> (freqm: Int, timem: Int) {
    if let own = model as? any SelfAugmentingModel, !own.takesDatasetSpecAugment { return (0, 0) }
    return (24, max(Int((96 * Double(frames) / 1024).rounded()), 0))
}

/// Mean and (population) standard deviation.
func meanAndStd(_ values: [Double]) -> (Double, Double) {
    let mean = values.reduce(0, +) / Double(max(values.count, 1))
    return (mean, (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(values.count, 1))).squareRoot())
}

/// k-fold cross-validation for fold-based datasets (ESC-50 style): one fine-tuning run per fold
/// under `root/fold-k`, each testing on fold k once with the checkpoint its validation split chose;
/// returns the per-fold test results and writes their mean and standard deviation to `root/kfold.json`.
public func crossValidate(_ config: FineTuneConfig, data: Dataset, root: URL, resume: Bool = false, overwrite: Bool = false,
                          log: @escaping (String) -> Void = { print($0) }) throws -> (folds: [Int: FineTuneResult], mean: Double, std: Double) {
    let folds = Array(Set(data.records.compactMap(\.fold))).sorted()
    guard folds.count >= 2 else { throw NNError("cross-validation: the dataset has \(folds.count) folds (needs a fold per clip, at least 2)") }
    var results: [Int: FineTuneResult] = [:]
    for k in folds {
        var c = config
        c.testSplit = String(k)
        log("fold \(k) of \(folds.count)")
        results[k] = try fineTune(c, data: data, run: try RunDirectory(root.appendingPathComponent("fold-\(k)")), resume: resume,
                                  overwrite: overwrite, log: log)
    }
    let (mean, std) = meanAndStd(folds.map { results[$0]!.test.accuracy })
    var summary: [String: Any] = ["mean_test_accuracy": mean, "std_test_accuracy": std, "selected_on": "validation"]
    summary["folds"] = folds.map { k -> [String: Any] in
        let r = results[k]!
        return ["fold": k, "test_accuracy": r.test.accuracy, "test_macro_f1": r.test.macroF1, "best_epoch": r.bestEpoch,
                "validation_accuracy": r.validationAccuracy]
    }
    try AtomicFile.write(try JSONSerialization.data(withJSONObject: jsonSafe(summary), options: [.prettyPrinted, .sortedKeys]),
                         to: root.appendingPathComponent("kfold.json"))
    return (results, mean, std)
}

/// The best checkpoint's trainable tensors and its buffers as `delta.safetensors` (`DeltaCheckpoint`),
/// beside it; `base` is the weights file the run started from. Buffers are batch-norm statistics (a
/// few kilobytes): an encoder in train mode moves them though no weight of theirs trains, and a delta
/// without them would score otherwise than the run.
func writeDelta(run: RunDirectory, model: any AudioClassifierModel, base: URL, releaseShape: ReleaseShape?) throws {
    let best = try SafeTensors.read(run.best)
    let parameters = Set(model.namedParameters().map(\.0))
    let buffers = model.namedTensors().map(\.0).filter { !parameters.contains($0) }
    let trained = Set(model.namedParameters().filter(\.1.requiresGrad).map(\.0) + buffers)
    let tensors = best.tensors.filter { trained.contains($0.key) }
    try DeltaCheckpoint.write(tensors, metadata: best.metadata, model: model, base: base, releaseShape: releaseShape, to: run.delta)
}
