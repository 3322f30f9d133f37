import Audio
import Engine
import Foundation
import Models
import NN
import Text

/// Loading Hugging Face `ClapModel` folders (config.json + model.safetensors or pytorch_model.bin, and
/// the tokenizer files) onto `CLAPModel`.
public enum CLAPCheckpoint {
    /// Buffers a HF ClapModel state carries that the model recomputes.
    static let textBuffers = ["text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"]

    /// `state` under `CLAPModel`'s keys: HF's keys as they are, less the text tower's position/type id
    /// buffers and the audio tower's `relative_position_index` buffers (checked against the window).
    public static func modelState(_ state: [String: Tensor], config: CLAPConfig) throws -> [String: Tensor] {
        let audioPrefix = "audio_model.audio_encoder."
        guard state["\(audioPrefix)patch_embed.proj.weight"] != nil else {
            throw CLAPError("not a Hugging Face ClapModel state: no \(audioPrefix)patch_embed.proj.weight (a LAION .pt file is not supported yet)")
        }
        var audio: [String: Tensor] = [:], out: [String: Tensor] = [:]
        for (k, v) in state {
            if k.hasPrefix(audioPrefix) { audio[k] = v } else if !textBuffers.contains(k) { out[k] = v }
        }
        let encoder: [String: Tensor]
        do { encoder = try HTSATCheckpoint.encoderState(audio, window: config.audio.window) } catch { throw CLAPError("\(error)") }
        for (k, v) in encoder { out[audioPrefix + k] = v }
        return out
    }

    /// Builds the model `config` describes and loads `state` (HF ClapModel keys) into it, in eval mode.
    public static func load(_ state: [String: Tensor], config: CLAPConfig) throws -> CLAPModel {
        var own = try modelState(state, config: config)
        let model = Random.withoutInitialisation { CLAPModel(config) }
        do { try model.load(consuming: &own, strict: true) } catch { throw CLAPError("\(error)") }
        model.eval()
        return model
    }

    /// The model of a Hugging Face `ClapModel` folder, in eval mode.
    public static func loadHuggingFace(_ folder: URL) throws -> CLAPModel {
        let config = try CLAPConfig.fromHuggingFace(folder.appendingPathComponent("config.json"))
        guard let file = TextCheckpoint.weights(in: folder) else {
            throw CLAPError("\(folder.path): no model.safetensors or pytorch_model.bin")
        }
        let state = file.pathExtension == "bin" ? try TorchCheckpoint.read(file) : try SafeTensors.read(file).tensors
        do { return try load(state, config: config) } catch let e as CLAPError { throw CLAPError("\(file.path): \(e.message)") }
    }
}

/// Where a released CLAP comes from, for the steps of its front end the two references do differently.
public enum CLAPOrigin: String, Sendable {
    /// A Hugging Face `ClapModel` folder: `ClapFeatureExtractor` (no int16 round trip; the fused global
    /// view by plain bilinear interpolation).
    case huggingFace
    /// A LAION-CLAP `.pt`: LAION's hook (the int16 round trip; the fused global view by torchvision's
    /// antialiased `Resize`).
    case laion
}

/// A CLAP model with its tokenizer and front end: texts and log-mel features in, joint-space
/// embeddings out.
public struct CLAP {
    public let model: AudioTextModel
    public var tokenizer: any TextTokenizer
    /// The features the audio tower takes, where it is not the released CLAPs' own (`CLAPAudio`: 48 kHz,
    /// 10 s repeat-padded, Slaney log-mel): a trained model's pipeline (see `TrainedCLAP`).
    public let frontEnd: FeaturePipeline?
    /// Whose waveform-to-features steps the released front end follows: a model loaded from a LAION `.pt`
    /// takes LAION's (`CLAPOrigin.laion`), a Hugging Face folder HF's.
    public let origin: CLAPOrigin

    /// Fails when the tokenizer can produce ids the text tower does not have, or texts longer than its
    /// positions.
    public init(model: AudioTextModel, tokenizer: any TextTokenizer, frontEnd: FeaturePipeline? = nil, origin: CLAPOrigin = .huggingFace) throws {
        guard tokenizer.vocabularySize <= model.textConfig.vocabSize else {
            throw CLAPError("the tokenizer has \(tokenizer.vocabularySize) ids but the text tower's embedding table holds \(model.textConfig.vocabSize): they are not from the same model")
        }
        guard tokenizer.maxLength <= model.textConfig.maxTokens else {
            throw CLAPError("the tokenizer's maxLength \(tokenizer.maxLength) is more than the \(model.textConfig.maxTokens) positions of the text tower")
        }
        self.model = model; self.tokenizer = tokenizer; self.frontEnd = frontEnd; self.origin = origin
    }

    /// A Hugging Face ClapModel folder with its tokenizer files (tokenizer.json, or vocab.json + merges.txt),
    /// texts cut at `maxLength` tokens (77, LAION's hook and the HF processor's default); or a folder
    /// an Earshot contrastive run exported (config.json with model_type "earshot_clap", `TrainedCLAP`).
    public static func load(_ folder: URL, maxLength: Int = 77) throws -> CLAP {
        if TrainedCLAP.isTrained(folder) { return try TrainedCLAP.load(folder, maxLength: maxLength) }
        let model = try CLAPCheckpoint.loadHuggingFace(folder)
        let tokenizer: any TextTokenizer
        do { tokenizer = try TokenizerFiles.load(folder: folder, maxLength: min(maxLength, model.config.text.maxTokens)) } catch {
            throw CLAPError(describing(error, under: folder))
        }
        return try CLAP(model: model, tokenizer: tokenizer)
    }

    /// Whether the audio tower is a fused HTSAT (takes `CLAPAudio.fusedFeatures`).
    public var isFused: Bool { (model.audioTower as? HTSAT)?.config.fusion ?? false }

    /// Features of an audio file as the audio tower takes them: the front end's [T, F], else the
    /// released CLAPs' at 48 kHz: unfused the first 10 s, repeat-padded (`CLAPAudio.features`, [T, F]);
    /// fused the global view and three local crops of the whole clip (`CLAPAudio.fusedFeatures`, [4, T, F]).
    ///
    /// The file is streamed: unfused, only its first 10 s are read; fused, a file longer than a clip
    /// goes block by block through the log-mel (`LogMelStream`), so only its mel (1/7 of the 48 kHz
    /// waveform's size) is ever whole.
    public func features(ofFile url: URL) throws -> Tensor {
        if let frontEnd { return try frontEnd.features(of: url) }
        let clip = CLAPAudio.clipSamples
        do {
            guard isFused else { return try features(waveform: ResampledStream.prefix(of: url, rate: 48_000, count: clip)) }
            let stream = try ResampledStream(url, rate: 48_000)
            let laion = origin == .laion
            var head: [Float] = []
            while head.count <= clip, let block = try stream.next() { head += block }
            guard head.count > clip else { return try features(waveform: head) }
            var mel = LogMelStream(try LogMel(.clapFusion)), frames: [Tensor] = []
            var block: [Float]? = head
            while let b = block {
                if let f = try mel.push(laion ? CLAPAudio.int16RoundTrip(b) : b) { frames.append(f) }
                block = try stream.next()
            }
            if let f = try mel.finish() { frames.append(f) }
            return try CLAPAudio.fusedViews(of: Tensor.concat(frames, axis: 0), chunkFrames: clip / LogMelConfig.clapFusion.hop + 1, antialias: laion)
        } catch let e as CLAPError { throw CLAPError("\(url.path): \(e.message)") }
    }

    /// The released front end on a 48 kHz waveform, as `origin` computes it: LAION's hook rounds the
    /// waveform through int16 first and its fused global view is torchvision's antialiased resize; HF
    /// does neither. Fused models: `cropStarts` as `CLAPAudio.fusedFeatures` (nil: each third's middle).
    public func features(waveform wave: [Float], cropStarts: [Int]? = nil) throws -> Tensor {
        let laion = origin == .laion
        if isFused { return try CLAPAudio.fusedFeatures(wave, cropStarts: cropStarts, antialias: laion, int16: laion).features }
        return try CLAPAudio.features(wave, int16: laion)
    }

    /// Unit-length text embeddings [B, P]; no graph is recorded. Texts longer than the tokenizer's
    /// `maxLength` are cut as the reference cuts them; `truncated` counts them, for the caller to say once.
    public func embed(texts: [String]) throws -> (embeddings: Tensor, truncated: Int) {
        guard !texts.isEmpty else { throw CLAPError("no texts to embed") }
        let batch = tokenizer.encode(batch: texts)
        return (try GradMode.noGrad { try model.textEmbeddings(batch) }, batch.truncatedCount)
    }

    /// Unit-length audio embeddings [B, P] of log-mel features [B, T, mel bins] (fused: [B, 4, T, bins]); no graph is recorded.
    public func embed(features: Tensor) throws -> Tensor {
        try GradMode.noGrad { try model.audioEmbeddings(features) }
    }
}
