import Engine
import NN

/// HTSAT's patch embedding: Conv2d(1, D, patch, stride, padding (patch − stride)/2) over the folded
/// image, flattened to tokens row-major, then LayerNorm (`patch_embed.proj`, `patch_embed.norm`).
public final class HTSATPatchEmbed: Module {
    @Child public private(set) var proj: Conv2d
    @Child public private(set) var norm: LayerNorm?
    /// Fused models only: the local crops' patch embedding (patch × 3·patch, stride likewise) and the AFF block.
    @Child public private(set) var melConv2d: Conv2d?
    @Child public private(set) var fusionModel: AttentionalFeatureFusion?

    init(_ c: HTSATConfig) {
        let padding = ((c.patchSize - c.patchStride[0]) / 2, (c.patchSize - c.patchStride[1]) / 2)
        proj = Conv2d(1, c.patchDim, kernel: (c.patchSize, c.patchSize), stride: (c.patchStride[0], c.patchStride[1]), padding: padding)
        norm = c.patchNorm ? LayerNorm(c.patchDim) : nil
        if c.fusion {
            fusionModel = AttentionalFeatureFusion(channels: c.patchDim, ratio: c.affRatio)
            melConv2d = Conv2d(1, c.patchDim, kernel: (c.patchSize, 3 * c.patchSize), stride: (c.patchStride[0], 3 * c.patchStride[1]), padding: padding)
        }
    }

    /// image [B, 1, spec, spec] (or, fused, [B, 4, spec, spec] with the clips marked `longer`) →
    /// tokens [B, rows·cols, D].
    func callAsFunction(_ image: Tensor, longer: [Bool] = []) throws -> Tensor {
        let x = image.shape[1] == 1 ? try proj(image) : try fused(image, longer: longer)
        let tokens = try x.reshape([x.shape[0], x.shape[1], x.shape[2] * x.shape[3]]).transpose(1, 2)
        return try norm.map { try $0(tokens) } ?? tokens
    }
}

/// The HTSAT audio encoder of CLAP (unfused, or fused for long audio: `HTSATConfig.fusion`), keyed as Hugging Face `ClapAudioModel`'s
/// `audio_encoder.*` (`batch_norm`, `patch_embed`, `layers.{s}.blocks.{b}.*`, `layers.{s}.downsample.*`,
/// `norm`). Log-mel features [B, T, F] →
/// 1. `batch_norm` over the F mel bins (LAION's `bn0`);
/// 2. T < spec·r frames are stretched to spec·r by bicubic interpolation (align_corners, 1001 → 1024);
/// 3. the r = spec/F chunks of spec frames are stacked along frequency: image[c·F + f][t] =
///    x[c·spec + t][f], a spec × spec image (4 × 256 frames of 64 bins → 256 × 256 for HTSAT-tiny);
/// 4. patch embedding, the Swin stages (windowed attention with relative-position bias, shifted
///    windows, patch merging), the final LayerNorm;
/// 5. the pooled embedding is the mean over all final tokens (the reference's grouped reshape before
///    its average pool only reorders them).
public final class HTSAT: Module, AudioEncoder {
    public let config: HTSATConfig
    public let batchNorm: BatchNorm
    public let patchEmbed: HTSATPatchEmbed
    public let layers: [SwinStage]
    @Child public private(set) var norm: LayerNorm

    public init(_ config: HTSATConfig) {
        self.config = config
        batchNorm = BatchNorm(config.melBins)
        patchEmbed = HTSATPatchEmbed(config)
        let total = config.depths.reduce(0, +)
        // torch.linspace(0, drop_path_rate, total): block k of all gets rate·k/(total − 1).
        let rates = (0..<total).map { total > 1 ? config.dropPath * Float($0) / Float(total - 1) : 0 }
        var start = 0
        layers = config.depths.enumerated().map { i, d in
            defer { start += d }
            return SwinStage(config, stage: i, dropPaths: Array(rates[start..<(start + d)]))
        }
        norm = LayerNorm(config.width)
        super.init()
        Init.timmLinear(self)
    }

    public var width: Int { config.width }
    public var prefixTokens: Int { 0 }
    public var inputFrames: Int { config.frames }
    public var inputBins: Int { config.melBins }
    /// Final tokens per clip: the last stage's grid.
    public var tokenCount: Int { (config.grid.rows >> (config.depths.count - 1)) * (config.grid.cols >> (config.depths.count - 1)) }

    /// bn0, the bicubic stretch and the chunk-to-frequency fold: features [B, T, F] → [B, 1, spec, spec];
    /// fused features [B, 4, T, F] (global view and three local crops) → [B, 4, spec, spec], each
    /// channel alike.
    public func image(_ features: Tensor) throws -> Tensor {
        let c = config
        let fused = features.rank == 4
        guard features.rank == 3 || (fused && c.fusion && features.shape[1] == 4),
              features.shape[features.rank - 1] == c.melBins, (1...c.specWidth).contains(features.shape[features.rank - 2]) else {
            throw ModelError("HTSAT: expected features [B, T ≤ \(c.specWidth), \(c.melBins)]\(c.fusion ? " or fused [B, 4, T, \(c.melBins)]" : ""), got \(features.shape)")
        }
        let (b, channels, t, f) = (features.shape[0], fused ? 4 : 1, features.shape[features.rank - 2], c.melBins)
        // BatchNorm over the mel bins: bins as channels, [B·C, F, T].
        let flat = try features.reshape([b * channels, t, f])
        var normed = try batchNorm(flat.transpose(1, 2)).transpose(1, 2).unsqueeze(1)   // [B·C, 1, T, F]
        if training && c.specAugment {
            // LAION's SpecAugmentation after bn0, one set of stripes per clip (a fused clip's four views alike).
            let mask = PANNsEncoder.dropStripes([b, 1, t, f], generator: &Random.global)
            normed = try (normed.reshape([b, channels, t, f]) * mask).reshape([b * channels, 1, t, f])
        }
        // The reference interpolates only when shorter (its "avoid bicubic zero error"); bicubic with
        // align_corners maps F → F exactly, so only time changes.
        let stretched = t < c.specWidth ? try normed.interpolate(size: (c.specWidth, f), mode: .bicubic, alignCorners: true) : normed
        let r = c.freqRatio, chunk = c.specWidth / r
        return try stretched.reshape([b * channels, r, chunk, f]).transpose(2, 3).reshape([b, channels, r * f, chunk])
    }

    /// Which clips of fused features [B, 4, T, F] hold distinct local crops: a clip's crops differ from
    /// its global view only when it was longer than the clip length (a shorter one is its one mel four
    /// times, `CLAPAudio.fusedFeatures`), so the features themselves say what HF's `is_longer` says.
    public static func longerClips(_ features: Tensor) -> [Bool] {
        guard features.rank == 4, features.shape[1] == 4 else { return Array(repeating: false, count: features.rank > 0 ? features.shape[0] : 0) }
        let per = features.shape[2] * features.shape[3], x = features.toArray()
        return (0..<features.shape[0]).map { b in
            let base = b * 4 * per
            return (1..<4).contains { k in (0..<per).contains { x[base + k * per + $0] != x[base + $0] } }
        }
    }

    /// Final tokens [B, N, D] (after the last stage and the final norm), row-major over the last grid.
    /// Fused features [B, 4, T, F] fuse the local crops of the clips marked `longer` (nil: as
    /// `longerClips` reads them from the features).
    public func tokens(_ features: Tensor, longer: [Bool]?) throws -> Tensor {
        let marks = features.rank == 4 ? (longer ?? Self.longerClips(features)) : []
        guard marks.isEmpty || marks.count == features.shape[0] else {
            throw ModelError("HTSAT: \(marks.count) longer flags for a batch of \(features.shape[0])")
        }
        var h = try patchEmbed(image(features), longer: marks)
        for stage in layers { h = try stage(h) }
        return try norm(h)
    }

    public func tokens(_ features: Tensor) throws -> Tensor { try tokens(features, longer: nil) }

    /// The pooled audio feature [B, D] (HF `pooler_output`, LAION's `embedding`): the mean of the final tokens.
    public func embedding(_ features: Tensor) throws -> Tensor { try tokens(features).mean(axis: 1) }

    /// The pooled feature of fused features with the clips' `longer` flags given (HF's `is_longer`).
    public func embedding(_ features: Tensor, longer: [Bool]?) throws -> Tensor { try tokens(features, longer: longer).mean(axis: 1) }
}
