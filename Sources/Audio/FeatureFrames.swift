import Engine

/// The frame-level steps after a feature extractor: pad with zeros or cut to a length in the log
/// domain (zero is silence there), then normalise with dataset statistics as (x − mean) / (2·std), as
/// AST's recipes and the models that follow them do.
public enum FeatureFrames {
    /// Zero-pads or cuts features [frames, bins] to [target, bins] (log domain, before normalisation).
    public static func padOrCut(_ features: Tensor, to target: Int) throws -> Tensor {
        guard features.rank == 2 else { throw AudioError("padOrCut: expected [frames, bins], got \(features.shape)") }
        let frames = features.shape[0]
        if frames == target { return features }
        if frames > target { return try features.slice(axis: 0, start: 0, end: target) }
        return try features.pad([(0, target - frames)])
    }

    /// (x − mean) / (2·std).
    public static func normalize(_ x: Tensor, mean: Float, std: Float) -> Tensor {
        (x - mean) * (1 / (2 * std))
    }
}
