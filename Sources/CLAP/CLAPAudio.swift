import Audio
import Engine

/// The unfused CLAP audio front end: a waveform at 48 kHz → one clip of `clipSamples` → log-mel
/// [frames, bins], as Hugging Face's `ClapFeatureExtractor` (truncation "rand_trunc", padding
/// "repeatpad", Slaney mel) and LAION's `get_audio_features` compute it.
public enum CLAPAudio {
    /// 10 s at 48 kHz: LAION's `clip_samples` and HF's `nb_max_samples`.
    public static let clipSamples = 480_000

    /// "repeatpad": a clip shorter than n samples is tiled ⌊n / count⌋ times, then zero-padded to n
    /// (a clip of n or more is returned as it is).
    public static func repeatPad(_ x: [Float], to n: Int) -> [Float] {
        guard !x.isEmpty, x.count < n else { return x }
        var out: [Float] = []
        out.reserveCapacity(n)
        for _ in 0..<(n / x.count) { out += x }
        out += [Float](repeating: 0, count: n - out.count)
        return out
    }

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
}
