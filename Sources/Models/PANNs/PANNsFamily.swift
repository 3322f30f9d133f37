import Audio
import Engine
import Foundation
import NN

/// The PANNs family: Cnn6, Cnn10 and Cnn14 taggers on torchlibrosa log-mel, their released `.pth`
/// checkpoints, and fine-tuning starts from them (PANNs' transfer template: a new `fc_transfer` head).
public struct PANNsFamily: ModelFamily {
    public static let architectureName = "panns"
    public init() {}

    public var architectures: [String] { [Self.architectureName] }

    static let named: [(name: String, variant: PANNsConfig.Variant, frontEnd: LogMelConfig, dlm: Bool, summary: String)] = [
        ("cnn6", .cnn6, .panns, false, "PANNs Cnn6: four 5x5 conv blocks (64-512) on 32 kHz log-mel, max+mean pooling"),
        ("cnn10", .cnn10, .panns, false, "PANNs Cnn10: four double 3x3 conv blocks (64-512) on 32 kHz log-mel"),
        ("cnn14", .cnn14, .panns, false, "PANNs Cnn14: six double 3x3 conv blocks (64-2048) on 32 kHz log-mel"),
        ("cnn14-16k", .cnn14, PANNsConfig.frontEnds[1], false, "PANNs Cnn14 on 16 kHz log-mel (512-point STFT, 50-8000 Hz)"),
        ("cnn14-dlm", .cnn14, .panns, true, "PANNs Cnn14_DecisionLevelMax: scores per 32 frames (0.32 s), for sound event detection"),
        ("cnn6-dlm", .cnn6, .panns, true, "Cnn6 with Cnn14_DecisionLevelMax's head: scores per 16 frames (0.16 s), a small sound event detector"),
        ("cnn10-dlm", .cnn10, .panns, true, "Cnn10 with Cnn14_DecisionLevelMax's head: scores per 16 frames (0.16 s)"),
    ]

    public var entries: [ModelEntry] {
        Self.named.map { n in
            ModelEntry(name: n.name, family: Self.architectureName, summary: n.summary, classifier: { shape in
                guard shape.depth == nil else { throw ModelError("\(n.name): a CNN has no --depth option") }
                var c = PANNsConfig(n.variant, classes: shape.outputs, frames: shape.frames, frontEnd: n.frontEnd)
                c.decisionLevelMax = n.dlm
                try c.validate()
                return PANNs(c)
            }, pretrainer: nil)
        }
    }

    public func classifier(_ architecture: ModelArchitecture, dropPath: Float?) throws -> any AudioClassifierModel {
        let c = try PANNsConfig.decode(architecture.config, "checkpoint config")
        try c.validate()
        return Random.withoutInitialisation { PANNs(c) }
    }

    public func legacyArchitecture(_ metadata: [String: String]) -> ModelArchitecture? { nil }

    /// A released `.pth` parsed once; nil when the file is not a PANNs checkpoint.
    static func release(_ path: URL) throws -> (state: [String: Tensor], file: URL)? {
        guard let file = ownFile(path) else { return nil }
        guard ModelFiles.isZipArchive(file) else { return nil }
        let state = PANNsCheckpoint.unwrapped(try TorchCheckpoint.read(file))
        return PANNsCheckpoint.isPANNs(state) ? (state, file) : nil
    }

    /// The file `path` stands for, where it could be this family's: nil for a folder without an Earshot
    /// checkpoint (a Hugging Face model is another family's) and for a missing file (named by the caller).
    static func ownFile(_ path: URL) -> URL? {
        let file = ModelFiles.checkpointFile(path)
        return FileManager.default.fileExists(atPath: file.path) ? (try? ModelFiles.modelFile(path)) : nil
    }

    /// Cnn14_DecisionLevelMax has Cnn14's keys; its released file name says which it is.
    static func isDecisionLevelMax(_ file: URL) -> Bool { file.lastPathComponent.lowercased().contains("decisionlevel") }

    public func releasedClassifier(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        guard let release = try Self.release(path) else { return nil }
        var state = release.state
        let file = release.file
        let config = try PANNsCheckpoint.config(of: state, file: file, decisionLevelMax: Self.isDecisionLevelMax(file))
        let model = Random.withoutInitialisation { PANNs(config) }
        try PANNsCheckpoint.load(consuming: &state, into: model, file: file)
        model.eval()
        let classes = try options.labels.map { try ASTFamily.readClassNames($0, count: config.classes) } ?? (0..<config.classes).map(String.init)
        let pipeline = FeaturePipeline(kind: .logMel(config.frontEnd), targetFrames: config.frames, mean: options.mean, std: options.std)
        return LoadedClassifier(model: model, classes: classes, pipeline: pipeline, multiLabel: options.multiLabel ?? true)
    }

    public func encoderOnly(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        try releasedClassifier(path, options: options)
    }

    public func start(_ path: URL, shape: ReleaseShape) throws -> ClassifierStart? {
        var state: [String: Tensor] = [:]
        let file: URL, base: PANNsConfig
        if let release = try Self.release(path) {
            file = release.file
            base = try PANNsCheckpoint.config(of: release.state, file: file, decisionLevelMax: Self.isDecisionLevelMax(file))
            for (key, t) in release.state where !PANNsCheckpoint.frontEndPrefixes.contains(where: key.hasPrefix) {
                state[PANNsCheckpoint.renamed(key)] = t
            }
        } else {
            guard let own = Self.ownFile(path), !ModelFiles.isZipArchive(own) else { return nil }
            file = own
            let st = try SafeTensors.read(file)
            guard let arch = ModelRegistry.architecture(st.metadata), arch.family == Self.architectureName else { return nil }
            base = try PANNsConfig.decode(arch.config, "\(file.path) config")
            state = st.tensors
        }
        let name = Self.named.first { $0.variant == base.variant && $0.frontEnd == base.frontEnd && $0.dlm == base.decisionLevelMax
            && base.channels == base.variant.channels }?.name
        return ClassifierStart(file: file, kind: "PANNs \(base.variant.rawValue)", modelName: name,
                               pipeline: FeaturePipeline(kind: .logMel(base.frontEnd), targetFrames: base.frames),
                               bins: base.frontEnd.nMels, depth: base.channels.count) { shape in
            // PANNs' transfer template: the trunk and fc1 from the start, a new fc_transfer head.
            var c = base
            (c.classes, c.frames, c.transferHead) = (shape.outputs, shape.frames, true)
            try c.validate()
            let model = PANNs(c)
            var kept = state.filter { !$0.key.hasPrefix("fc_audioset.") && !$0.key.hasPrefix("fc_transfer.") }
            state = [:]
            for (k, t) in model.stateDict() where k.hasPrefix("fc_transfer.") { kept[k] = t }
            do { try model.load(consuming: &kept) } catch { throw ModelError("\(file.path): \(error)") }
            return model
        }
    }

    public func pipeline(for model: any AudioClassifierModel, frames: Int, mean: Float?, std: Float?) -> FeaturePipeline {
        let frontEnd = (model as? PANNs)?.config.frontEnd ?? .panns
        return FeaturePipeline(kind: .logMel(frontEnd), targetFrames: frames, mean: mean, std: std)
    }
}
