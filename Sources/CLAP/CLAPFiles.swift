import Audio
import Engine
import Foundation
import Text

extension CLAP {
    /// The model at `url`: a Hugging Face `ClapModel` folder (its tokenizer files, unless `tokenizer`
    /// names another folder) or a LAION-CLAP `.pt` file, whose tokenizer (roberta-base's vocab.json +
    /// merges.txt, or a tokenizer.json) comes from `tokenizer` or else the `.pt`'s own folder; or a folder an
    /// Earshot contrastive run exported (`TrainedCLAP`).
    public static func load(model given: URL, tokenizer: URL? = nil, textHeads: Int? = nil, maxLength: Int = 77) throws -> CLAP {
        // A contrastive run's folder holds the model it exported in clap/: what a user names after training.
        let exported = given.appendingPathComponent("clap")
        let url = !TrainedCLAP.isTrained(given) && TrainedCLAP.isTrained(exported) ? exported : given
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw CLAPError("\(url.path): no such model folder or file")
        }
        // A folder an Earshot contrastive run exported carries its own tokenizer and front end.
        if isDir.boolValue && tokenizer == nil && TrainedCLAP.isTrained(url) { return try TrainedCLAP.load(url, maxLength: maxLength) }
        let model: CLAPModel, tokenizerFolder: URL
        if isDir.boolValue {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("best.safetensors").path) {
                // An Earshot classifier or pretraining run: its config.json is the run's, not a ClapModel's.
                throw CLAPError("\(url.path): an Earshot run folder with no exported CLAP in clap/; a CLAP is a Hugging Face ClapModel folder, "
                                + "a LAION-CLAP .pt, or the run folder of earshot pretrain --task contrastive")
            }
            model = try CLAPCheckpoint.loadHuggingFace(url)
            tokenizerFolder = tokenizer ?? url
        } else {
            guard url.pathExtension == "pt" || url.pathExtension == "pth" || url.pathExtension == "ckpt" else {
                throw CLAPError("\(url.path): a CLAP model is a Hugging Face ClapModel folder or a LAION-CLAP .pt file")
            }
            model = try LAIONCheckpoint.load(url, textHeads: textHeads)
            tokenizerFolder = tokenizer ?? url.deletingLastPathComponent()
        }
        let tok: any TextTokenizer
        do { tok = try TokenizerFiles.load(folder: tokenizerFolder, maxLength: min(maxLength, model.config.text.maxTokens)) } catch {
            let hint = isDir.boolValue || tokenizer != nil ? "" : " (a LAION .pt carries no tokenizer: pass roberta-base's vocab.json and merges.txt with --tokenizer)"
            throw CLAPError(describing(error, under: tokenizerFolder) + hint)
        }
        return try CLAP(model: model, tokenizer: tok, origin: isDir.boolValue ? .huggingFace : .laion)
    }

    /// FNV-1a (64 bits) of the weights as loaded (names and float32 values in key order) and the
    /// tokenizer's size, 16 hex digits: equal for the same model from a folder or a `.pt`, in float16
    /// or float32 files; different for any other weights. What an index records to refuse queries
    /// from another model (not a cryptographic hash).
    public func modelHash() -> String {
        let state = model.stateDict()
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for key in state.keys.sorted() {
            let t = state[key]!
            h = Array(key.utf8).withUnsafeBytes { FeatureCache.fnv1a($0, seed: h) }
            h = FeatureCache.fnv1a(UnsafeRawBufferPointer(start: t.data, count: t.count * 4), seed: h)
        }
        h = withUnsafeBytes(of: Int64(tokenizer.vocabularySize).littleEndian) { FeatureCache.fnv1a($0, seed: h) }
        return String(format: "%016llx", h)
    }

    /// The front end this model reads: LAION's log-mel with the model's mel bins, and the clip length
    /// that gives its `frames` (1001 frames at hop 480: 480,000 samples, 10 s at 48 kHz).
    public var melConfig: LogMelConfig {
        var c = LogMelConfig.clap
        if let released = model as? CLAPModel { c.nMels = released.config.audio.melBins }
        return c
    }

    public var clipSamples: Int { max(1, ((model as? CLAPModel)?.config.audio.frames ?? 1001) - 1) * melConfig.hop }
}

/// Unit audio embeddings of audio files: decoded, down-mixed, resampled to 48 kHz. A file no longer
/// than a clip is repeat-padded to it (`CLAPAudio.features`); a longer one is cut into clips half a
/// clip apart, the last ending at the file's end, whose unit embeddings are averaged and renormalised
/// (deterministic where LAION draws one random crop).
public struct CLAPFileEmbedder {
    public let clap: CLAP
    public let melConfig: LogMelConfig
    public let clipSamples: Int

    public init(clap: CLAP) {
        self.clap = clap; melConfig = clap.melConfig; clipSamples = clap.clipSamples
    }

    /// Start samples of the clips of an n-sample waveform.
    public static func clipStarts(samples n: Int, clip: Int) -> [Int] {
        guard n > clip else { return [0] }
        var starts = Array(stride(from: 0, to: n - clip, by: max(1, clip / 2)))
        if starts.last != n - clip { starts.append(n - clip) }
        return starts
    }

    /// The unit embedding [P] of a 48 kHz mono waveform.
    public func embed(waveform x: [Float]) throws -> [Float] {
        let mels = try Self.clipStarts(samples: x.count, clip: clipSamples).map {
            try CLAPAudio.features(x, config: melConfig, clipSamples: clipSamples, start: $0, int16: clap.origin == .laion)
        }
        let e = try clap.embed(features: Tensor.stack(mels))
        guard mels.count > 1 else { return e.toArray() }
        return try GradMode.noGrad { try e.mean(axis: 0, keepDim: true).l2Normalized().toArray() }
    }

    /// The unit embedding of one file; an unreadable or empty file throws `AudioError`/`CLAPError`.
    public func embed(file path: String) throws -> [Float] {
        // A trained model's own front end, or a fused tower (which takes the whole clip as four views),
        // embeds the file's features as they are.
        if clap.frontEnd != nil || clap.isFused {
            let features = try clap.features(ofFile: URL(fileURLWithPath: path))
            return try clap.embed(features: features.unsqueeze(0)).toArray()
        }
        let audio = try AudioFile.read(URL(fileURLWithPath: path))
        let wave = try Resampler.resample(audio.mono, from: audio.sampleRate, to: melConfig.sampleRate)
        guard !wave.isEmpty else { throw CLAPError("\(path): no audio samples") }
        return try embed(waveform: wave)
    }

    /// Embeddings of files, row-major [embedded.count, P]; files that cannot be read are skipped and
    /// named with the reason (the model's own errors still throw). `progress(done, total)` per file.
    public func embed(files: [String], progress: ((Int, Int) -> Void)? = nil)
        throws -> (paths: [String], embeddings: [Float], skipped: [(path: String, reason: String)]) {
        var paths: [String] = [], out: [Float] = [], skipped: [(path: String, reason: String)] = []
        for (i, path) in files.enumerated() {
            do {
                out += try embed(file: path)
                paths.append(path)
            } catch let e as AudioError {
                skipped.append((path, e.message))
            } catch let e as CLAPError where e.message.hasPrefix(path) || e.message.contains("empty waveform") {
                skipped.append((path, e.message))
            }
            progress?(i + 1, files.count)
        }
        return (paths, out, skipped)
    }
}
