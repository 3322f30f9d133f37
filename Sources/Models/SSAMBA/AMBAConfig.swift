import Engine
import Foundation
import NN

/// Configuration of SSAMBA's audio Mamba encoder (SiavashShams/ssamba `AMBAModel` on Vim's
/// `VisionMamba`) and its classifier, as the released scripts set it: LayerNorm (not RMSNorm), no
/// fused add-norm, bimamba v2 mixers with `if_divide_out`, layers used in pairs (`if_bidirectional`),
/// one cls token at the front, learned absolute positions.
public struct AMBAConfig: CheckpointConfig, Sendable, Equatable {
    public static let configName = "AMBA"
    public enum Pooling: String, Codable, Sendable {
        /// Mean of the tokens after the cls token: the reference's `ft_avgtok` (every fine-tuning script).
        case meanTokens
        /// The cls token: `ft_cls`.
        case cls
    }

    /// Token width D (tiny 192, small 384, base 768).
    public var dim: Int
    /// Vim layers; they run in pairs (forward, then backward on the reversed sequence), so even.
    public var depth = 24
    /// Mamba's d_state, d_conv, expand and dt_rank (⌈D/16⌉ by default).
    public var stateSize = 16
    public var convKernel = 4
    public var expand = 2
    public var dtRank: Int
    public var labelDim: Int
    public var inputFdim = 128
    public var inputTdim = 1024
    public var fshape = 16, tshape = 16
    public var fstride = 16, tstride = 16
    /// LayerNorm eps of the layers and `norm_f` (Vim's `norm_epsilon`).
    public var eps: Float = 1e-5
    /// The head's LayerNorm eps (PyTorch's default).
    public var headEps: Float = 1e-5
    public var pooling: Pooling = .meanTokens
    /// Vim's `drop_path_rate`: layer i > 0 gets rate·(i−1)/(depth−1), layer 0 none, and the residual
    /// sum after the last layer the full rate.
    public var dropPath: Float = 0

    public init(dim: Int, depth: Int = 24, labelDim: Int) {
        self.dim = dim; self.depth = depth; self.labelDim = labelDim
        dtRank = (dim + 15) / 16
    }

    /// SSAMBA's sizes (the Vim tiny/small/base widths at depth 24).
    public static func named(_ size: String, labelDim: Int) -> AMBAConfig? {
        switch size {
        case "tiny": AMBAConfig(dim: 192, labelDim: labelDim)
        case "small": AMBAConfig(dim: 384, labelDim: labelDim)
        case "base": AMBAConfig(dim: 768, labelDim: labelDim)
        default: nil
        }
    }

    /// The named size whose width this config has, nil for any other width.
    public var sizeName: String? { ["tiny", "small", "base"].first { AMBAConfig.named($0, labelDim: 1)?.dim == dim } }

    /// A pretraining config: patch-based (16 x 16) or frame-based (bins x 2), stride = patch shape, as
    /// SSAST's variants (`SSAST.config`); mean-token pooling for the classifier it becomes.
    public static func pretraining(_ size: String, variant: SSAST.Variant, inputTdim: Int, inputFdim: Int = 128) -> AMBAConfig? {
        guard var c = named(size, labelDim: 1) else { return nil }
        (c.inputTdim, c.inputFdim) = (inputTdim, inputFdim)
        switch variant {
        case .patch: (c.fshape, c.tshape) = (16, 16)
        case .frame: (c.fshape, c.tshape) = (inputFdim, 2)
        }
        (c.fstride, c.tstride) = (c.fshape, c.tshape)
        return c
    }

    /// The variant a patch shape is (16 x 16 patches or whole-spectrum frames), nil for another shape.
    public var variant: SSAST.Variant? {
        if (fshape, tshape) == (16, 16) { return .patch }
        if (fshape, tshape) == (inputFdim, 2) { return .frame }
        return nil
    }

    public var mamba: MambaConfig { MambaConfig(dim: dim, stateSize: stateSize, convKernel: convKernel, expand: expand, dtRank: dtRank) }

    /// The patch grid as an AST config (same width, patch, strides and input): the grid arithmetic,
    /// and what SSAST's masking and targets are cut on. Its attention fields are placeholders.
    public var grid: ASTConfig {
        var c = ASTConfig(dim: dim, depth: depth, heads: 1, mlpHidden: dim, labelDim: labelDim)
        (c.inputFdim, c.inputTdim, c.fshape, c.tshape, c.fstride, c.tstride) = (inputFdim, inputTdim, fshape, tshape, fstride, tstride)
        c.pooling = .meanTokens
        return c
    }
    public var fGrid: Int { grid.fGrid }
    public var tGrid: Int { grid.tGrid }
    public var patches: Int { grid.patches }

    /// Drop-path rate of layer `i` (Vim: `inter_dpr = [0] + linspace(0, rate, depth)`, layer i takes
    /// `inter_dpr[i]`).
    public func layerDropPath(_ i: Int) -> Float {
        i == 0 || depth < 2 ? 0 : dropPath * Float(i - 1) / Float(depth - 1)
    }

    /// Throws, naming the field, when the shapes cannot make a model.
    public func validate() throws {
        func need(_ ok: Bool, _ what: String) throws { if !ok { throw ModelError("model config: \(what)") } }
        try need(dim > 0, "width \(dim) must be positive")
        try need(depth >= 2 && depth % 2 == 0, "depth \(depth) must be even and at least 2 (SSAMBA runs its layers in pairs)")
        try need(stateSize >= 1 && convKernel >= 1 && expand >= 1 && dtRank >= 1,
                 "Mamba sizes d_state \(stateSize), d_conv \(convKernel), expand \(expand), dt_rank \(dtRank) must be positive")
        try need(labelDim >= 1, "\(labelDim) outputs (at least 1)")
        try need(dropPath >= 0 && dropPath < 1, "drop path \(dropPath) must be in [0, 1)")
        try need(fshape > 0 && tshape > 0 && fstride > 0 && tstride > 0, "patch \(fshape)x\(tshape) and strides \(fstride)x\(tstride) must be positive")
        try need(inputFdim >= fshape, "\(inputFdim) mel bins are fewer than the patch height \(fshape)")
        try need(inputTdim >= tshape, "clips of \(inputTdim) frames are shorter than the patch width \(tshape) (target length)")
        if let what = ConfigLimits.oversized([("the positional table", [fGrid, tGrid, dim]), ("the mixer", [dim, expand, 2, dim]),
                                              ("the blocks' projections", [depth, 3, dim, expand, dim]), ("the blocks' states", [depth, 2, dim, expand, stateSize]),
                                              ("the blocks' step sizes", [depth, dim, expand, dtRank]),
                                              ("the state", [dim, expand, stateSize]), ("the patch embedding", [dim, fshape, tshape]),
                                              ("the head", [dim, labelDim])]) {
            throw ModelError("model config: \(what)")
        }
    }


}
