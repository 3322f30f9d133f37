import Engine
import Foundation

/// File → fixed-size features: decode, downmix, resample, extract, pad or cut, normalise.
public struct FeaturePipeline: Codable, Sendable, Equatable {
    public enum Kind: Codable, Sendable, Hashable {
        case kaldiFbank(KaldiFbankConfig)
        case logMel(LogMelConfig)
    }
    public var kind: Kind
    /// Frames every clip is padded or cut to (nil keeps the natural length).
    public var targetFrames: Int?
    /// (x − mean) / (2·std) after padding, as AST; nil leaves features unnormalised.
    public var mean: Float?
    public var std: Float?
    /// CLAP's "repeatpad" (log-mel only): a waveform shorter than `targetFrames` is tiled ⌊n / count⌋
    /// times before its features are taken, then zero-padded, n the samples of `targetFrames` frames;
    /// nil or false pads the features with silence. Absent from older checkpoints' metadata (nil).
    public var repeatPad: Bool?

    public init(kind: Kind, targetFrames: Int? = nil, mean: Float? = nil, std: Float? = nil, repeatPad: Bool? = nil) {
        self.kind = kind; self.targetFrames = targetFrames; self.mean = mean; self.std = std; self.repeatPad = repeatPad
    }

    /// `samples` repeat-padded to fill `frames` frames of the log-mel (n = (frames − 1)·hop samples)
    /// where `repeatPad` is on and the clip is shorter; otherwise as they are.
    public func repeatPadded(_ samples: [Float], toFrames frames: Int?) -> [Float] {
        guard repeatPad == true, let frames, case .logMel(let c) = kind else { return samples }
        return FeatureFrames.repeatPad(samples, to: (frames - 1) * c.hop)
    }

    /// Throws, naming the field, when a recorded pipeline cannot give usable features: a checkpoint's
    /// metadata can say anything, and a std of 0 or a NaN mean turns every score into NaN without an error.
    public func validate() throws {
        func need(_ ok: Bool, _ what: String) throws { if !ok { throw AudioError("feature pipeline: \(what)") } }
        if let targetFrames {
            try need(targetFrames >= 1, "target length \(targetFrames) frames must be at least 1")
            // The model configs' limit: no clip of that many features exists to pad to.
            try need(ConfigLimits.oversized([("", [targetFrames, bins])]) == nil, "target length \(targetFrames) frames of \(bins) bins is beyond any clip")
        }
        if let mean { try need(mean.isFinite, "mean \(mean) must be finite") }
        if let std { try need(std.isFinite && std > 0, "std \(std) must be positive and finite") }
        if repeatPad == true {
            guard case .logMel = kind else { throw AudioError("feature pipeline: repeat padding is for log-mel front ends") }
        }
        try need(sampleRate > 0, "sample rate \(sampleRate) Hz must be positive")
        try need(bins >= 1, "\(bins) mel bins (at least 1)")
    }

    /// The pipeline a checkpoint's metadata records under `pipeline`, checked (`validate`); nil where the
    /// key is absent. A value that does not decode throws with the decoder's reason, prefixed by `file`.
    public static func recorded(in metadata: [String: String], file: String) throws -> FeaturePipeline? {
        guard let text = metadata["pipeline"] else { return nil }
        let pipeline: FeaturePipeline
        do { pipeline = try JSONDecoder().decode(FeaturePipeline.self, from: Data(text.utf8)) } catch {
            throw AudioError("\(file): metadata 'pipeline' is not a feature pipeline (\(error))")
        }
        do { try pipeline.validate() } catch let e as AudioError { throw AudioError("\(file): metadata 'pipeline': \(e.message)") }
        return pipeline
    }

    public var sampleRate: Int {
        switch kind { case .kaldiFbank(let c): c.sampleRate; case .logMel(let c): c.sampleRate }
    }

    public var bins: Int {
        switch kind { case .kaldiFbank(let c): c.numMelBins; case .logMel(let c): c.nMels }
    }

    /// The value padding frames get in the log domain of unnormalised features `x` [frames, bins]:
    /// what the reference recipe pads with. AST's recipe zero-pads Kaldi fbank features (`ZeroPad2d`),
    /// so 0 there. PANNs and CLAP pad the *waveform* with zeros, so a log-mel pad frame is silence,
    /// 10·log10(amin) − 10·log10(max(amin, ref)) (−100 dB by default; with top_db, top_db below the
    /// clip's peak if that is higher). A 0 dB pad would be the loudest part of most clips.
    public func paddingValue(for x: Tensor) -> Float {
        switch kind {
        case .kaldiFbank: return 0
        case .logMel(let c):
            let silence = 10 * Foundation.log10(c.amin) - 10 * Foundation.log10(max(c.amin, c.ref))
            guard let topDB = c.topDB, x.count > 0 else { return silence }
            let peak = (try? x.max().item()) ?? silence
            return max(silence, peak - topDB)
        }
    }

    /// Pads (with `paddingValue`) or cuts unnormalised features to `target` frames.
    public func padOrCut(_ x: Tensor, to target: Int) throws -> Tensor {
        try FeatureFrames.padOrCut(x, to: target, value: x.shape[0] < target ? paddingValue(for: x) : 0)
    }

    /// Features of a waveform already at `sampleRate`.
    public func features(_ samples: [Float]) throws -> Tensor {
        var x = try Extractors.shared.extractor(for: kind)(repeatPadded(samples, toFrames: targetFrames))
        if let t = targetFrames { x = try padOrCut(x, to: t) }
        if let mean, let std { x = FeatureFrames.normalize(x, mean: mean, std: std) }
        return x
    }

    /// Features of an audio file: decode, downmix, resample to `sampleRate`, extract.
    public func features(of url: URL) throws -> Tensor {
        try featuresNotingTruncation(of: url).features
    }

    /// Features of an audio file, and whether it was cut short (its features are then those of the
    /// frames that remain).
    /// `repeatPadTo`: with `targetFrames` nil (a natural-length pass), the frames a short clip is
    /// repeat-padded to where `repeatPad` is on (a windowed pass's window).
    public func featuresNotingTruncation(of url: URL, repeatPadTo: Int? = nil) throws -> (features: Tensor, truncated: AudioTruncation?) {
        let audio = try AudioFile.read(url)
        do {
            var wave = try Resampler.resample(audio.mono, from: audio.sampleRate, to: sampleRate)
            if targetFrames == nil { wave = repeatPadded(wave, toFrames: repeatPadTo) }
            return (try features(wave), audio.truncated)
        } catch let e as AudioError { throw AudioError("\(url.path): \(e.message)") }
    }

    /// A stable key for the feature cache: the config as sorted JSON.
    var cacheKey: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let config = (try? String(data: encoder.encode(self), encoding: .utf8)) ?? "\(self)"
        // Log-mel features padded with silence since session 17 (0 dB before): a new key, so no cached
        // clip padded the old way is reused.
        if case .logMel = kind, targetFrames != nil { return config + " pad=silence" }
        return config
    }
}

/// Extractors built once per config: a filterbank and window cost more than a short clip's features,
/// and a loader asks for them clip after clip.
final class Extractors: @unchecked Sendable {
    static let shared = Extractors()
    private var built: [FeaturePipeline.Kind: ([Float]) throws -> Tensor] = [:]
    private let lock = NSLock()

    func extractor(for kind: FeaturePipeline.Kind) throws -> ([Float]) throws -> Tensor {
        lock.lock(); defer { lock.unlock() }
        if let f = built[kind] { return f }
        let f: ([Float]) throws -> Tensor
        switch kind {
        case .kaldiFbank(let c): let e = try KaldiFbank(c); f = { try e($0) }
        case .logMel(let c): let e = try LogMel(c); f = { try e($0) }
        }
        built[kind] = f
        return f
    }
}

/// On-disk feature cache keyed by file content and extractor config (FNV-1a 64 of both), so edited
/// audio or a changed config never reuses stale features. Entries are written atomically.
public struct FeatureCache: Sendable {
    public let directory: URL
    public init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    package static func fnv1a(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 {
        var h = seed
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }

    func key(for url: URL, pipeline: FeaturePipeline) throws -> String {
        var h = try AudioFile.contents(of: url).withUnsafeBytes { FeatureCache.fnv1a($0) }
        h = Array(pipeline.cacheKey.utf8).withUnsafeBytes { FeatureCache.fnv1a($0, seed: h) }
        return String(format: "%016llx", h)
    }

    public func features(of url: URL, pipeline: FeaturePipeline) throws -> Tensor {
        try featuresNotingTruncation(of: url, pipeline: pipeline).features
    }

    /// Cached features, and whether the file was cut short. An entry is [frames, bins] as Int32, the
    /// features, then for a truncated file [promised, read] frames as Int64.
    public func featuresNotingTruncation(of url: URL, pipeline: FeaturePipeline) throws -> (features: Tensor, truncated: AudioTruncation?) {
        let file = directory.appendingPathComponent(try key(for: url, pipeline: pipeline) + ".feat")
        if let data = try? Data(contentsOf: file), data.count >= 8 {
            let (frames, bins) = data.withUnsafeBytes { (Int($0.load(fromByteOffset: 0, as: Int32.self)), Int($0.load(fromByteOffset: 4, as: Int32.self))) }
            let body = 8 + frames * bins * 4
            if frames >= 0, bins > 0, data.count == body || data.count == body + 16 {
                let t = Tensor.empty([frames, bins])
                data.withUnsafeBytes { raw in
                    UnsafeMutableRawPointer(t.data).copyMemory(from: raw.baseAddress! + 8, byteCount: frames * bins * 4)
                }
                let truncated = data.count == body ? nil : data.withUnsafeBytes {
                    AudioTruncation(promised: Int($0.loadUnaligned(fromByteOffset: body, as: Int64.self)),
                                    read: Int($0.loadUnaligned(fromByteOffset: body + 8, as: Int64.self)))
                }
                return (t, truncated)
            }
        }
        let (t, truncated) = try pipeline.featuresNotingTruncation(of: url)
        var out = Data()
        withUnsafeBytes(of: Int32(t.shape[0])) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: Int32(t.shape[1])) { out.append(contentsOf: $0) }
        out.append(UnsafeBufferPointer(start: t.data, count: t.count))
        if let truncated {
            withUnsafeBytes(of: Int64(truncated.promised)) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: Int64(truncated.read)) { out.append(contentsOf: $0) }
        }
        let tmp = directory.appendingPathComponent(".\(file.lastPathComponent).\(UUID().uuidString)")
        if (try? out.write(to: tmp)) != nil { _ = rename(tmp.path, file.path) }
        return (t, truncated)
    }
}
