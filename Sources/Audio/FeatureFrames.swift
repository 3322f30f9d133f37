import Engine

/// The frame-level steps after a feature extractor: pad or cut to a length in the log domain, then
/// normalise with dataset statistics as (x − mean) / (2·std), as AST's recipes and the models that
/// follow them do.
public enum FeatureFrames {
    /// "repeatpad" (LAION-CLAP's and Hugging Face's `ClapFeatureExtractor`): a waveform shorter than n
    /// samples is tiled ⌊n / count⌋ times, then zero-padded to n (one of n or more is returned as it is).
    public static func repeatPad(_ x: [Float], to n: Int) -> [Float] {
        guard !x.isEmpty, x.count < n else { return x }
        var out: [Float] = []
        out.reserveCapacity(n)
        for _ in 0..<(n / x.count) { out += x }
        out += [Float](repeating: 0, count: n - out.count)
        return out
    }

    /// Pads (with `value` frames) or cuts features [frames, bins] to [target, bins] (log domain, before
    /// normalisation). The pad value is the front end's: AST's recipe zero-pads Kaldi fbank features
    /// (its `ZeroPad2d`), the log-mel front ends pad with silence (`FeaturePipeline.paddingValue`).
    public static func padOrCut(_ features: Tensor, to target: Int, value: Float = 0) throws -> Tensor {
        guard features.rank == 2 else { throw AudioError("padOrCut: expected [frames, bins], got \(features.shape)") }
        let frames = features.shape[0]
        if frames == target { return features }
        if frames > target { return try features.slice(axis: 0, start: 0, end: target) }
        return try features.pad([(0, target - frames)], value: value)
    }

    /// (x − mean) / (2·std), as (x − mean) · (1 / (2·std)). One pass into one new tensor: features of
    /// long recordings are hundreds of MB, and `(x - mean) * s` held a temporary of their size besides.
    /// Front-end output takes no gradient, so nothing is recorded on the tape.
    public static func normalize(_ x: Tensor, mean: Float, std: Float) -> Tensor {
        let scale = 1 / (2 * std)
        let out = Tensor.empty(x.shape)
        let (src, dst) = (x.data, out.data)
        for i in 0..<x.count { dst[i] = (src[i] - mean) * scale }
        return out
    }
}
