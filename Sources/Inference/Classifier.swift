import Audio
import Engine
import Foundation
import Models
import NN

/// A classifier ready for new audio: an encoder with its head (any registered family), its classes
/// and its feature pipeline. Every call covers a clip from start to end: features longer than the
/// model's input are scored as windows of that length, `hop` frames apart (half a window) with the
/// last ending at the clip's last frame, and the windows' outputs averaged; a model that takes any
/// length (`onePass`) scores the whole clip at once instead.
public struct Classifier {
    /// The model with its classes, features and scoring, as a model family loads it.
    public let loaded: LoadedClassifier
    public var model: any AudioClassifierModel { loaded.model }
    /// One name per output; empty for an encoder-only model (embeddings only).
    public var classes: [String] { loaded.classes }
    public var pipeline: FeaturePipeline { loaded.pipeline }
    public var multiLabel: Bool { loaded.multiLabel }

    public init(_ loaded: LoadedClassifier) { self.loaded = loaded }

    public init(model: any AudioClassifierModel, classes: [String], pipeline: FeaturePipeline, multiLabel: Bool) {
        self.init(LoadedClassifier(model: model, classes: classes, pipeline: pipeline, multiLabel: multiLabel))
    }

    /// The model's input length in frames, and the hop between windows of a longer clip.
    public var window: Int { model.inputFrames }
    public var hop: Int { max(window / 2, 1) }
    /// Whether a clip runs in one pass whatever its length (a `VariableLengthClassifier` such as
    /// SSAMBA's): no windows, so a 10-minute recording is one sequence; shorter clips still pad to `window`.
    public var onePass: Bool { (model as? any VariableLengthClassifier)?.takesAnyLength ?? false }
    /// The frames a clip is padded to when shorter: one window, or a one-pass model's own minimum
    /// (PANNs runs a 1-second clip as it is, as the reference does).
    public var minimumFrames: Int { onePass ? min((model as? any VariableLengthClassifier)?.minimumFrames ?? window, window) : window }

    /// Loads an Earshot classifier (a fine-tuning run folder, for its best checkpoint, or a checkpoint
    /// file), or a released classifier any model family reads (a Hugging Face folder, an original
    /// `.pth`), with `options` filling in what a release lacks.
    /// A delta checkpoint (a parameter-efficient run's `delta.safetensors`) loads with the checkpoint
    /// it was trained from as `base`.
    public static func load(_ path: URL, released options: ReleasedCheckpointOptions = ReleasedCheckpointOptions(),
                            base: URL? = nil) throws -> Classifier {
        if let release = try ModelRegistry.releasedClassifier(path, options: options) { return Classifier(release) }
        let file = try ModelFiles.modelFile(path)
        var st = try SafeTensors.read(file)
        if DeltaCheckpoint.isDelta(st.metadata) {
            guard let base else {
                throw NNError("\(file.path): a delta checkpoint (only the tensors a parameter-efficient run trained); "
                              + "give the checkpoint it was trained from with --base (\(st.metadata["base_file"] ?? "?"))")
            }
            guard let (classes, pipeline) = try labelling(st.metadata, file: file) else {
                throw NNError("\(file.path): a delta without classes or pipeline metadata")
            }
            let model = try DeltaCheckpoint.model(file, metadata: st.metadata, tensors: st.takeTensors(), base: base)
            try checkOutputs(model, classes, file)
            model.eval()
            return Classifier(model: model, classes: classes, pipeline: pipeline, multiLabel: st.metadata["multi_label"] == "true")
        }
        guard let arch = ModelRegistry.architecture(st.metadata) else {
            throw NNError("\(file.path): not an Earshot checkpoint (no architecture in its metadata)")
        }
        guard let (classes, pipeline) = try labelling(st.metadata, file: file) else {
            if (try? ModelRegistry.encoderOnly(file, options: options)) != nil {
                throw NNError("\(file.path): a self-supervised pretraining checkpoint (\(arch.family)) has no classifier head; fine-tune it first "
                              + "(earshot finetune --init-from \(path.path) ...), or embed with it (earshot embed --model)")
            }
            throw NNError("\(file.path): not an Earshot classifier checkpoint (metadata classes or pipeline missing)")
        }
        let model: any AudioClassifierModel
        do { model = try ModelRegistry.classifier(arch) } catch { throw NNError("\(file.path): \(error)") }
        let peft = try PEFTConfig.recorded(st.metadata, file: file)
        do { try peft?.apply(to: model, freezing: false) } catch { throw NNError("\(file.path): \(error)") }
        var weights = st.takeTensors()
        do { try model.load(consuming: &weights) } catch { throw NNError("\(file.path): \(error)") }
        if peft?.method == .lora { PEFTConfig.mergeLoRA(model) }
        try checkOutputs(model, classes, file)
        model.eval()
        return Classifier(model: model, classes: classes, pipeline: pipeline, multiLabel: st.metadata["multi_label"] == "true")
    }

    /// The classes and feature pipeline a checkpoint's metadata records, nil where either key is missing;
    /// a value that is there but does not decode, or a pipeline that cannot work, throws naming the key.
    static func labelling(_ metadata: [String: String], file: URL) throws -> (classes: [String], pipeline: FeaturePipeline)? {
        guard let k = metadata["classes"], metadata["pipeline"] != nil else { return nil }
        guard let classes = try? JSONDecoder().decode([String].self, from: Data(k.utf8)) else {
            throw NNError("\(file.path): metadata 'classes' is not a JSON list of class names")
        }
        let pipeline: FeaturePipeline?
        do { pipeline = try FeaturePipeline.recorded(in: metadata, file: file.path) } catch let e as AudioError { throw NNError(e.message) }
        return pipeline.map { (classes, $0) }
    }

    /// A head whose width differs from the class list would score some classes under others' names.
    static func checkOutputs(_ model: any AudioClassifierModel, _ classes: [String], _ file: URL) throws {
        guard model.outputs == classes.count else {
            throw NNError("\(file.path): metadata 'classes' names \(classes.count) classes but the model has \(model.outputs) outputs")
        }
    }

    /// A model for embeddings: whatever `load` takes, or a self-supervised encoder (a pretraining run or
    /// checkpoint, a released pretraining checkpoint) pooled as its family's fine-tuning pools it. An
    /// encoder-only result has no classes.
    public static func loadEmbedder(_ path: URL, released options: ReleasedCheckpointOptions = ReleasedCheckpointOptions(),
                                    base: URL? = nil) throws -> Classifier {
        if base == nil, let encoder = try ModelRegistry.encoderOnly(path, options: options) { return Classifier(encoder) }
        return try load(path, released: options, base: base)
    }

    /// Class probabilities [B, classes] (softmax, or sigmoid for multi-label) of features [B, T, F],
    /// averaged over windows when T is longer than the model's input.
    public func probabilities(_ features: Tensor) throws -> Tensor {
        try windowMean(features, scores)
    }

    /// Pooled embedding [B, width] of features [B, T, F], averaged over windows as `probabilities`.
    public func embedding(_ features: Tensor) throws -> Tensor {
        try windowMean(features) { try model.embedding($0) }
    }

    /// Scores of one window batch.
    func scores(_ x: Tensor) throws -> Tensor {
        let logits = try model.logits(x)
        return multiLabel ? logits.sigmoid() : try logits.softmax(axis: -1)
    }

    /// Class scores of audio files, handed to `body` file by file in their order, each clip covered
    /// from start to end; unreadable files are skipped and named in the returned report. `progress`
    /// gets a line with an ETA (counting clips) every 10 seconds of a long job.
    public func classify(_ paths: [String], batchSize: Int = 8, progress: ((String) -> Void)? = nil,
                         _ body: (String, ClassScores) throws -> Void) throws -> SkipReport {
        let report = SkipReport()
        try pass(batchSize).run(paths, report: report, label: "classify", progress: progress, scores) { i, p in
            try body(paths[i], ClassScores(classes: classes, scores: p.toArray()))
        }
        return report
    }

    /// Embeddings of audio files keyed by path, each clip covered from start to end: [width] with the model's
    /// own pooling, [2·width] with `.meanStd`.
    public func embeddings(of paths: [String], batchSize: Int = 8, pooling: EmbeddingPooling = .model,
                           progress: ((String) -> Void)? = nil) throws -> (embeddings: [String: Tensor], report: SkipReport) {
        var out: [String: Tensor] = [:]
        let report = SkipReport()
        let pool: (Tensor) throws -> Tensor = pooling == .model ? { try self.model.embedding($0) } : { try self.tokenMeanStd($0) }
        try pass(batchSize).run(paths, report: report, label: "embed", progress: progress, pool) { i, e in
            out[paths[i]] = e
        }
        return (out, report)
    }

    /// [mean_t h_t, sqrt(mean_t (h_t - mean)²)] over a window's content tokens h_t (prefix tokens left out):
    /// [B, 2·width] of features [B, T, F] (run, as `model.embedding` is, inside the pass's no-grad scope).
    func tokenMeanStd(_ features: Tensor) throws -> Tensor {
        let tokens = try model.encoder.tokens(features)
        let content = try tokens.slice(axis: 1, start: model.encoder.prefixTokens, end: tokens.shape[1])
        let mean = try content.mean(axis: 1, keepDim: true)
        let centred = try content - mean
        let std = try (centred * centred).mean(axis: 1).sqrt()
        return try Tensor.concat([mean.squeeze(1), std], axis: 1)
    }

    func pass(_ batchSize: Int) -> WindowedPass {
        WindowedPass(pipeline: pipeline, window: window, batchSize: max(batchSize, 1), onePass: onePass, minimumFrames: minimumFrames)
    }

    /// The mean of `f` over the model-sized windows of `features` (just `f(features)` when they fit, or
    /// when the model takes any length), without grad.
    private func windowMean(_ features: Tensor, _ f: (Tensor) throws -> Tensor) throws -> Tensor {
        try GradMode.noGrad {
            let frames = features.rank == 3 ? features.shape[1] : 0
            if onePass && frames >= minimumFrames { return try f(features) }
            let starts = WindowedPass.starts(frames: frames, window: window, hop: hop)
            if starts.count == 1 { return try f(features) }
            var total = try f(features.slice(axis: 1, start: starts[0], end: starts[0] + window))
            for start in starts.dropFirst() { total = try total + f(features.slice(axis: 1, start: start, end: start + window)) }
            return total * (1 / Float(starts.count))
        }
    }

    /// Window starts for `frames` frames: [0] when the clip fits, else every window/2 and the last window.
    public static func windowStarts(frames: Int, window: Int) -> [Int] {
        WindowedPass.starts(frames: frames, window: window, hop: window / 2)
    }
}

/// A clip's scores with their class names: `ranked` from the highest.
public struct ClassScores: Sendable, CustomStringConvertible {
    public let classes: [String]
    /// One score per class, in the model's class order.
    public let scores: [Float]

    public init(classes: [String], scores: [Float]) { self.classes = classes; self.scores = scores }

    /// (label, score) pairs, highest first.
    public var ranked: [(label: String, score: Float)] {
        scores.indices.sorted { scores[$0] > scores[$1] }.map { (classes.indices.contains($0) ? classes[$0] : String($0), scores[$0]) }
    }

    public var top: (label: String, score: Float)? { ranked.first }

    public var description: String {
        ranked.prefix(5).map { String(format: "%@ %.3f", $0.label, $0.score) }.joined(separator: ", ")
    }
}

/// How a clip's embedding is pooled from an encoder's output.
public enum EmbeddingPooling: String, Sendable, CaseIterable {
    /// The model's own pooled embedding, its head's input (SSAST: mean of tokens; AST: cls and distillation
    /// tokens; PANNs: max + mean over time, then fc1).
    case model
    /// Mean and standard deviation over each window's content tokens, concatenated (twice the width): the
    /// statistics `logmel-stats` takes of the spectrogram, taken of the encoder's output.
    case meanStd = "mean-std"
}
