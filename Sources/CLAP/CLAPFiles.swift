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
/// (deterministic where LAION draws one random crop). A file is read and embedded a few clips at a
/// time, so an hour of audio needs the memory of `batchSize` clips, not of the hour.
public struct CLAPFileEmbedder {
    public let clap: CLAP
    public let melConfig: LogMelConfig
    public let clipSamples: Int
    /// Clips embedded at once: the audio tower's activations for this many clips are what a long file costs.
    public var batchSize = 8

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
        guard !x.isEmpty else { throw CLAPError("CLAP audio: an empty waveform") }
        var batches = ClipBatches(self)
        for start in Self.clipStarts(samples: x.count, clip: clipSamples) {
            try batches.add(clipFeatures(x.count > clipSamples ? Array(x[start..<(start + clipSamples)]) : x), file: 0)
        }
        try batches.flush()
        return try batches.embedding(of: 0)
    }

    /// The unit embedding of one file; an unreadable or empty file throws `AudioError`/`CLAPError`.
    public func embed(file path: String) throws -> [Float] {
        var batches = ClipBatches(self)
        try clipFeatures(of: path) { try batches.add($0, file: 0) }
        try batches.flush()
        return try batches.embedding(of: 0)
    }

    /// The log-mel of one clip's waveform (`clipSamples` long, or shorter: repeat-padded).
    func clipFeatures(_ wave: [Float]) throws -> Tensor {
        try CLAPAudio.features(wave, config: melConfig, clipSamples: clipSamples, int16: clap.origin == .laion)
    }

    /// What the audio tower embeds of a file, item by item to `body`: the log-mel of each clip, or for a
    /// trained model's own front end or a fused tower (which takes the whole clip as four views) the
    /// file's one set of features.
    func clipFeatures(of path: String, _ body: (Tensor) throws -> Void) throws {
        if clap.frontEnd != nil || clap.isFused { return try body(clap.features(ofFile: URL(fileURLWithPath: path))) }
        // The clips of `clipStarts`, cut as the file streams in: clip k once a sample past its end has
        // arrived (so it is not the last), the last clip (the final `clipSamples`) at the end. The held
        // samples start at the next clip's start or `clipSamples` before the newest, whichever is earlier.
        let stream = try ResampledStream(URL(fileURLWithPath: path), rate: melConfig.sampleRate)
        let (clip, step) = (clipSamples, max(1, clipSamples / 2))
        var held: [Float] = [], first = 0, next = 0
        while let block = try stream.next() {
            held += block
            while first + held.count > next + clip {
                try body(clipFeatures(Array(held[(next - first)..<(next - first + clip)])))
                next += step
            }
            let keepFrom = min(next, first + held.count - clip)
            if keepFrom > first { held.removeFirst(keepFrom - first); first = keepFrom }
        }
        guard first + held.count > 0 else { throw CLAPError("\(path): no audio samples") }
        try body(clipFeatures(held.count > clip ? Array(held.suffix(clip)) : held))
    }

    /// Embeddings of files, row-major [embedded.count, P]; files that cannot be read are skipped and
    /// named with the reason (the model's own errors still throw). Clips of consecutive files share
    /// batches (a folder of short clips runs 8 at a time, not one by one: 1.27x the clips a second of
    /// batch 1 at HTSAT-tiny). `progress(done, total)` per file read.
    public func embed(files: [String], progress: ((Int, Int) -> Void)? = nil)
        throws -> (paths: [String], embeddings: [Float], skipped: [(path: String, reason: String)]) {
        var read: [Int] = [], skipped: [(path: String, reason: String)] = []
        var batches = ClipBatches(self)
        for (i, path) in files.enumerated() {
            do {
                try clipFeatures(of: path) { try batches.add($0, file: i) }
                read.append(i)
            } catch let e as AudioError {
                batches.drop(file: i); skipped.append((path, e.message))
            } catch let e as CLAPError where e.message.hasPrefix(path) || e.message.contains("empty waveform") {
                batches.drop(file: i); skipped.append((path, e.message))
            }
            progress?(i + 1, files.count)
        }
        try batches.flush()
        return (read.map { files[$0] }, try read.flatMap { try batches.embedding(of: $0) }, skipped)
    }
}

/// Clips (or a fused file's views) of any number of files, embedded `batchSize` at a time across file
/// boundaries, each file's unit embeddings summed: a file's embedding is its one clip's, or the
/// renormalised mean of its clips'. Items of another shape than those waiting start a new batch.
struct ClipBatches {
    let embedder: CLAPFileEmbedder
    private var pending: [(file: Int, features: Tensor)] = []
    private var sums: [Int: [Float]] = [:]
    private var counts: [Int: Int] = [:]

    init(_ embedder: CLAPFileEmbedder) { self.embedder = embedder }

    mutating func add(_ features: Tensor, file: Int) throws {
        if let first = pending.first, first.features.shape != features.shape { try flush() }
        pending.append((file, features))
        if pending.count >= max(embedder.batchSize, 1) { try flush() }
    }

    /// Forgets a file that could not be read to its end: its waiting clips are not embedded.
    mutating func drop(file: Int) {
        pending.removeAll { $0.file == file }
        sums[file] = nil; counts[file] = nil
    }

    mutating func flush() throws {
        guard !pending.isEmpty else { return }
        let rows = try embedder.clap.embed(features: Tensor.stack(pending.map(\.features))).toArray()
        let width = rows.count / pending.count
        for (r, item) in pending.enumerated() {
            var sum = sums[item.file] ?? [Float](repeating: 0, count: width)
            for j in 0..<width { sum[j] += rows[r * width + j] }
            sums[item.file] = sum
            counts[item.file, default: 0] += 1
        }
        pending.removeAll()
    }

    /// A file's unit embedding, once `flush` has run after its last clip.
    func embedding(of file: Int) throws -> [Float] {
        guard let sum = sums[file], let count = counts[file], count > 0 else { throw CLAPError("CLAP audio: no clips to embed") }
        if count == 1 { return sum }
        let norm = max(sum.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        return sum.map { $0 / norm }
    }
}
