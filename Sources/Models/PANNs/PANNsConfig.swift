import Audio
import Engine
import Foundation

/// A PANNs CNN (Kong et al., 2020): which network, its widths, its front end and its head. Written
/// into every checkpoint as the `panns` architecture's config.
public struct PANNsConfig: CheckpointConfig, Sendable, Equatable {
    public static let configName = "PANNs"
    public enum Variant: String, Codable, Sendable, CaseIterable {
        /// Four single 5x5 conv blocks (64-512), fc1 512.
        case cnn6
        /// Four double 3x3 conv blocks (64-512), fc1 512.
        case cnn10
        /// Six double 3x3 conv blocks (64-2048; the last not pooled), fc1 2048.
        case cnn14

        /// The released channel widths.
        public var channels: [Int] { self == .cnn14 ? [64, 128, 256, 512, 1024, 2048] : [64, 128, 256, 512] }
        var kernel: Int { self == .cnn6 ? 5 : 3 }
        var doubleConv: Bool { self != .cnn6 }
    }

    public var variant: Variant
    /// Output channels of each conv block (the released widths unless a test shrinks them).
    public var channels: [Int]
    /// fc1's width: the embedding.
    public var embeddingWidth: Int
    public var classes: Int
    /// Frames of one window (10 s at 32 kHz, hop 320: 1001); longer clips run window by window.
    public var frames: Int
    public var frontEnd: LogMelConfig
    /// Cnn14_DecisionLevelMax: scores per time step (after a 3-step max+mean smoothing), the clip's
    /// score their maximum; gives frame-wise output for sound event detection.
    public var decisionLevelMax = false
    /// PANNs' fine-tuning template (`Transfer_Cnn14`): `fc_transfer` on the (dropped-out) embedding
    /// in place of `fc_audioset`.
    public var transferHead = false
    /// SpecAugmentation's drop stripes in training (2 time stripes up to 64 frames, 2 frequency stripes
    /// up to 8 bins, after bn0), as the recipe trains.
    public var specAugment = true

    public init(_ variant: Variant, classes: Int, frames: Int = 1001, frontEnd: LogMelConfig = .panns) {
        self.variant = variant
        channels = variant.channels
        embeddingWidth = channels.last!
        self.classes = classes; self.frames = frames; self.frontEnd = frontEnd
    }

    /// Pooling after each block: 2x2, except Cnn14's last block (1x1).
    var pools: [Int] { channels.indices.map { variant == .cnn14 && $0 == 5 ? 1 : 2 } }
    /// How many input frames one output time step spans (the reference's `interpolate_ratio`: 32 for Cnn14).
    public var timeRatio: Int { pools.reduce(1, *) }

    public func validate() throws {
        let expected = variant.channels.count
        guard channels.count == expected, channels.allSatisfy({ $0 >= 1 }) else {
            throw ModelError("PANNs \(variant.rawValue): \(expected) conv block widths expected, got \(channels)")
        }
        guard classes >= 1, embeddingWidth >= 1 else { throw ModelError("PANNs: \(classes) classes, embedding \(embeddingWidth)") }
        guard frames >= timeRatio, frontEnd.nMels >= timeRatio else {
            throw ModelError("PANNs \(variant.rawValue): windows of \(frames) frames x \(frontEnd.nMels) bins are too small for its \(timeRatio)x pooling")
        }
        let widest = channels.max() ?? 1
        if let what = ConfigLimits.oversized([("the widest convolution", [widest, widest, 3, 3]), ("the embedding", [widest, embeddingWidth]),
                                              ("the head", [embeddingWidth, classes]), ("a block's activations", [frames, frontEnd.nMels, widest])]) {
            throw ModelError("PANNs config: \(what)")
        }
    }



    /// Front ends of the released checkpoints: 32 kHz (Cnn14 and most), 16 kHz (Cnn14_16k), 8 kHz (Cnn14_8k).
    public static let frontEnds: [LogMelConfig] = [
        .panns,
        LogMelConfig(sampleRate: 16000, nFFT: 512, hop: 160, nMels: 64, fMin: 50, fMax: 8000),
        LogMelConfig(sampleRate: 8000, nFFT: 256, hop: 80, nMels: 64, fMin: 50, fMax: 4000),
    ]
}
