import Engine

/// The AST/SSAST input recipe on top of Kaldi fbank: pad with zeros or cut to `targetLength` frames
/// in the log domain, then normalise as (x − mean) / (2·std).
public struct ASTInputConfig: Codable, Sendable, Equatable {
    public var targetLength: Int
    public var mean: Float
    public var std: Float

    public init(targetLength: Int, mean: Float, std: Float) { self.targetLength = targetLength; self.mean = mean; self.std = std }

    /// Dataset statistics from the AST recipes.
    public static let audioset = ASTInputConfig(targetLength: 1024, mean: -4.2677393, std: 4.5689974)
    public static let esc50 = ASTInputConfig(targetLength: 512, mean: -6.6268077, std: 5.358466)
    public static let speechCommands = ASTInputConfig(targetLength: 128, mean: -6.845978, std: 5.5654526)
}

public enum ASTInput {
    /// Zero-pads or cuts fbank [frames, bins] to [target, bins] (log domain, before normalisation).
    public static func padOrCut(_ fbank: Tensor, to target: Int) throws -> Tensor {
        guard fbank.rank == 2 else { throw AudioError("padOrCut: expected [frames, bins], got \(fbank.shape)") }
        let frames = fbank.shape[0]
        if frames == target { return fbank }
        if frames > target { return try fbank.slice(axis: 0, start: 0, end: target) }
        return try fbank.pad([(0, target - frames)])
    }

    public static func normalize(_ x: Tensor, mean: Float, std: Float) -> Tensor {
        (x - mean) * (1 / (2 * std))
    }

    /// fbank → pad/cut → normalise.
    public static func prepare(_ fbank: Tensor, _ config: ASTInputConfig) throws -> Tensor {
        normalize(try padOrCut(fbank, to: config.targetLength), mean: config.mean, std: config.std)
    }
}
