import Audio
import Engine

/// What a pretext objective is given of each clip of a batch of features [B, T, F]: a random window,
/// or for a clip-level objective two views of it.
public struct PretextViews: Sendable {
    /// Random windows of this many frames (nil: the whole input).
    public var cropFrames: Int?
    /// The padding frames' value (windows stay inside a clip's real frames: `Augment.randomCrop`).
    public var padValue: Float
    /// Largest share of another clip mixed into each view (BYOL-A's 0.4); 0: windows only.
    public var mixRatio: Float
    /// The features' normalisation scale, log E = v·scale + mean (2·std for AST's normalisation).
    public var scale: Float

    public init(cropFrames: Int?, padValue: Float, mixRatio: Float = 0.4, scale: Float = 1) {
        (self.cropFrames, self.padValue, self.mixRatio, self.scale) = (cropFrames, padValue, mixRatio, scale)
    }

    /// One random window per clip (the features themselves without a crop, or when they are no longer).
    public func crops(_ features: Tensor, _ g: inout RandomGenerator) throws -> Tensor {
        guard let crop = cropFrames, crop < features.shape[1] else { return features }
        return try Tensor.stack((0..<features.shape[0]).map { i in
            try Augment.randomCrop(try features.slice(axis: 0, start: i, end: i + 1).squeeze(0), frames: crop,
                                   padValue: padValue, generator: &g)
        })
    }

    /// Two views of each clip: each its own random window with another clip's window mixed in at a
    /// ratio λ ~ U[0, mixRatio) in the energy domain (`Augment.mixEnergies`; BYOL-A's background
    /// mixup, which keeps one-shot sounds shorter than the window, whose two windows are the same,
    /// from giving two identical views). A batch of one clip gets windows only.
    public func twoViews(_ features: Tensor, _ g: inout RandomGenerator) throws -> (Tensor, Tensor) {
        let a = try crops(features, &g), b = try crops(features, &g)
        let n = features.shape[0]
        guard n > 1 && mixRatio > 0 else { return (a, b) }
        let backgrounds = try crops(features, &g)
        func mixed(_ x: Tensor, _ g: inout RandomGenerator) throws -> Tensor {
            try Tensor.stack((0..<n).map { i in
                let other = (i + 1 + Int(g.next() % UInt64(n - 1))) % n    // any clip but i
                return try Augment.mixEnergies(try x.slice(axis: 0, start: i, end: i + 1).squeeze(0),
                                               try backgrounds.slice(axis: 0, start: other, end: other + 1).squeeze(0),
                                               ratio: g.nextUniform() * mixRatio, scale: scale)
            })
        }
        return (try mixed(a, &g), try mixed(b, &g))
    }
}
