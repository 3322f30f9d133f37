import Audio
import Engine

/// The CLAP audio front ends, as Hugging Face's `ClapFeatureExtractor` and LAION's `get_audio_features`
/// compute them: unfused (`features`: a waveform at 48 kHz → one clip of `clipSamples` → Slaney log-mel
/// [frames, bins]; truncation "rand_trunc", padding "repeatpad") and fused (`fusedFeatures`: HTK
/// log-mel, a global view and three local crops [4, frames, bins]; truncation "fusion").
public enum CLAPAudio {
    /// 10 s at 48 kHz: LAION's `clip_samples` and HF's `nb_max_samples`.
    public static let clipSamples = 480_000

    /// "repeatpad": a clip shorter than n samples is tiled ⌊n / count⌋ times, then zero-padded to n
    /// (a clip of n or more is returned as it is).
    public static func repeatPad(_ x: [Float], to n: Int) -> [Float] { FeatureFrames.repeatPad(x, to: n) }

    /// LAION's hook quantises to int16 and back before its features: clamp to [−1, 1], ×32767
    /// truncated toward zero (numpy `astype(int16)`), ÷32767. Hugging Face does not.
    public static func int16RoundTrip(_ x: [Float]) -> [Float] {
        x.map { Float(Int16(max(-1, min(1, $0)) * 32767)) / 32767 }
    }

    /// Log-mel features [frames, bins] of one clip: shorter audio repeat-padded to `clipSamples`, longer
    /// audio cut to `clipSamples` from `start` (the reference draws the start at random: "rand_trunc";
    /// pass one to choose), optionally through LAION's int16 round trip.
    public static func features(_ samples: [Float], config: LogMelConfig = .clap, clipSamples: Int = clipSamples,
                                start: Int = 0, int16: Bool = false) throws -> Tensor {
        guard !samples.isEmpty else { throw CLAPError("CLAP audio: an empty waveform") }
        guard clipSamples > 0 else { throw CLAPError("CLAP audio: clipSamples \(clipSamples) must be positive") }
        var x = samples
        if x.count > clipSamples {
            guard (0...(x.count - clipSamples)).contains(start) else {
                throw CLAPError("CLAP audio: start \(start) leaves no \(clipSamples)-sample clip in \(x.count) samples")
            }
            x = Array(x[start..<(start + clipSamples)])
        } else {
            x = repeatPad(x, to: clipSamples)
        }
        if int16 { x = int16RoundTrip(x) }
        return try LogMel(config)(x)
    }

    /// np.array_split(range(0, n), 3): three consecutive ranges, the first n mod 3 one longer.
    static func thirds(_ n: Int) -> [Range<Int>] {
        var out: [Range<Int>] = [], start = 0
        for k in 0..<3 {
            let size = n / 3 + (k < n % 3 ? 1 : 0)
            out.append(start..<(start + size)); start += size
        }
        return out
    }

    /// Where the three local crops of a long clip may start, in frames: the valid starts
    /// 0…total − chunk split into front, middle and back thirds (an empty third offers 0 only).
    public static func fusionCropRanges(totalFrames: Int, chunkFrames: Int) -> [Range<Int>] {
        thirds(max(totalFrames - chunkFrames + 1, 0)).map { $0.isEmpty ? 0..<1 : $0 }
    }

    /// The fused front end (`enable_fusion` models; HF `truncation="fusion"`, LAION's `data_truncating
    /// "fusion"`) on a 48 kHz waveform, with `LogMelConfig.clapFusion` (HTK mel, no norm, dB):
    /// - a clip longer than `clipSamples`: the log-mel of the whole clip, T frames; with the chunk
    ///   C = clipSamples / hop + 1 frames (1001), the global view is the whole mel resized to C frames
    ///   (bilinear, align_corners false: HF's `interpolate`; `antialias` true: LAION's torchvision
    ///   `Resize`, which averages the ~T/C frames each output frame covers instead of sampling two),
    ///   the local views are the C frames from one start in each third of 0…T − C (`fusionCropRanges`;
    ///   `cropStarts` chooses them, nil takes each third's middle, LAION and HF draw at random);
    ///   `longer` true. Where T = C (a clip less than a hop longer) the mel is used four times and
    ///   `longer` is false, as the reference;
    /// - otherwise the clip is repeat-padded to `clipSamples` and its mel used four times, `longer` false.
    /// `int16`: LAION's hook round trip first (`int16RoundTrip`). Returns [4, C, bins] (global, front, middle, back).
    public static func fusedFeatures(_ input: [Float], config: LogMelConfig = .clapFusion, clipSamples: Int = clipSamples,
                                     cropStarts: [Int]? = nil, antialias: Bool = false, int16: Bool = false) throws -> (features: Tensor, longer: Bool) {
        guard !input.isEmpty else { throw CLAPError("CLAP audio: an empty waveform") }
        guard clipSamples > 0 else { throw CLAPError("CLAP audio: clipSamples \(clipSamples) must be positive") }
        let samples = int16 ? int16RoundTrip(input) : input
        let mel = try LogMel(config)
        let chunk = clipSamples / config.hop + 1
        guard samples.count > clipSamples else {
            let m = try mel(repeatPad(samples, to: clipSamples))
            return (try Tensor.stack([m, m, m, m]), false)
        }
        let whole = try mel(samples)   // [T, F]
        return (try fusedViews(of: whole, chunkFrames: chunk, cropStarts: cropStarts, antialias: antialias), whole.shape[0] != chunk)
    }

    /// The four views of a clip longer than `clipSamples` from the log-mel of the whole clip [T, F]
    /// (`fusedFeatures`, which documents them; `CLAP.features(ofFile:)` streams the mel of a long file
    /// instead of holding its waveform): [4, C, F] for C = `chunkFrames`, the mel four times where T = C.
    public static func fusedViews(of whole: Tensor, chunkFrames chunk: Int, cropStarts: [Int]? = nil, antialias: Bool = false) throws -> Tensor {
        let (total, bins) = (whole.shape[0], whole.shape[1])
        if total == chunk { return try Tensor.stack([whole, whole, whole, whole]) }
        let ranges = fusionCropRanges(totalFrames: total, chunkFrames: chunk)
        let starts = cropStarts ?? ranges.map { $0.lowerBound + ($0.count - 1) / 2 }
        guard starts.count == 3 else { throw CLAPError("CLAP audio: \(starts.count) crop starts, 3 expected (front, middle, back)") }
        for (k, s) in starts.enumerated() where !ranges[k].contains(s) {
            throw CLAPError("CLAP audio: crop start \(s) is outside the \(["front", "middle", "back"][k]) third \(ranges[k]) of \(total) frames")
        }
        let global = try whole.reshape([1, 1, total, bins]).interpolate(size: (chunk, bins), mode: .bilinear, alignCorners: false, antialias: antialias)
            .reshape([chunk, bins])
        let crops = try starts.map { try whole.slice(axis: 0, start: $0, end: $0 + chunk) }
        return try Tensor.stack([global] + crops)
    }

    /// Random crop starts for `fusedFeatures`, one drawn uniformly from each third (training).
    public static func randomCropStarts(samples: Int, config: LogMelConfig = .clapFusion, clipSamples: Int = clipSamples,
                                        generator: inout RandomGenerator) -> [Int] {
        let total = config.frameCount(samples: samples), chunk = clipSamples / config.hop + 1
        return fusionCropRanges(totalFrames: total, chunkFrames: chunk).map { $0.lowerBound + Int(generator.next() % UInt64($0.count)) }
    }
}
