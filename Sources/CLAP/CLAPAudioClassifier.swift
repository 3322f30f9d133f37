import Audio
import Engine
import Foundation
import Models
import NN
import Text

/// What a `CLAPAudioClassifier` is: its HTSAT, the width of CLAP's joint space and its classes.
public struct CLAPAudioClassifierConfig: CheckpointConfig, Sendable, Equatable {
    public static let configName = "CLAP audio classifier"
    public var audio: HTSATConfig
    public var projectionDim: Int
    public var classes: Int

    public init(audio: HTSATConfig, projectionDim: Int, classes: Int) {
        self.audio = audio; self.projectionDim = projectionDim; self.classes = classes
    }

    public func validate() throws {
        try audio.validate()
        guard !audio.fusion else {
            throw ModelError("a fused CLAP takes four views of each clip (the whole and three crops): fine-tuning and embeddings take one, so start from an unfused CLAP")
        }
        guard projectionDim >= 1, classes >= 1 else { throw ModelError("CLAP audio classifier: projection \(projectionDim), \(classes) classes") }
        if let what = ConfigLimits.oversized([("the projection", [audio.width, projectionDim]), ("the head", [projectionDim, classes])]) {
            throw ModelError("CLAP audio classifier config: \(what)")
        }
    }
}

/// CLAP's audio tower as a classifier, as LAION-CLAP's linear probe builds it: HTSAT's pooled tokens,
/// CLAP's audio projection into the joint space (Linear → ReLU → Linear), and a linear head on that:
/// logits = W · P_a(mean of HTSAT's final tokens) + b. The embedding is the projected vector (not
/// normalised: the head sees it as the probe does). Keys: `audio_encoder.*` (HTSAT's, as Hugging Face's
/// `ClapAudioModel`), `audio_projection.linear{1,2}.*`, `head.*`.
public final class CLAPAudioClassifier: Module, AudioClassifierModel, SelfAugmentingModel {
    @Child public private(set) var audioEncoder: HTSAT
    @Child public private(set) var audioProjection: CLAPProjection
    @Child public private(set) var head: Linear
    public let config: CLAPAudioClassifierConfig

    /// A new model; `encoder` and `projection` where they come from a CLAP (the head is always new).
    public init(_ config: CLAPAudioClassifierConfig, encoder: HTSAT? = nil, projection: CLAPProjection? = nil) {
        self.config = config
        audioEncoder = encoder ?? HTSAT(config.audio)
        audioProjection = projection ?? CLAPProjection(config.audio.width, config.projectionDim)
        head = Linear(config.projectionDim, config.classes)
    }

    public var architecture: ModelArchitecture { ModelArchitecture(family: CLAPAudioFamily.architectureName, config: config.json) }
    public var inputFrames: Int { config.audio.frames }
    public var inputBins: Int { config.audio.melBins }
    public var embeddingWidth: Int { config.projectionDim }
    public var outputs: Int { config.classes }
    public var headPrefixes: [String] { ["head."] }
    public var blockPattern: String { "audio_encoder.layers.*.blocks.*" }
    public var encoder: any AudioEncoder { audioEncoder }
    public var finalNormPrefix: String? { "audio_encoder.norm." }
    /// HTSAT's own SpecAugment after its batch norm (LAION's recipe), so fine-tuning adds none by default.
    public var augmentsInTraining: Bool { config.audio.specAugment }
    /// Never by default: CLAP's log-mel is not normalised (HTSAT's batch norm does that inside).
    public var takesDatasetSpecAugment: Bool { false }

    public func embedding(_ features: Tensor) throws -> Tensor { try audioProjection(audioEncoder.embedding(features)) }
    public func logits(_ features: Tensor) throws -> Tensor { try head(embedding(features)) }
    public func logitsAndEmbedding(_ features: Tensor) throws -> (logits: Tensor, embedding: Tensor) {
        let e = try embedding(features)
        return (try head(e), e)
    }
}

/// CLAP's audio tower as a model family: a released CLAP (a Hugging Face `ClapModel` folder, a LAION-CLAP
/// `.pt`) is a fine-tuning start (`finetune --init-from`) and an encoder for `embed` and `probe`; a
/// fine-tuned one is an Earshot classifier like any other. Its loaders are the CLAP module's, so a
/// program registers the family when it starts (`register()`; the command line does).
public struct CLAPAudioFamily: ModelFamily {
    public static let architectureName = "clap-audio"
    public init() {}

    /// Adds the family to `ModelRegistry` (idempotent).
    public static func register() { ModelRegistry.register(CLAPAudioFamily()) }

    public var architectures: [String] { [Self.architectureName] }
    public var entries: [ModelEntry] { [] }

    public func classifier(_ architecture: ModelArchitecture, dropPath: Float?) throws -> any AudioClassifierModel {
        let c = try CLAPAudioClassifierConfig.decode(architecture.config, "checkpoint config")
        try c.validate()
        return Random.withoutInitialisation { CLAPAudioClassifier(c) }
    }

    public func legacyArchitecture(_ metadata: [String: String]) -> ModelArchitecture? { nil }
    public func releasedClassifier(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? { nil }

    /// A released CLAP's audio side: its HTSAT's weights and audio projection, the text tower never built
    /// (half the released model's weights: RoBERTa-base's 125 M parameters). The HTSAT is built once,
    /// for the clip length its classifier reads (`classifier(from:classes:frames:)`).
    struct AudioSide {
        let config: CLAPConfig
        /// HTSAT's tensors under its own keys (`HTSATCheckpoint.encoderState`).
        let encoderState: [String: Tensor]
        let projection: CLAPProjection
        /// The weights file (what a delta's base hash reads).
        let file: URL
    }

    /// The CLAP at `path` where it is one: a folder whose config.json says `model_type` "clap" (or its
    /// weights file, as a delta's `--base` names it), or a `.pt`/`.ckpt` (LAION's releases) holding
    /// `audio_branch.` keys. Nil for anything else.
    static func released(_ path: URL) throws -> AudioSide? {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path.path, isDirectory: &isDir) else { return nil }
        func isCLAPFolder(_ folder: URL) -> Bool {
            guard let data = try? Data(contentsOf: folder.appendingPathComponent("config.json")),
                  let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
            return json["model_type"] as? String == "clap"
        }
        let weightsFile = !isDir.boolValue && ["model.safetensors", "pytorch_model.bin"].contains(path.lastPathComponent)
        if isDir.boolValue || (weightsFile && isCLAPFolder(path.deletingLastPathComponent())) {
            let folder = isDir.boolValue ? path : path.deletingLastPathComponent()
            guard isCLAPFolder(folder) else { return nil }
            do {
                let config = try CLAPConfig.fromHuggingFace(folder.appendingPathComponent("config.json"))
                guard let file = ASTCheckpoint.huggingFaceWeights(in: folder) else { throw ModelError("no model.safetensors or pytorch_model.bin") }
                // Safetensors are memory-mapped: the text tower's pages are never read.
                let state = file.pathExtension == "safetensors" ? try SafeTensors.read(file).tensors : try TorchCheckpoint.read(file)
                do { return try audioSide(state, config: config, file: file) } catch { throw ModelError("\(file.path): \(error)") }
            } catch { throw ModelError(describing(error, under: folder)) }
        }
        guard ["pt", "ckpt"].contains(path.pathExtension.lowercased()), ModelFiles.isZipArchive(path) else { return nil }
        let raw = try TorchCheckpoint.read(path)
        guard raw.keys.contains(where: { $0.hasSuffix("audio_branch.patch_embed.proj.weight") }) else { return nil }
        // The text tower's head count is not in the weights and plays no part here: any divisor of its width reads.
        do {
            let (state, config) = try LAIONCheckpoint.convert(raw, textHeads: 1)
            return try audioSide(state, config: config, file: path)
        } catch { throw ModelError("\(path.path): \(error)") }
    }

    /// The HTSAT and audio projection of a state under Hugging Face `ClapModel` keys.
    static func audioSide(_ state: [String: Tensor], config: CLAPConfig, file: URL) throws -> AudioSide {
        let encoderState = try HTSATCheckpoint.encoderState(state, window: config.audio.window)
        let projection = Random.withoutInitialisation { CLAPProjection(config.audio.width, config.projectionDim) }
        var own: [String: Tensor] = [:]
        for (k, v) in state where k.hasPrefix("audio_projection.") { own[String(k.dropFirst("audio_projection.".count))] = v }
        try projection.load(consuming: &own, strict: true)
        return AudioSide(config: config, encoderState: encoderState, projection: projection, file: file)
    }

    /// The front end a CLAP's audio tower reads: LAION's 48 kHz log-mel with the tower's mel bins,
    /// `frames` a clip, a shorter clip repeat-padded as CLAP's extractor pads it, no normalisation
    /// (HTSAT's own batch norm over the mel bins does it).
    static func pipeline(_ c: HTSATConfig, frames: Int) -> FeaturePipeline {
        var mel = LogMelConfig.clap
        mel.nMels = c.melBins
        return FeaturePipeline(kind: .logMel(mel), targetFrames: frames, repeatPad: true)
    }

    /// A released CLAP's tower and projection under a new head of `classes` outputs, reading `frames`
    /// frames a clip (HTSAT stretches up to its image width).
    static func classifier(from clap: AudioSide, classes: Int, frames: Int? = nil) throws -> CLAPAudioClassifier {
        var audio = clap.config.audio
        // HTSAT folds at most its image's width of frames (1024 for the released: 1001 a clip); a longer
        // --target-length is cut to that.
        if let frames { audio.frames = min(frames, audio.specWidth) }
        let c = CLAPAudioClassifierConfig(audio: audio, projectionDim: clap.config.projectionDim, classes: classes)
        try c.validate()
        let model = CLAPAudioClassifier(c, encoder: Random.withoutInitialisation { HTSAT(audio) }, projection: clap.projection)
        var state = clap.encoderState
        try model.audioEncoder.load(consuming: &state, strict: true)
        return model
    }

    public func encoderOnly(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        guard let clap = try Self.released(path) else { return nil }
        let model = try Self.classifier(from: clap, classes: 1)   // the head is unused: embeddings only
        model.eval()
        return LoadedClassifier(model: model, classes: [], pipeline: Self.pipeline(clap.config.audio, frames: clap.config.audio.frames), multiLabel: false)
    }

    public func start(_ path: URL, shape: ReleaseShape) throws -> ClassifierStart? {
        if let clap = try Self.released(path) {
            let audio = clap.config.audio
            return ClassifierStart(file: clap.file, kind: "CLAP audio tower (HTSAT)", modelName: nil, pipeline: Self.pipeline(audio, frames: audio.frames),
                                   bins: audio.melBins, depth: audio.depths.reduce(0, +)) { shape in
                try Self.classifier(from: clap, classes: shape.outputs, frames: shape.frames)
            }
        }
        // A fine-tuned one, to train further: everything but its head.
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: ModelFiles.checkpointFile(path).path, isDirectory: &isDir), !isDir.boolValue,
              let file = try? ModelFiles.modelFile(path), !ModelFiles.isZipArchive(file) else { return nil }
        let st = try SafeTensors.read(file)
        guard let arch = ModelRegistry.architecture(st.metadata), arch.family == Self.architectureName else { return nil }
        let base = try CLAPAudioClassifierConfig.decode(arch.config, "\(file.path) config")
        var state = st.tensors.filter { !$0.key.hasPrefix("head.") }
        return ClassifierStart(file: file, kind: "CLAP audio classifier", modelName: nil, pipeline: Self.pipeline(base.audio, frames: base.audio.frames),
                               bins: base.audio.melBins, depth: base.audio.depths.reduce(0, +)) { shape in
            var c = base
            (c.classes, c.audio.frames) = (shape.outputs, min(shape.frames, base.audio.specWidth))
            try c.validate()
            let model = CLAPAudioClassifier(c, encoder: Random.withoutInitialisation { HTSAT(c.audio) },
                                            projection: Random.withoutInitialisation { CLAPProjection(c.audio.width, c.projectionDim) })
            for (k, t) in model.stateDict() where k.hasPrefix("head.") { state[k] = t }
            do { try model.load(consuming: &state) } catch { throw ModelError("\(file.path): \(error)") }
            return model
        }
    }

    /// The model's own clip length, whatever `frames` asks (it was cut to the image's width when built),
    /// and no dataset normalisation, whatever `mean` and `std` say: HTSAT's batch norm was fitted to
    /// CLAP's raw dB, and a fine-tuning run's default statistics (AudioSet's, AST's recipe) would scale
    /// its input by a ninth.
    public func pipeline(for model: any AudioClassifierModel, frames: Int, mean: Float?, std: Float?) -> FeaturePipeline {
        let audio = (model as? CLAPAudioClassifier)?.config.audio ?? HTSATConfig()
        return Self.pipeline(audio, frames: audio.frames)
    }
}

/// A CLAP audio classifier as ONNX: HTSAT (`HTSAT.writeONNX`), the audio projection (Linear → ReLU →
/// Linear: the embedding) and the head (the logits), on unnormalised log-mel of the model's frames.
extension CLAPAudioClassifier: ONNXExportable {
    public func writeONNX(_ g: ONNXGraph, features: String) throws -> (logits: String, embedding: String) {
        let pooled = try audioEncoder.writeONNX(g, features: features, key: "audio_encoder.")
        let embedding = try audioProjection.writeONNX(g, pooled, key: "audio_projection")
        return (try g.linear(embedding, head, key: "head"), embedding)
    }
}

extension CLAPProjection {
    /// Linear → ReLU → Linear as ONNX nodes on `x`, its weights named under `key`.
    func writeONNX(_ g: ONNXGraph, _ x: String, key: String) throws -> String {
        try g.linear(g.node("Relu", [try g.linear(x, linear1, key: key + ".linear1")]), linear2, key: key + ".linear2")
    }
}
