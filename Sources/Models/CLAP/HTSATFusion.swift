import Engine
import NN

/// Attentional feature fusion (AFF, Dai et al. 2021; LAION-CLAP's `AFF` with `fusion_type` aff_2d, HF
/// `ClapAudioAFFBlock`) of fused HTSAT's patch embedding: the global patches x and the local ones y,
/// both [B, C, H, W]:
///   s = x + y,
///   L(s) = BN(conv₁ₓ₁(ReLU(BN(conv₁ₓ₁(s)))))                 (C → C/r → C, per position),
///   G(s) = the same on the mean of s over H and W          ([B, C, 1, 1], broadcast),
///   w = σ(L(s) + G(s)),   out = 2·x·w + 2·y·(1 − w).
/// Keys as the reference's Sequentials: `local_att.{0,1,3,4}`, `global_att.{1,2,4,5}` (index 0 of
/// `global_att` is the average pool, the ReLUs have no weights).
public final class AttentionalFeatureFusion: Module {
    @Child public private(set) var localConv1: Conv2d
    public let localNorm1: BatchNorm
    @Child public private(set) var localConv2: Conv2d
    public let localNorm2: BatchNorm
    @Child public private(set) var globalConv1: Conv2d
    public let globalNorm1: BatchNorm
    @Child public private(set) var globalConv2: Conv2d
    public let globalNorm2: BatchNorm

    override public var keyOverrides: [String: String] {
        ["localConv1": "local_att.0", "localNorm1": "local_att.1", "localConv2": "local_att.3", "localNorm2": "local_att.4",
         "globalConv1": "global_att.1", "globalNorm1": "global_att.2", "globalConv2": "global_att.4", "globalNorm2": "global_att.5"]
    }

    /// `channels` C, reduction `ratio` r (HF `aff_block_r`, 4): inner width ⌊C / r⌋.
    public init(channels: Int, ratio: Int) {
        let inner = channels / ratio
        localConv1 = Conv2d(channels, inner, kernel: (1, 1)); localNorm1 = BatchNorm(inner)
        localConv2 = Conv2d(inner, channels, kernel: (1, 1)); localNorm2 = BatchNorm(channels)
        globalConv1 = Conv2d(channels, inner, kernel: (1, 1)); globalNorm1 = BatchNorm(inner)
        globalConv2 = Conv2d(inner, channels, kernel: (1, 1)); globalNorm2 = BatchNorm(channels)
    }

    public func callAsFunction(_ x: Tensor, residual y: Tensor) throws -> Tensor {
        let s = try x + y
        let local = try localNorm2(localConv2(localNorm1(localConv1(s)).relu()))
        let pooled = try s.mean(axes: [2, 3], keepDim: true)
        let global = try globalNorm2(globalConv2(globalNorm1(globalConv1(pooled)).relu()))
        let w = try (local + global).sigmoid()
        return try (x * w) * 2 + (y * (1 - w)) * 2
    }
}

extension HTSATPatchEmbed {
    /// Fused patch embedding of images [B, 4, spec, spec] (channel 0 the global view, 1–3 the local
    /// crops): every clip's global patches proj(image₀) [B, D, gh, gw]; for the clips marked `longer`,
    /// each local crop through `mel_conv2d` (kernel and stride three times wider in time: patch ×
    /// 3·patch) gives [D, gh, w], the three laid side by side in time ([D, gh, 3w], zero-padded to gw)
    /// and fused into the global patches by AFF. Clips not marked keep their global patches (the
    /// reference's: its eval path with no long clip, HF with `is_longer` false).
    func fused(_ image: Tensor, longer: [Bool]) throws -> Tensor {
        guard let melConv2d, let fusionModel else { throw ModelError("HTSAT: a fused input to an unfused model") }
        let b = image.shape[0]
        let global = try proj(image.slice(axis: 1, start: 0, end: 1))   // [B, D, gh, gw]
        let idx = (0..<b).filter { longer[$0] }
        guard !idx.isEmpty else { return global }
        let (d, gh, gw) = (global.shape[1], global.shape[2], global.shape[3])
        let crops = try image.indexSelect(axis: 0, indices: idx).slice(axis: 1, start: 1, end: 4)   // [B', 3, S, S]
        let (n, side) = (idx.count, image.shape[2])
        let conv = try melConv2d(crops.reshape([n * 3, 1, side, image.shape[3]]))   // [B'·3, D, h, w]
        let (h, w) = (conv.shape[2], conv.shape[3])
        guard h == gh, 3 * w <= gw else { throw ModelError("HTSAT fusion: local patches [\(h), 3·\(w)] do not fit the global grid [\(gh), \(gw)]") }
        var local = try conv.reshape([n, 3, d, h, w]).permute([0, 2, 3, 1, 4]).reshape([n, d, h, 3 * w])
        if 3 * w < gw { local = try local.pad([(0, 0), (0, 0), (0, 0), (0, gw - 3 * w)]) }
        let fusedRows = try fusionModel(global.indexSelect(axis: 0, indices: idx), residual: local)
        var k = 0
        return try Tensor.concat((0..<b).map { i in
            if longer[i] { defer { k += 1 }; return try fusedRows.slice(axis: 0, start: k, end: k + 1) }
            return try global.slice(axis: 0, start: i, end: i + 1)
        }, axis: 0)
    }
}
