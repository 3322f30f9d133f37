import Audio
import Engine
import Foundation
import Models
import NN

/// A function from whole audio clips to fixed-length vectors, named by a key that changes whenever its
/// output could: the probe caches embeddings under that key.
public protocol ClipEmbedder {
    /// The same key must mean the same embedding of the same file bytes (model weights, features,
    /// windowing, version of the recipe).
    var cacheKey: String { get }
    /// For reports: what the embeddings are.
    var summary: String { get }
    /// Embeddings of readable clips keyed by path; unreadable ones are named in the report.
    func embed(_ paths: [String], progress: ((String) -> Void)?) throws -> (embeddings: [String: [Float]], report: SkipReport)
}

/// Mean and standard deviation over time of each bin of a 128-bin log-mel: AST's Kaldi fbank at
/// 16 kHz (25 ms Hanning window = 400 samples, 10 ms hop = 160, 20 Hz to Nyquist, pre-emphasis
/// 0.97, the features every Earshot SSAST sees), unnormalised. A clip of T frames x_t ∈ ℝ¹²⁸ becomes
/// [μ, σ] ∈ ℝ²⁵⁶ with μ = (1/T) Σ x_t and σ = √((1/T) Σ (x_t − μ)²): the reference a learned encoder
/// must beat.
public struct LogMelStatsEmbedder: ClipEmbedder {
    public let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast))
    public init() {}

    public var cacheKey: String { "logmel-stats v1 " + pipelineKey(pipeline) }
    public var summary: String { "logmel-stats: mean and std over time of a 128-bin Kaldi fbank (25 ms window, 10 ms hop, 16 kHz), 256 dims" }

    public func embed(_ paths: [String], progress: ((String) -> Void)?) throws -> (embeddings: [String: [Float]], report: SkipReport) {
        let report = SkipReport(), pipeline = self.pipeline
        let results = try parallelMap(paths) { path in
            Result { () throws -> [Float] in
                let (x, truncated) = try pipeline.featuresNotingTruncation(of: URL(fileURLWithPath: path))
                if let truncated { report.recordTruncated(path, truncated) }
                guard x.shape[0] > 0 else { throw AudioError("\(path): shorter than one 25 ms frame") }
                return Self.stats(x.toArray(), frames: x.shape[0], bins: x.shape[1])
            }
        }
        var out: [String: [Float]] = [:]
        for (path, r) in zip(paths, results) {
            switch r {
            case .success(let v): out[path] = v
            case .failure(let e): report.recordSkip(path, "\(e)")
            }
        }
        return (out, report)
    }

    /// [μ, σ] per bin of row-major features [frames, bins].
    static func stats(_ x: [Float], frames: Int, bins: Int) -> [Float] {
        var mean = [Double](repeating: 0, count: bins), square = [Double](repeating: 0, count: bins)
        for t in 0..<frames { for b in 0..<bins { mean[b] += Double(x[t * bins + b]) } }
        for b in 0..<bins { mean[b] /= Double(frames) }
        for t in 0..<frames { for b in 0..<bins { let d = Double(x[t * bins + b]) - mean[b]; square[b] += d * d } }
        return mean.map(Float.init) + square.map { Float(($0 / Double(frames)).squareRoot()) }
    }
}

/// Any model Earshot loads as an embedder (`Classifier.loadEmbedder`: runs, checkpoints, releases),
/// or an untrained registry model: the pooled embedding averaged over half-overlapping windows of the
/// whole clip (`Classifier.embeddings`).
public struct ModelEmbedder: ClipEmbedder {
    public let classifier: Classifier
    public let pooling: EmbeddingPooling
    public let cacheKey: String
    public let summary: String

    public init(classifier: Classifier, cacheKey: String, summary: String) {
        self.init(classifier: classifier, pooling: .model, cacheKey: cacheKey, summary: summary)
    }

    init(classifier: Classifier, pooling: EmbeddingPooling, cacheKey: String, summary: String) {
        self.classifier = classifier; self.pooling = pooling
        // Model-pooled keys stay as they were, so existing caches still serve them.
        self.cacheKey = pooling == .model ? cacheKey : cacheKey + " pooling \(pooling.rawValue)"
        self.summary = pooling == .model ? summary : summary + ", pooled as token mean and std"
    }

    /// The same model pooled another way.
    public func pooled(_ pooling: EmbeddingPooling) -> ModelEmbedder {
        guard pooling != self.pooling else { return self }
        precondition(self.pooling == .model, "re-pool a model-pooled embedder")
        return ModelEmbedder(classifier: classifier, pooling: pooling, cacheKey: cacheKey, summary: summary)
    }

    /// A model at `path`, keyed by the content of its weights (FNV-1a of the checkpoint file, or of
    /// every file of a model folder) and the features and windows it runs on.
    public static func load(_ path: URL, released options: ReleasedCheckpointOptions = ReleasedCheckpointOptions(),
                            base: URL? = nil) throws -> ModelEmbedder {
        let classifier = try Classifier.loadEmbedder(path, released: options, base: base)
        var key = "model " + (try contentKey(path))
        if let base { key += " base " + (try contentKey(base)) }
        key += " " + runKey(classifier)
        return ModelEmbedder(classifier: classifier, cacheKey: key,
                             summary: "\(path.path): \(classifier.model.architecture.family), \(classifier.model.embeddingWidth) dims, "
                                + "windows of \(classifier.window) frames")
    }

    /// An untrained registry model (`random:ssast-tiny-frame`): its initialisation drawn from `seed`,
    /// taking windows of `frames` frames of its family's features normalised by AudioSet's statistics
    /// (fine-tuning's defaults).
    public static func random(_ name: String, frames: Int, seed: UInt64) throws -> ModelEmbedder {
        let entry = try ModelRegistry.entry(named: name)
        Random.seed(seed)
        let model = try entry.classifier(ModelShape(frames: frames))
        model.eval()
        let pipeline = try ModelRegistry.family(of: model).pipeline(for: model, frames: frames, mean: -4.2677393, std: 4.5689974)
        let classifier = Classifier(model: model, classes: [], pipeline: pipeline, multiLabel: false)
        return ModelEmbedder(classifier: classifier, cacheKey: "random \(entry.name) seed \(seed) " + runKey(classifier),
                             summary: "random:\(entry.name) (untrained, seed \(seed)): \(model.embeddingWidth) dims, windows of \(frames) frames")
    }

    static func runKey(_ c: Classifier) -> String {
        "pipeline \(pipelineKey(c.pipeline)) window \(c.window) onepass \(c.onePass)"
    }

    /// FNV-1a 64 of a checkpoint file's bytes, or of every regular file (names and bytes, sorted by
    /// name) of a folder that is not a run folder (a Hugging Face model).
    static func contentKey(_ path: URL) throws -> String {
        if let file = try? ModelFiles.modelFile(path) { return try DeltaCheckpoint.contentHash(file) }
        let names = try FileManager.default.contentsOfDirectory(atPath: path.path).sorted()
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for name in names {
            let url = path.appendingPathComponent(name)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue else { continue }
            h = Array(name.utf8).withUnsafeBytes { FeatureCache.fnv1a($0, seed: h) }
            h = try Data(contentsOf: url, options: .alwaysMapped).withUnsafeBytes { FeatureCache.fnv1a($0, seed: h) }
        }
        return String(format: "%016llx", h)
    }

    public func embed(_ paths: [String], progress: ((String) -> Void)?) throws -> (embeddings: [String: [Float]], report: SkipReport) {
        let (tensors, report) = try classifier.embeddings(of: paths, pooling: pooling, progress: progress)
        return (tensors.mapValues { $0.toArray() }, report)
    }
}

/// A feature pipeline as sorted JSON: a stable part of a cache key.
func pipelineKey(_ p: FeaturePipeline) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return (try? String(data: encoder.encode(p), encoding: .utf8)) ?? "\(p)"
}

/// The embedder `--model` names: `logmel-stats`, `random:<registry name>`, or a path.
public func probeEmbedder(_ model: String, frames: Int = 128, seed: UInt64 = 0, pooling: EmbeddingPooling = .model,
                          released options: ReleasedCheckpointOptions = ReleasedCheckpointOptions(), base: URL? = nil) throws -> any ClipEmbedder {
    if model == "logmel-stats" {
        guard pooling == .model else { throw AudioError("--pooling \(pooling.rawValue) is for encoders; logmel-stats is already a mean and std") }
        return LogMelStatsEmbedder()
    }
    if model.hasPrefix("random:") {
        return try ModelEmbedder.random(String(model.dropFirst("random:".count)), frames: frames, seed: seed).pooled(pooling)
    }
    return try ModelEmbedder.load(ShippedModels.resolve(model), released: options, base: base).pooled(pooling)
}
