import ArgumentParser
import Audio
import Engine
import Foundation
import Models
import NN
import Training

extension SSAST.Variant: ExpressibleByArgument {}

/// `--model ssast-tiny-patch` style names: family-size-variant.
func parseModelName(_ name: String) throws -> (size: String, variant: SSAST.Variant) {
    let parts = name.split(separator: "-").map(String.init)
    guard parts.count == 3, ["ssast", "ast"].contains(parts[0]), ["tiny", "small", "base"].contains(parts[1]),
          let v = SSAST.Variant(rawValue: parts[2]) else {
        throw ValidationError("unknown model '\(name)': use ssast-{tiny,small,base}-{patch,frame}")
    }
    return (parts[1], v)
}

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Self-supervised SSAST pretraining (masked patch modelling) on unlabelled audio.")
    @Option(help: "ssast-{tiny,small,base}-{patch,frame}") var model = "ssast-tiny-patch"
    @Option(help: "A manifest or dataset folder; repeat to pretrain on several (labels are never used).") var data: [String]
    @Option(help: "Run folder.") var out: String
    @Option var epochs = 10
    @Option(name: .customLong("batch-size")) var batchSize = 8
    @Option var lr: Float = 1e-4
    @Option(name: .customLong("target-length"), help: "Frames per clip (10 ms each).") var targetLength = 1024
    @Option(name: .customLong("crop-frames"), help: "Pretrain on random windows of this many frames of each clip (a new window every epoch).")
    var cropFrames: Int?
    @Option(name: .customLong("mask-patches")) var maskPatches = 400
    @Option(help: "Encoder depth override (quick runs).") var depth: Int?
    @Option(help: "Feature mean (earshot dataset stats).") var mean: Float = -4.2677393
    @Option(help: "Feature std.") var std: Float = 4.5689974
    @Option var seed: UInt64 = 0
    @Flag(help: "Continue from the run folder's last checkpoint, with the settings the run started with (only --epochs may change).")
    var resume = false
    @Flag(help: "Start again in a run folder that holds a run, removing its checkpoints and metrics.") var overwrite = false

    func run() throws {
        let (size, variant) = try parseModelName(model)
        var c = PretrainConfig()
        (c.size, c.variant, c.depth, c.inputTdim, c.maskCount, c.epochs, c.batchSize, c.lr, c.seed, c.mean, c.std) =
            (size, variant, depth, targetLength, maskPatches, epochs, batchSize, lr, seed, mean, std)
        c.cropFrames = cropFrames
        let sets = try data.map { try Dataset.load(URL(fileURLWithPath: $0)) }
        // Clips marked test/validation stay out of training and score the pretext task (see heldOutSplit).
        let all = Dataset(records: sets.flatMap(\.records), layout: sets.map(\.layout).joined(separator: " + "))
        let report = try pretrainSSAST(c, data: all, run: RunDirectory(URL(fileURLWithPath: out)), resume: resume, overwrite: overwrite)
        print(String(format: "pretrained %d epochs: held-out pretext accuracy %.3f, loss %.4f (%d clips skipped) -> %@",
                     report.epochs, report.heldOutAccuracy, report.heldOutLoss, report.skipped, out))
    }
}

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fine-tune an AST classifier: from an SSAST run or release, an AST release or classifier, or from scratch.")
    @Option(name: [.customLong("init-from"), .customLong("init")],
            help: "Start: an SSAST run, checkpoint or release .pth, or an AST release .pth, Hugging Face AST folder or classifier (omit to train from scratch).")
    var initFrom: String?
    @OptionGroup(title: "Original AST .pth starts") var release: ReleaseShapeArguments
    @Option(help: "ssast-{tiny,small,base}-{patch,frame} (when training from scratch).") var model = "ssast-tiny-patch"
    @Option var data: String
    @Option var out: String
    @Option var epochs = 10
    @Option(name: .customLong("batch-size")) var batchSize = 8
    @Option var lr: Float = 1e-4
    @Option(name: .customLong("target-length")) var targetLength = 1024
    @Option(name: .customLong("crop-frames"), help: "Train on random windows of this many frames of each clip (evaluation averages windows over the clip).")
    var cropFrames: Int?
    @Option(help: "Test split name or fold number.") var test = "test"
    @Option(name: .customLong("label-field"), help: "What to classify: label, or speaker (speaker identification).") var labelField = "label"
    @Flag(name: .customLong("cross-validate"), help: "Run every fold as the test fold in turn (fold-based datasets) and report the mean.")
    var crossValidate = false
    @Option var freqm = 24
    @Option var timem = 96
    @Option(help: "Mixup alpha (0 = off).") var mixup: Float = 0
    @Flag(help: "AST's noise augmentation: uniform noise up to 0.1 on the normalised features, then a roll of -10..9 frames.")
    var noise = false
    @Option(name: .customLong("lr-decay-start"), help: "Epoch from which the learning rate decays every epoch.") var lrDecayStart = 5
    @Option(name: .customLong("lr-decay"), help: "Per-epoch learning-rate factor from --lr-decay-start.") var lrDecay: Float = 0.85
    @Option(name: .customLong("drop-path"), help: "Stochastic depth rate of the last block (rising linearly from 0; timm's drop_path_rate).")
    var dropPath: Float = 0
    @Option(name: .customLong("weight-decay"), help: "Adam weight decay.") var weightDecay: Float = 5e-7
    @Flag(name: .customLong("freeze-encoder")) var freezeEncoder = false
    @Option var depth: Int?
    @Option var mean: Float = -4.2677393
    @Option var std: Float = 4.5689974
    @Option var seed: UInt64 = 0
    @Option(help: "Train on at most this many clips per class, drawn with --seed from the training split (few-shot / label efficiency).")
    var shots: Int?
    @Flag(help: "Continue from the run folder's last checkpoint, with the settings the run started with (only --epochs may change).")
    var resume = false
    @Flag(help: "Start again in a run folder that holds a run, removing its checkpoints and metrics.") var overwrite = false

    func run() throws {
        var c = FineTuneConfig()
        let (size, variant) = try parseModelName(model)
        // With --init-from, the start's shape wins over --model (see `classifierArchitecture`).
        (c.size, c.variant, c.depth) = (size, variant, depth)
        if initFrom != nil && release.shape != ReleaseShape() { c.releaseShape = release.shape }
        (c.initFrom, c.inputTdim, c.epochs, c.batchSize, c.lr, c.testSplit, c.freqm, c.timem, c.mixup, c.freezeEncoder, c.mean, c.std, c.seed) =
            (initFrom, targetLength, epochs, batchSize, lr, test, freqm, timem, mixup, freezeEncoder, mean, std, seed)
        (c.lrDecayStart, c.lrDecay, c.cropFrames, c.dropPath, c.weightDecay, c.shotsPerClass, c.noise) =
            (lrDecayStart, lrDecay, cropFrames, dropPath, weightDecay, shots, noise)
        let dataset = try Dataset.load(URL(fileURLWithPath: data)).labelled(by: labelField)
        if crossValidate {
            let cv = try Training.crossValidate(c, data: dataset, root: URL(fileURLWithPath: out), resume: resume, overwrite: overwrite)
            for (k, r) in cv.folds.sorted(by: { $0.key < $1.key }) { print(String(format: "fold %d: accuracy %.3f", k, r.accuracy)) }
            let last = cv.lastEpochMean.map { String(format: " (last epoch %.3f)", $0) } ?? ""
            print(String(format: "%d-fold accuracy %.3f ± %.3f at the best epoch%@ -> %@/kfold.json", cv.folds.count, cv.mean, cv.std, last, out))
            return
        }
        let r = try fineTuneAST(c, data: dataset, run: RunDirectory(URL(fileURLWithPath: out)), resume: resume, overwrite: overwrite)
        print(String(format: "best test accuracy %.3f, macro F1 %.3f over %d clips -> %@", r.accuracy, r.macroF1, r.clips, out))
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Metrics JSON and the confusion matrix of a fine-tuned model on a dataset.")
    @Option(help: "Fine-tuning run folder or checkpoint, Hugging Face AST folder, or original AST .pth.") var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option var data: String
    @Option(help: "Only this split or fold.") var split: String?
    @Option(name: .customLong("label-field"), help: "label, or speaker (as the model was fine-tuned).") var labelField = "label"

    func run() throws {
        let clf = try Classifier.load(URL(fileURLWithPath: model), released: released.options)
        var ds = try Dataset.load(URL(fileURLWithPath: data)).labelled(by: labelField)
        if let split { ds = ds.split(split) }
        let (r, report) = try evaluate(clf, on: ds, progress: progressLine)
        var json = jsonSafe(r.json)
        json["classes"] = clf.classes
        json["skipped"] = report.skipped.map { "\($0.path): \($0.reason)" }
        // Clips without a label, or with one the model was not trained on, are not scored.
        json["left_out"] = ds.records.count - r.clips - report.skipped.count
        print(String(data: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), encoding: .utf8)!)
        let width = max(6, (clf.classes.map(\.count).max() ?? 6) + 1)
        print("confusion matrix (rows: true, columns: predicted)")
        for (i, row) in r.confusion.enumerated() {
            print(clf.classes[i].padding(toLength: width, withPad: " ", startingAt: 0) + row.map { String(format: "%5d", $0) }.joined())
        }
    }
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Top classes of audio clips.")
    @Argument(help: "Audio files or folders (a folder as a dataset: its manifest, class folders or plain clips).") var files: [String]
    @Option(help: "Fine-tuning run folder or checkpoint, Hugging Face AST folder, or original AST .pth.") var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option var top = 5

    func run() throws {
        let clf = try Classifier.load(URL(fileURLWithPath: model), released: released.options)
        let paths = try audioFiles(files)
        let report = try clf.probabilities(of: paths, progress: progressLine) { file, p in
            let ranked = p.indices.sorted { p[$0] > p[$1] }.prefix(top)
            print(file + ": " + ranked.map { String(format: "%@ %.3f", clf.classes[$0], p[$0]) }.joined(separator: ", "))
        }
        for (file, reason) in report.skipped { print("\(file): skipped (\(reason))") }
        if report.skipped.count == paths.count { throw AudioError("no clip could be read (\(paths.count) skipped)") }
    }
}

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Clip embeddings (pooled encoder outputs) of files or a folder, into safetensors.")
    @Argument var inputs: [String]
    @Option(help: "Fine-tuning or SSAST pretraining run or checkpoint, SSAST release .pth, Hugging Face AST folder, or original AST .pth.")
    var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option var out: String

    func run() throws {
        let clf = try Classifier.loadEmbedder(URL(fileURLWithPath: model), released: released.options)
        let (tensors, report) = try clf.embeddings(of: try audioFiles(inputs), progress: progressLine)
        for (path, reason) in report.skipped { print("skipped \(path): \(reason)") }
        // An empty file would read as a successful run; nothing is written instead.
        if tensors.isEmpty { throw AudioError("no clip could be read (\(report.skipped.count) skipped); \(out) not written") }
        try SafeTensors.write(tensors, to: URL(fileURLWithPath: out))
        print("wrote \(tensors.count) embeddings of dimension \(clf.model.config.dim) to \(out) (\(report.skipped.count) skipped)")
    }
}

/// Progress of a long evaluate, classify or embed, on standard error so standard output stays the results.
func progressLine(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// The files behind command-line inputs: a file as itself, a folder as the clips of the dataset it holds.
func audioFiles(_ inputs: [String]) throws -> [String] {
    try inputs.flatMap { input -> [String] in
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: input, isDirectory: &isDir)
        return isDir.boolValue ? try Dataset.load(URL(fileURLWithPath: input)).records.map(\.path) : [input]
    }
}

/// The shape facts an original AST .pth does not record (for classifying with it or fine-tuning from it).
struct ReleaseShapeArguments: ParsableArguments {
    @Option(help: "Frequency patch stride of a .pth (default: from the file name, as audioset_10_10_0.4593.pth, else 10).")
    var fstride: Int?
    @Option(help: "Time patch stride of a .pth (default: from the file name, else 10).") var tstride: Int?
    @Option(help: "Attention heads of a .pth (default: width / 64, as every AST size).") var heads: Int?
    @Option(name: .customLong("mel-bins"), help: "Fbank bins of a .pth (default 128).") var melBins: Int?

    var shape: ReleaseShape { ReleaseShape(fstride: fstride, tstride: tstride, heads: heads, melBins: melBins) }
}

/// What a released AST checkpoint (a Hugging Face folder or an original .pth) does not record itself.
struct ReleasedCheckpointArguments: ParsableArguments {
    @OptionGroup var shape: ReleaseShapeArguments
    @Option(name: .customLong("norm-mean"), help: "Feature mean (default: the HF preprocessor's; for a .pth, Speech Commands' when so named, else AudioSet's -4.2677393).")
    var normMean: Float?
    @Option(name: .customLong("norm-std"), help: "Feature std (default: the HF preprocessor's, else AudioSet's 4.5689974).")
    var normStd: Float?
    @Option(help: "Class names: AST's class_labels_indices.csv (index, display_name) or one name per line.") var labels: String?
    @Flag(inversion: .prefixedNo, help: "Sigmoid scores (multi-label) rather than softmax (default: HF's problem_type, else sigmoid as AST's releases).")
    var multiLabel: Bool?

    var options: ReleasedCheckpointOptions {
        var o = ReleasedCheckpointOptions()
        o.shape = shape.shape
        (o.mean, o.std) = (normMean, normStd)
        o.labels = labels.map { URL(fileURLWithPath: $0) }
        o.multiLabel = multiLabel
        return o
    }
}
