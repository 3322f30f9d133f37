import Engine
import Foundation

/// HTSAT (Chen et al., 2022), the Swin-transformer audio tower of LAION-CLAP, as Hugging Face
/// `ClapAudioConfig` describes it. Defaults are HTSAT-tiny, LAION-CLAP's default audio encoder.
///
/// Shapes: features [B, T, F] with F = `melBins` and T ≤ `specWidth` = spec·r (r = `freqRatio` =
/// spec / F) are folded into a spec × spec image, cut into patches (grid spec / stride), and run
/// through `depths.count` stages of Swin blocks; stage i has width `patchDim`·2ⁱ and grid
/// (spec / stride) / 2ⁱ, so the final width is `patchDim`·2^(stages−1) (768 for tiny).
public struct HTSATConfig: Codable, Sendable, Equatable {
    /// Mel bins per frame (64 in every released CLAP).
    public var melBins = 64
    /// Side of the square image the spectrogram is folded into (256).
    public var specSize = 256
    public var patchSize = 4
    public var patchStride = [4, 4]
    /// Width of the patch embedding, stage 1's token width (96 tiny, 128 base, 256 large).
    public var patchDim = 96
    public var depths = [2, 2, 6, 2]
    public var heads = [4, 8, 16, 32]
    /// Side of the square attention window, in tokens.
    public var window = 8
    public var mlpRatio: Float = 4
    public var qkvBias = true
    /// LayerNorm after the patch embedding (`enable_patch_layer_norm`).
    public var patchNorm = true
    /// Eps of the blocks' LayerNorms (the patch, merging and final norms use PyTorch's 1e-5).
    public var layerNormEps: Float = 1e-5
    /// Stochastic depth, rising linearly over all blocks from 0 to this (training only).
    public var dropPath: Float = 0
    /// Frames the encoder is given per clip (10 s at 48 kHz, hop 480: 1001); anything up to
    /// `specWidth` is accepted and stretched to it.
    public var frames = 1001
    /// Feature fusion for long audio (`enable_fusion`, the AFF 2-d block): the input is a global view
    /// and three local crops [B, 4, T, F] (`CLAPAudio.fusedFeatures`), the crops fused into the global
    /// patch embedding by `mel_conv2d` and attentional feature fusion.
    public var fusion = false
    /// AFF's channel reduction (`aff_block_r`).
    public var affRatio = 4
    /// LAION's SpecAugmentation in training (2 time stripes up to 64 frames, 2 frequency stripes up to 8
    /// bins, zeroed after bn0; `htsat.py`'s `spec_augmenter`). Hugging Face's port leaves it out; absent from
    /// configs written before it existed (true).
    public var specAugment = true

    public init() {}

    enum CodingKeys: String, CodingKey {
        case melBins, specSize, patchSize, patchStride, patchDim, depths, heads, window, mlpRatio, qkvBias, patchNorm, layerNormEps
        case dropPath, frames, fusion, affRatio, specAugment
    }

    /// Configs written before fusion existed (no `fusion`, `affRatio`) read as unfused.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        melBins = try c.decode(Int.self, forKey: .melBins); specSize = try c.decode(Int.self, forKey: .specSize)
        patchSize = try c.decode(Int.self, forKey: .patchSize); patchStride = try c.decode([Int].self, forKey: .patchStride)
        patchDim = try c.decode(Int.self, forKey: .patchDim); depths = try c.decode([Int].self, forKey: .depths)
        heads = try c.decode([Int].self, forKey: .heads); window = try c.decode(Int.self, forKey: .window)
        mlpRatio = try c.decode(Float.self, forKey: .mlpRatio); qkvBias = try c.decode(Bool.self, forKey: .qkvBias)
        patchNorm = try c.decode(Bool.self, forKey: .patchNorm); layerNormEps = try c.decode(Float.self, forKey: .layerNormEps)
        dropPath = try c.decode(Float.self, forKey: .dropPath); frames = try c.decode(Int.self, forKey: .frames)
        fusion = try c.decodeIfPresent(Bool.self, forKey: .fusion) ?? false
        affRatio = try c.decodeIfPresent(Int.self, forKey: .affRatio) ?? 4
        specAugment = try c.decodeIfPresent(Bool.self, forKey: .specAugment) ?? true
    }

    /// spec / melBins: how many time chunks are stacked along frequency (4).
    public var freqRatio: Int { specSize / melBins }
    /// Frames the folded image holds (1024): shorter inputs are stretched to it (bicubic).
    public var specWidth: Int { specSize * freqRatio }
    /// Patch grid of stage 1 (rows = stacked frequency, columns = time): (64, 64) for spec 256.
    public var grid: (rows: Int, cols: Int) { (specSize / patchStride[0], specSize / patchStride[1]) }
    /// Token width after the last stage (`hidden_size` in the HF config).
    public var width: Int { patchDim << (depths.count - 1) }
    /// Hidden width of the blocks' MLP at stage width `dim` (`int(mlp_ratio · dim)`).
    public func mlpHidden(_ dim: Int) -> Int { Int(mlpRatio * Float(dim)) }

    /// Throws, naming the field, for shapes the model cannot run: the reference pads grids that do not
    /// divide into windows or pairs, which is not modelled here (no released HTSAT needs it), and a
    /// grid smaller than the window would not match the relative-position table (the reference fails too).
    public func validate() throws {
        func need(_ ok: Bool, _ what: String) throws { if !ok { throw ModelError("HTSAT config: \(what)") } }
        try need(melBins > 0 && specSize > 0 && specSize % melBins == 0, "spec_size \(specSize) is not a multiple of num_mel_bins \(melBins)")
        try need(patchStride.count == 2 && patchSize > 0 && patchStride.allSatisfy { $0 > 0 }, "patch \(patchSize) / stride \(patchStride)")
        try need((patchSize - patchStride[0]) % 2 == 0 && (patchSize - patchStride[1]) % 2 == 0 && patchSize >= patchStride.max()!,
                 "patch \(patchSize) with stride \(patchStride) (symmetric padding (patch − stride)/2 needed)")
        try need(specSize % patchStride[0] == 0 && specSize % patchStride[1] == 0, "spec_size \(specSize) is not a multiple of the patch stride \(patchStride)")
        try need(!depths.isEmpty && depths.count == heads.count && depths.allSatisfy { $0 >= 1 },
                 "depths \(depths) and heads \(heads) must be non-empty, of one length, every depth ≥ 1")
        try need(patchDim > 0 && window > 0 && mlpRatio > 0, "patch width \(patchDim), window \(window), mlp ratio \(mlpRatio)")
        for (i, h) in heads.enumerated() {
            let dim = patchDim << i
            try need(h > 0 && dim % h == 0, "stage \(i) width \(dim) does not split into \(h) heads")
            let (r, c) = (grid.rows >> i, grid.cols >> i)
            try need(r << i == grid.rows && c << i == grid.cols, "stage \(i): the patch grid \(grid) does not halve \(i) times")
            try need(min(r, c) >= window && r % window == 0 && c % window == 0,
                     "stage \(i): a \(r)x\(c) grid does not divide into \(window)x\(window) windows (padding is not modelled)")
        }
        try need(frames >= 1 && frames <= specWidth, "\(frames) frames per clip, more than the \(specWidth) the image holds")
        if let what = ConfigLimits.oversized([("the patch grid", [specSize, specSize, patchDim]),
                                              // The total depth saturates: a wrapped sum could pass as small.
                                              ("the blocks", [depths.reduce(0) { let (s, o) = $0.addingReportingOverflow(max($1, 0)); return o ? .max : s },
                                                              12, width, width]), ("the last stage's MLP", [width, width, Int(min(mlpRatio, 1e9).rounded(.up))])]) {
            throw ModelError("HTSAT config: \(what)")
        }
        if fusion {
            try need(affRatio > 0 && patchDim / affRatio >= 1, "aff_block_r \(affRatio) leaves no channels of \(patchDim)")
            // mel_conv2d: kernel patch × 3·patch, stride × 3 in time; three crops side by side must fit the grid.
            let pad = (patchSize - patchStride[1]) / 2
            let localCols = (specSize + 2 * pad - 3 * patchSize) / (3 * patchStride[1]) + 1
            try need(specSize + 2 * pad >= 3 * patchSize && 3 * localCols <= grid.cols,
                     "fusion: three local crops of \(localCols) patch columns do not fit the \(grid.cols) of the grid")
        }
    }

    /// The config as compact, key-sorted JSON (checkpoint metadata).
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(data: (try? encoder.encode(self)) ?? Data(), encoding: .utf8) ?? "{}"
    }

    /// HTSAT-tiny (LAION-CLAP's default: 630k-audioset-best.pt, laion/clap-htsat-unfused).
    public static let tiny = HTSATConfig()
    /// HTSAT-base (the music/speech checkpoints, laion/larger_clap_*).
    public static var base: HTSATConfig { var c = HTSATConfig(); c.patchDim = 128; c.depths = [2, 2, 12, 2]; return c }

    /// A Hugging Face `ClapAudioConfig` (a ClapModel's `audio_config`, or an audio model's config.json).
    /// Fusion (`enable_fusion`) is the AFF 2-d block (`fusion_type` none or aff_2d; channel_map and the 1-d
    /// types are refused).
    public static func fromHuggingFace(_ json: [String: Any]) throws -> HTSATConfig {
        func int(_ key: String, _ fallback: Int) throws -> Int {
            guard let v = json[key] else { return fallback }
            guard let n = v as? NSNumber else { throw ModelError("audio_config.\(key) is not a number") }
            return n.intValue
        }
        func ints(_ key: String, _ fallback: [Int]) throws -> [Int] {
            guard let v = json[key] else { return fallback }
            if let n = v as? NSNumber { return [n.intValue, n.intValue] }
            guard let a = v as? [NSNumber] else { throw ModelError("audio_config.\(key) is not a list of numbers") }
            return a.map(\.intValue)
        }
        let fusion = json["enable_fusion"] as? Bool ?? false
        if fusion, let type = json["fusion_type"] as? String, type != "aff_2d" {
            throw ModelError("audio_config.fusion_type \(type) is not supported (aff_2d, the fused checkpoints' AFF block, is)")
        }
        if let act = json["hidden_act"] as? String, act != "gelu" { throw ModelError("audio_config.hidden_act \(act) is not supported (gelu is)") }
        if let c = json["patch_embed_input_channels"] as? NSNumber, c.intValue != 1 { throw ModelError("audio_config.patch_embed_input_channels \(c) (1 expected)") }
        if json["flatten_patch_embeds"] as? Bool == false { throw ModelError("audio_config.flatten_patch_embeds false is not supported") }
        var c = HTSATConfig()
        c.melBins = try int("num_mel_bins", 64)
        c.specSize = try int("spec_size", 256)
        c.patchSize = try int("patch_size", 4)
        c.patchStride = try ints("patch_stride", [4, 4])
        c.patchDim = try int("patch_embeds_hidden_size", 96)
        c.depths = try ints("depths", [2, 2, 6, 2])
        c.heads = try ints("num_attention_heads", [4, 8, 16, 32])
        c.window = try int("window_size", 8)
        c.mlpRatio = (json["mlp_ratio"] as? NSNumber)?.floatValue ?? 4
        c.qkvBias = json["qkv_bias"] as? Bool ?? true
        c.patchNorm = json["enable_patch_layer_norm"] as? Bool ?? true
        c.layerNormEps = (json["layer_norm_eps"] as? NSNumber)?.floatValue ?? 1e-5
        c.dropPath = (json["drop_path_rate"] as? NSNumber)?.floatValue ?? 0
        c.frames = min(c.specWidth, 1001)
        c.fusion = fusion
        c.affRatio = try int("aff_block_r", 4)
        try c.validate()
        if let hidden = json["hidden_size"] as? NSNumber, hidden.intValue != c.width {
            throw ModelError("audio_config.hidden_size \(hidden) is not the encoder's output width \(c.width) (patch_embeds_hidden_size · 2^(stages − 1))")
        }
        return c
    }
}
