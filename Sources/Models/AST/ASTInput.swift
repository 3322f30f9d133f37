import Audio

/// The AST/SSAST input recipe on top of Kaldi fbank: pad with zeros or cut to `targetLength` frames
/// in the log domain, then normalise as (x − mean) / (2·std) with the dataset's statistics.
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

extension FeaturePipeline {
    /// AST/SSAST input: 16 kHz Kaldi fbank, 128 bins, padded/cut, normalised with dataset stats.
    public static func ast(_ input: ASTInputConfig) -> FeaturePipeline {
        FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: input.targetLength, mean: input.mean, std: input.std)
    }

    /// AST's Kaldi fbank with `bins` mel bins (128 in every AST/SSAST release; a checkpoint may say other).
    public static func astFbank(bins: Int = 128, targetFrames: Int?, mean: Float?, std: Float?) -> FeaturePipeline {
        var fbank = KaldiFbankConfig.ast
        fbank.numMelBins = bins
        return FeaturePipeline(kind: .kaldiFbank(fbank), targetFrames: targetFrames, mean: mean, std: std)
    }
}
