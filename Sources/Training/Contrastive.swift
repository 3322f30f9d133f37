import Audio
import CLAP
import Engine
import Foundation
import Inference
import Models
import NN
import Text

/// Everything a contrastive (CLAP) run needs; written to the run's config.json.
public struct ContrastiveConfig: Codable, Sendable {
    /// The audio tower: a registry name (`earshot models`: ast-*, ssast-*, ssamba-*, ...), or
    /// `htsat-tiny` / `htsat-base` (LAION's, on its 48 kHz log-mel). `initFrom` overrides it.
    public var audioModel = "ssast-tiny-frame"
    /// A pretraining run, checkpoint or release the audio tower starts from (`ModelRegistry.start`).
    public var initFrom: String?
    /// The text tower: a Hugging Face BERT / RoBERTa folder (config.json, model.safetensors, tokenizer).
    public var textModel = ""
    public var depth: Int?
    /// Frames per clip a registry tower takes (HTSAT: 1001, 10 s at hop 480).
    public var inputTdim = 1024
    public var epochs = 10
    public var batchSize = 16
    public var lr: Float = 1e-4
    public var warmupSteps = 100
    /// Adam's weight decay (LAION trains with 0).
    public var weightDecay: Float = 0
    public var seed: UInt64 = 0
    public var mean: Float = -4.2677393
    public var std: Float = 4.5689974
    /// Width of the joint space (512 in LAION's models).
    public var projectionDim = 512
    /// Tokens a caption is cut at (77, LAION's).
    public var maxTextTokens = 77
    /// Where the data has no validation split: this fraction of the training clips becomes one.
    public var valFraction = 0.1
    /// Captions from labels for clips without one (`KeywordCaptioner`).
    public var keywordToCaption = false
    /// Caption templates (nil: `KeywordCaptioner.defaultTemplates`).
    public var captionTemplates: [String]?
    /// Label → words in captions and zero-shot prompts ("0" → "zero").
    public var keywords: [String: String] = [:]
    /// Label → captions a person wrote, added to the templated ones.
    public var labelCaptions: [String: [String]] = [:]
    /// Classes kept out of training and validation: their clips measure zero-shot accuracy and
    /// retrieval on unseen sounds, once, on the checkpoint validation chose.
    public var holdOutClasses: [String] = []
    /// Keep the text tower's weights as loaded (its projection still trains): on small data this keeps
    /// what the pretrained tower knows of words the captions never use (zero-shot on unseen classes).
    public var freezeText = false
    /// Cache features on disk under the run folder (`features/`): a clip is decoded and transformed once.
    public var cacheFeatures = true
    public init() {}

    func captioner() throws -> KeywordCaptioner {
        try KeywordCaptioner(templates: captionTemplates ?? KeywordCaptioner.defaultTemplates, keywords: keywords, labelCaptions: labelCaptions)
    }
}

/// A contrastive run's outcome: the chosen epoch, its validation numbers, and the clips scored once on it.
public struct ContrastiveResult: CustomStringConvertible {
    public var bestEpoch: Int
    public var validation: [String: Any]
    /// Retrieval on the test split (nil where the data has none).
    public var test: [String: Double]?
    /// Held-out classes: zero-shot accuracy and retrieval on their clips (nil where none are held out).
    public var zeroShot: [String: Double]?
    /// The exported model folder (`CLAP.load` reads it).
    public var exported: URL
    public var trainClips: Int, validationClips: Int

    public var description: String {
        var s = String(format: "best epoch %d (validation mean R@1 %.3f; %d training, %d validation clips)", bestEpoch,
                       validation["validation_mean_R@1"] as? Double ?? .nan, trainClips, validationClips)
        if let t = test { s += String(format: "; test R@1 audio→text %.3f, text→audio %.3f", t["audio_to_text_R@1"] ?? .nan, t["text_to_audio_R@1"] ?? .nan) }
        if let z = zeroShot { s += String(format: "; held-out classes: zero-shot accuracy %.3f over %.0f clips", z["accuracy"] ?? .nan, z["clips"] ?? 0) }
        return s + " -> \(exported.path)"
    }
}

/// Clips with their captions: the rows of one file grouped (a captions CSV may give a clip several
/// rows), captions from labels where asked.
struct CaptionedClips {
    var clips: [ClipRecord]
    var captions: [[String]]

    init(_ data: Dataset, captioner: KeywordCaptioner?) throws {
        var order: [String: Int] = [:]
        clips = []; captions = []
        for r in data.records {
            if let i = order[r.path] {
                if let c = r.caption, !captions[i].contains(c) { captions[i].append(c) }
                for l in r.labels where !clips[i].labels.contains(l) { clips[i].labels.append(l) }
                continue
            }
            order[r.path] = clips.count
            clips.append(r); captions.append(r.caption.map { [$0] } ?? [])
        }
        if let captioner {
            for i in clips.indices where captions[i].isEmpty { captions[i] = captioner.captions(labels: clips[i].labels) }
        }
        let missing = clips.indices.filter { captions[$0].isEmpty }
        if let first = missing.first {
            let labelled = clips[first].labels.isEmpty ? "" : " (it has labels: --keyword-to-caption makes captions from them)"
            throw NNError("contrastive: \(missing.count) of \(clips.count) clips have no caption; first: \(clips[first].path)\(labelled)")
        }
    }

    func subset(_ keep: (ClipRecord) -> Bool, layout: String) -> (Dataset, [[String]]) {
        let idx = clips.indices.filter { keep(clips[$0]) }
        return (Dataset(records: idx.map { clips[$0] }, layout: layout), idx.map { captions[$0] })
    }
}

/// The audio tower a config names, its front end, and what the trained folder records of it.
func contrastiveAudioTower(_ cfg: ContrastiveConfig, log: (String) -> Void) throws -> (tower: any CLAPAudioTower, spec: CLAPAudioTowerSpec, pipeline: FeaturePipeline) {
    if cfg.initFrom == nil, cfg.audioModel.hasPrefix("htsat") {
        var c: HTSATConfig
        switch cfg.audioModel {
        case "htsat-tiny": c = .tiny
        case "htsat-base": c = .base
        default: throw NNError("contrastive: unknown audio model '\(cfg.audioModel)' (htsat-tiny, htsat-base, or a registry name)")
        }
        if let d = cfg.depth { c.depths = c.depths.map { min($0, d) } }
        do { try c.validate() } catch { throw NNError("contrastive: \(error)") }
        // LAION's unfused front end; clips are cut or zero-padded to 10 s (not repeat-padded) by the loader.
        return (HTSAT(c), .htsat(c), FeaturePipeline(kind: .logMel(.clap), targetFrames: c.frames))
    }
    let shape = ModelShape(frames: cfg.inputTdim, outputs: 1, depth: cfg.depth)
    let classifier: any AudioClassifierModel
    var pipeline: FeaturePipeline?
    if let initFrom = cfg.initFrom {
        let start = try ModelRegistry.start(ShippedModels.resolve(initFrom))
        do { classifier = try start.build(shape) } catch { throw NNError("contrastive: \(error)") }
        pipeline = start.pipeline.map { var p = $0; p.targetFrames = cfg.inputTdim; return p }
        log("initialised the audio tower from \(start.file.path) (\(start.kind))")
    } else {
        do { classifier = try ModelRegistry.entry(named: cfg.audioModel).classifier(shape) } catch { throw NNError("contrastive: \(error)") }
    }
    // The head is not used: frozen, so no optimizer state is kept for it.
    _ = classifier.freeze { key, _ in classifier.isHead(key) }
    let p = try pipeline ?? ModelRegistry.family(of: classifier).pipeline(for: classifier, frames: cfg.inputTdim, mean: cfg.mean, std: cfg.std)
    return (ClassifierAudioTower(classifier), .classifier(classifier.architecture), p)
}

/// Trains a CLAP on captioned audio (`file,caption` rows, several per clip allowed; or labelled clips
/// with `keywordToCaption`): an audio tower from a registry name, a pretrained start or HTSAT, a text
/// tower from a folder, Adam with warmup and a cosine decay over the epochs, validation mean R@1
/// choosing the checkpoint. The best checkpoint is exported to `run/clap` (`TrainedCLAP`), then scored
/// once on the test split (retrieval) and on the held-out classes (zero-shot accuracy, retrieval).
public func trainContrastive(_ config: ContrastiveConfig, data: Dataset, run: RunDirectory, resume: Bool = false, overwrite: Bool = false,
                             log: @escaping (String) -> Void = { print($0) }) throws -> ContrastiveResult {
    let resuming = run.canResume(resume)
    let cfg = run.settings(config, resuming: resuming, epochs: \.epochs, log: log)
    guard cfg.epochs >= 1 else { throw NNError("contrastive: epochs \(cfg.epochs) must be at least 1") }
    guard cfg.lr > 0 && cfg.lr.isFinite else { throw NNError("contrastive: learning rate \(cfg.lr) must be positive") }
    guard cfg.batchSize >= 2 else { throw NNError("contrastive: batch size \(cfg.batchSize) must be at least 2 (each clip's negatives are the batch's other captions)") }
    guard cfg.maxTextTokens >= 2 else { throw NNError("contrastive: max text tokens \(cfg.maxTextTokens) must be at least 2") }
    let captioner = try cfg.captioner()
    let clips = try CaptionedClips(data, captioner: cfg.keywordToCaption ? captioner : nil)
    let known = Set(clips.clips.flatMap(\.labels))
    if let unknown = cfg.holdOutClasses.first(where: { !known.contains($0) }) {
        throw NNError("contrastive: held-out class '\(unknown)' is not a label of the data (labels: \(known.sorted().prefix(20).joined(separator: ", ")))")
    }
    let heldOut = Set(cfg.holdOutClasses)
    let isHeldOut: (ClipRecord) -> Bool = { !heldOut.isDisjoint(with: $0.labels) }

    // Splits of the seen clips: the data's own test and validation, else valFraction of the rest.
    var seen = clips.subset({ !isHeldOut($0) }, layout: data.layout)
    let isTest: (ClipRecord) -> Bool = { $0.split == "test" }
    if !seen.0.records.contains(where: { validationSplitNames.contains($0.split ?? "") }) {
        let marked = try seen.0.holdingOut(cfg.valFraction, as: "validation", seed: cfg.seed &+ 1, bySpeaker: false) { !isTest($0) }
        seen.0 = Dataset(records: marked.records, layout: data.layout)
    }
    func part(_ keep: (ClipRecord) -> Bool) -> (Dataset, [[String]]) {
        let idx = seen.0.records.indices.filter { keep(seen.0.records[$0]) }
        return (Dataset(records: idx.map { seen.0.records[$0] }, layout: data.layout), idx.map { seen.1[$0] })
    }
    let isValidation: (ClipRecord) -> Bool = { !isTest($0) && validationSplitNames.contains($0.split ?? "") }
    let train = part { !isTest($0) && !isValidation($0) }, validation = part(isValidation), test = part(isTest)
    guard !train.0.records.isEmpty, !validation.0.records.isEmpty else {
        throw NNError("contrastive: \(train.0.records.count) training and \(validation.0.records.count) validation clips; both must be non-empty")
    }
    let zeroShot = clips.subset(isHeldOut, layout: data.layout)
    log("\(train.0.records.count) training, \(validation.0.records.count) validation, \(test.0.records.count) test clips"
        + (heldOut.isEmpty ? "" : "; \(zeroShot.0.records.count) clips of \(heldOut.count) held-out classes"))

    // The towers.
    Random.seed(cfg.seed)
    let (tower, spec, pipeline) = try contrastiveAudioTower(cfg, log: log)
    let textFolder = URL(fileURLWithPath: cfg.textModel)
    let text: TextEncoder
    do {
        // Captions are cut at maxTextTokens, or at the tower's positions where it has fewer.
        let positions = try BertConfig.fromHuggingFace(textFolder.appendingPathComponent("config.json")).maxTokens
        text = try TextEncoder.load(textFolder, maxLength: min(cfg.maxTextTokens, positions))
    } catch { throw NNError("contrastive: text model " + describing(error, under: textFolder)) }
    let model = AudioTextModel(audioTower: tower, textModel: text.model, textPooling: text.pooling, projectionDim: cfg.projectionDim)
    let clapConfig = TrainedCLAPConfig(audioTower: spec, text: text.model.config, textPooling: text.pooling, textPooler: text.model.pooler != nil,
                                       projectionDim: cfg.projectionDim, maxTextTokens: text.tokenizer.maxLength, frontEnd: pipeline)
    log("audio tower \(cfg.initFrom ?? cfg.audioModel) (\(tower.parameterCount()) parameters), text tower \(textFolder.lastPathComponent) "
        + "(\(text.model.parameterCount()) parameters, \(text.pooling) pooling), joint space \(cfg.projectionDim)")

    if cfg.freezeText { text.model.freeze() }
    let optimizer = Adam([ParameterGroup(model.trainableParameters(), lr: cfg.lr, weightDecay: cfg.weightDecay)])
    let firstEpoch = try run.begin(resuming: resuming, resume: resume, overwrite: overwrite, settings: cfg, epochs: cfg.epochs,
                                   model: model, optimizer: optimizer, log: log)
    let skips = SkipReport()
    let cache = cfg.cacheFeatures ? run.url.appendingPathComponent("features") : nil
    let loader = try FeatureLoader(dataset: train.0, pipeline: pipeline, batchSize: cfg.batchSize, seed: cfg.seed, cacheDirectory: cache, report: skips)
    func evalLoader(_ d: Dataset) throws -> FeatureLoader {
        try FeatureLoader(dataset: d, pipeline: pipeline, batchSize: cfg.batchSize, shuffle: false, cacheDirectory: cache, report: skips)
    }
    let meta = ["clap_config": String(data: try JSONEncoder().encode(clapConfig), encoding: .utf8)!,
                "contrastive_config": String(data: try JSONEncoder().encode(cfg), encoding: .utf8)!]
    let task = try ContrastiveTask(model: model, tokenizer: text.tokenizer, captions: train.1, validation: try evalLoader(validation.0),
                                   validationCaptions: validation.1, metadata: meta)
    var settings = TrainerSettings(epochs: cfg.epochs, lr: cfg.lr)
    (settings.seed, settings.label, settings.warmupSteps) = (cfg.seed, "contrastive", cfg.warmupSteps)
    let epochs = cfg.epochs
    settings.epochFactor = { e in 0.5 * (1 + Foundation.cos(Float.pi * Float(e) / Float(epochs))) }   // cosine, as LAION
    let report = try Trainer(run: run, settings: settings, log: log).fit(task, loader: loader, optimizer: optimizer, firstEpoch: firstEpoch)
    if task.truncatedCaptions > 0 { log("\(task.truncatedCaptions) captions were cut at \(text.tokenizer.maxLength) tokens") }

    // The chosen checkpoint, exported and scored once.
    let exported = run.url.appendingPathComponent("clap")
    try TrainedCLAP.export(config: clapConfig, checkpoint: run.best, tokenizerFolder: textFolder, to: exported)
    let clap = try TrainedCLAP.load(exported, maxLength: text.tokenizer.maxLength)
    var line: [String: Any] = ["split": "test", "scored_once_on_epoch": report.bestEpoch, "selected_on": "validation"]
    var testScores: [String: Double]?
    if !test.0.records.isEmpty {
        testScores = try ContrastiveTask.retrieval(clap.model, tokenizer: clap.tokenizer, loader: try evalLoader(test.0), captions: test.1, batchSize: cfg.batchSize)
        for (k, v) in testScores! { line["test_" + k] = v }
        log("test (epoch \(report.bestEpoch)): " + summary(testScores!))
    }
    var zeroShotScores: [String: Double]?
    if !zeroShot.0.records.isEmpty {
        var z = try ContrastiveTask.retrieval(clap.model, tokenizer: clap.tokenizer, loader: try evalLoader(zeroShot.0), captions: zeroShot.1, batchSize: cfg.batchSize)
        let classes = cfg.holdOutClasses
        let zs = try ZeroShotClassifier(clap: clap, labels: classes.map(captioner.keyword), templates: captioner.templates)
        let (audio, indices) = try ContrastiveTask.audioEmbeddings(clap.model, loader: try evalLoader(zeroShot.0))
        let predicted = try zs.logits(audioEmbeddings: audio).argmax(axis: 1)
        var correct = 0
        for (row, i) in indices.enumerated() where zeroShot.0.records[i].labels.contains(classes[predicted[row]]) { correct += 1 }
        z["accuracy"] = Double(correct) / Double(max(indices.count, 1))
        z["classes"] = Double(classes.count)
        zeroShotScores = z
        for (k, v) in z { line["held_out_classes_" + k] = v }
        log("held-out classes \(classes.joined(separator: ", ")): zero-shot accuracy " + String(format: "%.3f", z["accuracy"]!) + "; " + summary(z))
    }
    if testScores != nil || zeroShotScores != nil { try run.appendMetrics(line) }
    if !skips.isEmpty { log(skips.summary) }
    return ContrastiveResult(bestEpoch: report.bestEpoch, validation: report.validation, test: testScores, zeroShot: zeroShotScores,
                             exported: exported, trainClips: train.0.records.count, validationClips: validation.0.records.count)
}

private func summary(_ r: [String: Double]) -> String {
    String(format: "R@1 audio→text %.3f, text→audio %.3f; R@5 %.3f, %.3f over %.0f clips and %.0f captions",
           r["audio_to_text_R@1"] ?? .nan, r["text_to_audio_R@1"] ?? .nan, r["audio_to_text_R@5"] ?? .nan, r["text_to_audio_R@5"] ?? .nan,
           r["clips"] ?? 0, r["captions"] ?? 0)
}

extension ContrastiveConfig {
    /// Reads the keyword-to-caption files a command line names: templates (one per line, `{}` where the
    /// keywords go), keywords (CSV `label,keyword`), captions per label (CSV `label,caption`).
    public mutating func readCaptionFiles(templates: URL?, keywords: URL?, labelCaptions: URL?) throws {
        if let templates { captionTemplates = try KeywordCaptioner.templates(from: templates) }
        if let keywords {
            let table = try KeywordCaptioner.labelTable(from: keywords, valueColumn: "keyword")
            if let (label, words) = table.first(where: { $0.value.count > 1 }) {
                throw NNError("\(keywords.path): label '\(label)' has \(words.count) keywords (one per label)")
            }
            self.keywords = table.mapValues { $0[0] }
        }
        if let labelCaptions { self.labelCaptions = try KeywordCaptioner.labelTable(from: labelCaptions, valueColumn: "caption") }
    }
}
