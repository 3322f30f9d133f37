import ArgumentParser
import Audio
import Engine
import Foundation
import Inference
import Models
import NN

/// Help shared by the commands that run a model over clips.
let wholeClipHelp = """
Every clip is used from start to end: clips longer than the model's input are cut into windows of that \
length, half a window apart, the last ending at the clip's last frame, and the windows' outputs averaged; \
shorter clips are padded to one window.
"""

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Metrics JSON and the confusion matrix of a classifier on a dataset.",
                                                    discussion: wholeClipHelp)
    @Option(help: "Classifier: a fine-tuning run folder or checkpoint, a Hugging Face folder, or an original .pth.") var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option(help: "A manifest or dataset folder.") var data: String
    @Option(help: "Only this split or fold.") var split: String?
    @Option(name: .customLong("label-field"), help: "label, or speaker (as the model was fine-tuned).") var labelField = "label"
    @Flag(help: "One JSON object per clip (file, labels, predicted label and scores), then a summary line with the metrics.")
    var json = false
    @Option(help: "classification; retrieval: a CLAP (--model) on a caption manifest (file, caption; a row per caption), R@1/5/10 and mAP@10 both ways; or zeroshot: a CLAP classifies the labelled --data into its class names, no training.")
    var task = "classification"
    @Option(help: "--task retrieval|zeroshot: the CLAP's tokenizer folder (default: the model folder, or the .pt's).") var tokenizer: String?
    @Option(name: .customLong("text-heads"), help: "--task zeroshot: attention heads of a .pt's RoBERTa (default width / 64).") var textHeads: Int?
    @Option(help: "--task zeroshot: a caption template with {} or {label} (default LAION's \"This is a sound of {label}.\"); repeat for an ensemble.")
    var prompt: [String] = []
    @OptionGroup var precision: PrecisionArguments

    func run() throws {
        switch task {
        case "classification": break
        case "retrieval":
            if precision.precision != .fp32 { throw ValidationError("--precision applies to --task classification (retrieval runs fp32)") }
            return try evaluateRetrieval(model: model, tokenizer: tokenizer, data: data, split: split, json: json)
        case "zeroshot":
            if precision.precision != .fp32 { throw ValidationError("--precision applies to --task classification (zero-shot runs fp32)") }
            return try evaluateZeroShot(model: model, tokenizer: tokenizer, textHeads: textHeads, prompts: prompt, data: data, split: split,
                                        labelField: labelField, json: json)
        default: throw ValidationError("--task \(task): expected classification, retrieval or zeroshot")
        }
        if !prompt.isEmpty || textHeads != nil { throw ValidationError("--prompt and --text-heads are for --task zeroshot") }
        let clf = try Classifier.load(ShippedModels.resolve(model), released: released.options, base: released.baseURL)
        precision.apply(to: clf.model)
        var ds = try Dataset.load(URL(fileURLWithPath: data)).labelled(by: labelField)
        if let split { ds = ds.split(split) }
        let (r, report) = try evaluate(clf, on: ds, progress: progressLine) { record, scores in
            guard json else { return }
            try printJSONLine(["file": record.path, "labels": record.labels, "predicted": scores.top?.label ?? "",
                               "scores": Dictionary(uniqueKeysWithValues: zip(scores.classes, scores.scores.map(Double.init)))])
        }
        var summary = jsonSafe(r.json)
        summary["classes"] = clf.classes
        summary["skipped"] = report.skipped.map { "\($0.path): \($0.reason)" }
        // Clips without a label, or with one the model was not trained on, are not scored.
        summary["left_out"] = ds.records.count - r.clips - report.skipped.count
        if json {
            try printJSONLine(["summary": summary])
            return
        }
        try printJSONLine(summary)
        printConfusion(r.confusion, classes: clf.classes)
    }
}

/// The confusion matrix as a table, a row per true class, a column per predicted one.
func printConfusion(_ confusion: [[Int]], classes: [String]) {
    let width = max(6, (classes.map(\.count).max() ?? 6) + 1)
    print("confusion matrix (rows: true, columns: predicted)")
    for (i, row) in confusion.enumerated() {
        print(classes[i].padding(toLength: width, withPad: " ", startingAt: 0) + row.map { String(format: "%5d", $0) }.joined())
    }
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Top classes of audio clips.", discussion: wholeClipHelp)
    @Argument(help: "Audio files, folders (as datasets: their manifest, class folders or plain clips) or manifests.") var files: [String]
    @Option(help: "Classifier: a fine-tuning run folder or checkpoint, a Hugging Face folder, or an original .pth.") var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option(help: "Classes shown per clip.") var top = 5
    @Flag(help: "One JSON object per clip (file, labels, scores), then a summary line.") var json = false
    @OptionGroup var precision: PrecisionArguments

    func run() throws {
        guard top > 0 else { throw ValidationError("--top \(top) must be positive") }
        let clf = try Classifier.load(ShippedModels.resolve(model), released: released.options, base: released.baseURL)
        precision.apply(to: clf.model)
        let paths = try audioFiles(files)
        var done = 0
        let report = try clf.classify(paths, progress: progressLine) { file, scores in
            let ranked = scores.ranked.prefix(top)
            done += 1
            if json {
                try printJSONLine(["file": file, "labels": ranked.map(\.label), "scores": ranked.map { Double($0.score) }])
            } else {
                print(file + ": " + ranked.map { String(format: "%@ %.3f", $0.label, $0.score) }.joined(separator: ", "))
            }
        }
        if json {
            try printJSONLine(["summary": ["clips": done, "skipped": report.skipped.map { ["file": $0.path, "reason": $0.reason] }]])
        } else {
            for (file, reason) in report.skipped { print("\(file): skipped (\(reason))") }
        }
        if report.skipped.count == paths.count { throw AudioError(noClipReadMessage(report.skipped, total: paths.count)) }
    }
}

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Clip embeddings (pooled encoder outputs) of audio, into safetensors (one key per file).",
                                                    discussion: wholeClipHelp + """

        Besides models, the probe's two reference embeddings: `logmel-stats` (mean and std over time of AST's 128-bin \
        fbank, 256 dims) and `random:<registry name>` (an untrained encoder, seeded, reading windows of --frames).
        """)
    @Argument(help: "Audio files, folders or manifests.") var inputs: [String]
    @Option(help: "A classifier (as for classify), a self-supervised pretraining run, checkpoint or release .pth, logmel-stats, or random:<registry name>.")
    var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option var out: String
    @Flag(help: "One JSON object per clip (file and its embedding's key in --out), then a summary line.") var json = false
    @Option(help: "model (the model's own pooled embedding) or mean-std (mean and std over each window's tokens, twice the width).")
    var pooling: EmbeddingPooling = .model
    @Option(help: "random:<name> only: its window in frames (as probe's --frames; default 128).") var frames: Int?
    @Option(help: "random:<name> only: the seed of its initialisation (default 0).") var seed: UInt64?
    @OptionGroup var precision: PrecisionArguments

    func run() throws {
        let paths = try audioFiles(inputs)
        let (tensors, report) = try embeddings(of: paths)
        // An empty file would read as a successful run; nothing is written instead.
        if tensors.isEmpty { throw AudioError(noClipReadMessage(report.skipped, total: paths.count) + "; \(out) not written") }
        try SafeTensors.write(tensors, to: URL(fileURLWithPath: out))
        let width = tensors.values.first?.shape.last ?? 0
        if json {
            for path in paths where tensors[path] != nil { try printJSONLine(["file": path, "embedding": path, "dim": width]) }
            try printJSONLine(["summary": ["clips": tensors.count, "dim": width, "out": out,
                                           "skipped": report.skipped.map { ["file": $0.path, "reason": $0.reason] }]])
            return
        }
        for (path, reason) in report.skipped { print("skipped \(path): \(reason)") }
        print("wrote \(tensors.count) embeddings of dimension \(width) to \(out) (\(report.skipped.count) skipped)")
    }

    /// The reference embeddings through the probe's embedders (the same numbers `probe` fits), models through
    /// the classifier's windowed pass at the chosen precision.
    func embeddings(of paths: [String]) throws -> (embeddings: [String: Tensor], report: SkipReport) {
        if !model.hasPrefix("random:"), frames != nil || seed != nil {
            throw ValidationError("--frames and --seed are for random:<name> (an untrained encoder's window and initialisation), not \(model)")
        }
        if model == "logmel-stats" || model.hasPrefix("random:") {
            if precision.precision != .fp32 { throw ValidationError("--precision is for models; \(model) runs in fp32") }
            let embedder = try probeEmbedder(model, frames: frames ?? 128, seed: seed ?? 0, pooling: pooling)
            let (rows, report) = try embedder.embed(paths, progress: progressLine)
            return (rows.mapValues { Tensor($0) }, report)
        }
        let clf = try Classifier.loadEmbedder(ShippedModels.resolve(model), released: released.options, base: released.baseURL)
        precision.apply(to: clf.model)
        return try clf.embeddings(of: paths, pooling: pooling, progress: progressLine)
    }
}

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "The named model configs, with parameter counts, and the pretrained encoders shipped here.")
    @Flag(help: "One JSON object per model.") var json = false

    func run() throws {
        for entry in ModelRegistry.entries {
            let count = try ModelRegistry.parameterCount(entry)
            let pretrain = entry.pretrainer != nil
            if json {
                try printJSONLine(["name": entry.name, "family": entry.family, "parameters": count, "pretraining": pretrain, "summary": entry.summary])
            } else {
                print(entry.name.padding(toLength: 20, withPad: " ", startingAt: 0)
                      + String(format: "%7.1fM  ", Double(count) / 1e6) + entry.summary + (pretrain ? " [pretrain]" : ""))
            }
        }
        // Pretrained encoders shipped in the repository, by name (their file need not be present to list them).
        for shipped in ShippedModels.all {
            let file = try? ShippedModels.file(shipped)
            if json {
                try printJSONLine(["name": shipped.name, "shipped": true, "file": file?.path ?? NSNull(), "summary": shipped.summary])
            } else {
                print(shipped.name.padding(toLength: 20, withPad: " ", startingAt: 0) + "shipped   " + shipped.summary
                      + (file == nil ? " [file not found: set EARSHOT_PRETRAINED]" : ""))
            }
        }
    }
}

/// Progress of a long evaluate, classify or embed, on standard error so standard output stays the results.
func progressLine(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

func printJSONLine(_ object: [String: Any]) throws {
    print(String(data: try JSONSerialization.data(withJSONObject: jsonSafe(object), options: [.sortedKeys, .withoutEscapingSlashes]), encoding: .utf8)!)
}

/// The files behind command-line inputs: a file as itself, a manifest (.csv, .jsonl, .json), a WebDataset
/// shard (.tar) or a folder as the clips of the dataset it holds (a shard's as `<shard>.tar/<member>`),
/// `-` as the standard input (read once, to its end).
func audioFiles(_ inputs: [String]) throws -> [String] {
    guard inputs.filter({ $0 == "-" }).count <= 1 else { throw ValidationError("- (the standard input) can be read once") }
    return try inputs.flatMap { input -> [String] in
        if input == "-" { return [AudioStream.standardInput.path] }
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: input, isDirectory: &isDir)
        let manifest = ["csv", "jsonl", "json", "tar"].contains((input as NSString).pathExtension.lowercased())
        return isDir.boolValue || manifest ? try Dataset.load(URL(fileURLWithPath: input)).records.map(\.path) : [input]
    }
}

/// The shape facts an original .pth does not record (for classifying with it or fine-tuning from it).
struct ReleaseShapeArguments: ParsableArguments {
    @Option(help: "Frequency patch stride of a .pth (default: from the file name, as audioset_10_10_0.4593.pth, else 10).")
    var fstride: Int?
    @Option(help: "Time patch stride of a .pth (default: from the file name, else 10).") var tstride: Int?
    @Option(help: "Attention heads of a .pth (default: width / 64).") var heads: Int?
    @Option(name: .customLong("mel-bins"), help: "Mel bins of a .pth (default 128).") var melBins: Int?

    var shape: ReleaseShape { ReleaseShape(fstride: fstride, tstride: tstride, heads: heads, melBins: melBins) }
}

/// What a released checkpoint (a Hugging Face folder or an original .pth) does not record itself.
struct ReleasedCheckpointArguments: ParsableArguments {
    @OptionGroup var shape: ReleaseShapeArguments
    @Option(name: .customLong("norm-mean"), help: "Feature mean (default: the HF preprocessor's; for a .pth, Speech Commands' when so named, else AudioSet's -4.2677393).")
    var normMean: Float?
    @Option(name: .customLong("norm-std"), help: "Feature std (default: the HF preprocessor's, else AudioSet's 4.5689974).")
    var normStd: Float?
    @Option(help: "Class names: AudioSet's class_labels_indices.csv (index, display_name) or one name per line.") var labels: String?
    @Flag(inversion: .prefixedNo, help: "Sigmoid scores (multi-label) rather than softmax (default: HF's problem_type, else sigmoid as AST's releases).")
    var multiLabel: Bool?
    @Option(help: "With a delta checkpoint (a parameter-efficient run's delta.safetensors): the checkpoint it was trained from.")
    var base: String?

    var baseURL: URL? { get throws { try base.map { try ShippedModels.resolve($0) } } }

    var options: ReleasedCheckpointOptions {
        var o = ReleasedCheckpointOptions()
        o.shape = shape.shape
        (o.mean, o.std) = (normMean, normStd)
        o.labels = labels.map { URL(fileURLWithPath: $0) }
        o.multiLabel = multiLabel
        return o
    }
}
