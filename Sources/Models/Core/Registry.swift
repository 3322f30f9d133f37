import Audio
import Engine
import Foundation
import NN

/// A named model config (`ast-tiny`, `ssast-tiny-frame`), as timm names its configs.
public struct ModelEntry: Sendable {
    public let name: String
    /// The family that builds it (`ModelFamily.name`).
    public let family: String
    public let summary: String
    /// A classifier for `shape` (clip length, outputs, depth override, stochastic depth).
    public let classifier: @Sendable (ModelShape) throws -> any AudioClassifierModel
    /// The self-supervised pretraining model of the same encoder, where the family has one.
    public let pretrainer: (@Sendable (ModelShape) throws -> any MaskedPatchModel)?
}

/// What a named config is built for.
public struct ModelShape: Sendable {
    public var frames: Int
    public var outputs: Int
    public var depth: Int?
    public var dropPath: Float

    public init(frames: Int, outputs: Int = 1, depth: Int? = nil, dropPath: Float = 0) {
        self.frames = frames; self.outputs = outputs; self.depth = depth; self.dropPath = dropPath
    }
}

/// A start for fine-tuning (`--init-from`): builds the classifier it becomes, with its encoder
/// weights copied in (positions adapted to the new clip length) and a fresh head. `build` is called
/// once: it gives up the start's weights as it copies them.
public final class ClassifierStart {
    public let file: URL
    /// What kind of start this is (for the log: `SSAST`, `AST`, ...).
    public let kind: String
    /// The named config the start's encoder matches, where it matches one (recorded in the run's config).
    public let modelName: String?
    /// The features it was trained on, where its checkpoint records them.
    public let pipeline: FeaturePipeline?
    /// Mel bins its input has.
    public let bins: Int
    /// The encoder's depth.
    public let depth: Int
    private var make: ((ModelShape) throws -> any AudioClassifierModel)?

    public init(file: URL, kind: String, modelName: String?, pipeline: FeaturePipeline?, bins: Int, depth: Int,
                build: @escaping (ModelShape) throws -> any AudioClassifierModel) {
        self.file = file; self.kind = kind; self.modelName = modelName; self.pipeline = pipeline
        self.bins = bins; self.depth = depth; make = build
    }

    /// The initialised classifier for `shape` (its `depth` must be nil or the start's).
    public func build(_ shape: ModelShape) throws -> any AudioClassifierModel {
        guard let make else { throw ModelError("\(file.path): this start was already used") }
        self.make = nil
        return try make(shape)
    }
}

/// One model family (a folder under Models): its named configs, how it rebuilds a model from a
/// checkpoint's `architecture` + `config`, which released files it recognises, and its features.
public protocol ModelFamily: Sendable {
    /// Architecture names this family writes into checkpoints.
    var architectures: [String] { get }
    var entries: [ModelEntry] { get }
    /// The classifier an Earshot checkpoint describes, built without initialisation (its weights come
    /// from the file); `dropPath`, where given, replaces the recorded stochastic depth (training it further).
    func classifier(_ architecture: ModelArchitecture, dropPath: Float?) throws -> any AudioClassifierModel
    /// The architecture of a checkpoint written before `architecture`/`config` metadata existed.
    func legacyArchitecture(_ metadata: [String: String]) -> ModelArchitecture?
    /// A released classifier at `path` in a format of this family (not an Earshot checkpoint), or nil.
    func releasedClassifier(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier?
    /// An encoder-only model for embeddings (a self-supervised checkpoint or release), or nil.
    func encoderOnly(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier?
    /// A fine-tuning start at `path`, or nil when the file is not this family's.
    func start(_ path: URL, shape: ReleaseShape) throws -> ClassifierStart?
    /// The feature pipeline a model of this family takes on clips of `frames` frames.
    func pipeline(for model: any AudioClassifierModel, frames: Int, mean: Float?, std: Float?) -> FeaturePipeline
}

/// Every family and named config Earshot knows; the only place that lists them.
public enum ModelRegistry {
    /// PANNs first: it claims only `.pth` files holding its keys, where AST's readers take any `.pth`.
    static let builtIn: [any ModelFamily] = [PANNsFamily(), SSAMBAFamily(), ASTFamily()]

    /// Families a module above this one adds when a program starts (`CLAPAudioFamily.register()`: CLAP's
    /// audio tower as a classifier, whose loaders live in the CLAP module), asked before the built-in ones.
    nonisolated(unsafe) private static var added: [any ModelFamily] = []
    private static let addedLock = NSLock()

    /// Adds `family` (once per architecture name; a second call is a no-op).
    public static func register(_ family: any ModelFamily) {
        addedLock.lock(); defer { addedLock.unlock() }
        if !added.contains(where: { $0.architectures == family.architectures }) { added.append(family) }
    }

    public static var families: [any ModelFamily] {
        addedLock.lock(); defer { addedLock.unlock() }
        return added + builtIn
    }

    public static var entries: [ModelEntry] { families.flatMap(\.entries) }

    /// Names that older command lines used for the same configs.
    static let aliases = ["ast-tiny-patch": "ssast-tiny-patch", "ast-small-patch": "ssast-small-patch", "ast-base-patch": "ssast-base-patch",
                          "ast-tiny-frame": "ssast-tiny-frame", "ast-small-frame": "ssast-small-frame", "ast-base-frame": "ssast-base-frame"]

    public static func entry(named name: String) throws -> ModelEntry {
        let key = aliases[name] ?? name
        guard let e = entries.first(where: { $0.name == key }) else {
            throw ModelError("unknown model '\(name)': one of \(entries.map(\.name).joined(separator: ", ")) (earshot models lists them)")
        }
        return e
    }

    static func family(of architecture: ModelArchitecture) throws -> any ModelFamily {
        guard let f = families.first(where: { $0.architectures.contains(architecture.family) }) else {
            throw ModelError("unknown architecture '\(architecture.family)' (known: \(families.flatMap(\.architectures).joined(separator: ", ")))")
        }
        return f
    }

    /// The family that builds `model`.
    public static func family(of model: any AudioClassifierModel) throws -> any ModelFamily { try family(of: model.architecture) }

    /// The architecture a checkpoint's metadata records (today's keys, else a family's older ones).
    public static func architecture(_ metadata: [String: String]) -> ModelArchitecture? {
        ModelArchitecture(metadata: metadata) ?? families.lazy.compactMap { $0.legacyArchitecture(metadata) }.first
    }

    public static func classifier(_ architecture: ModelArchitecture, dropPath: Float? = nil) throws -> any AudioClassifierModel {
        try family(of: architecture).classifier(architecture, dropPath: dropPath)
    }

    /// A released classifier (Hugging Face folder, original `.pth`) in any family's format, or nil.
    public static func releasedClassifier(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        for f in families { if let c = try f.releasedClassifier(path, options: options) { return c } }
        return nil
    }

    public static func encoderOnly(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        for f in families { if let c = try f.encoderOnly(path, options: options) { return c } }
        return nil
    }

    /// The fine-tuning start at `path`; throws naming the file when no family reads it.
    public static func start(_ path: URL, shape: ReleaseShape = ReleaseShape()) throws -> ClassifierStart {
        for f in families { if let s = try f.start(path, shape: shape) { return s } }
        throw ModelError("\(path.path): not a checkpoint any model family can start from")
    }

    /// Parameter count of a named config (built without initialising its weights).
    public static func parameterCount(_ entry: ModelEntry, frames: Int = 1024) throws -> Int {
        try Random.withoutInitialisation { try entry.classifier(ModelShape(frames: frames)) }.parameterCount()
    }
}
