import Foundation
import Engine

/// Depthwise causal convolution over token-major x [B, L, C]: Mamba's `nn.Conv1d(C, C, k, groups=C,
/// padding=k−1)` cut to the first L outputs, with the same keys (`weight` [C, 1, k], `bias` [C]) and
/// PyTorch's default initialisation (fan-in k: U(±1/√k) for both). `reverse` convolves the reversed
/// sequence in place (see `Tensor.causalDepthwiseConv1d`).
public final class CausalConv1d: Module {
    public let weight: Tensor
    public let bias: Tensor?

    public init(channels: Int, kernel: Int, bias: Bool = true) {
        weight = Init.torchDefault([channels, 1, kernel], fanIn: kernel).requiringGrad()
        self.bias = bias ? Init.torchDefault([channels], fanIn: kernel).requiringGrad() : nil
    }

    /// With `silu`, SiLU of the convolution in the same pass (as the mixer uses it); `context` (inference)
    /// is the k − 1 inputs before a piece in scan order (`Tensor.causalDepthwiseConv1d`).
    public func callAsFunction(_ x: Tensor, reverse: Bool = false, silu: Bool = false, context: Tensor? = nil) throws -> Tensor {
        try x.causalDepthwiseConv1d(weight: weight, bias: bias, reverse: reverse, silu: silu, context: context)
    }
}

/// Sizes of a Mamba mixer (mamba_ssm's `Mamba` defaults: d_state 16, d_conv 4, expand 2,
/// dt_rank ⌈d_model/16⌉).
public struct MambaConfig: Sendable, Equatable {
    public var dim: Int, stateSize: Int, convKernel: Int, expand: Int, dtRank: Int
    public init(dim: Int, stateSize: Int = 16, convKernel: Int = 4, expand: Int = 2, dtRank: Int? = nil) {
        self.dim = dim; self.stateSize = stateSize; self.convKernel = convKernel; self.expand = expand
        self.dtRank = dtRank ?? (dim + 15) / 16
    }
    public var inner: Int { expand * dim }
}

/// The Mamba mixer as Vision Mamba (Vim, hustvl) modifies it and SSAMBA uses it: "bimamba v2" with
/// `if_devide_out`. For u [B, L, D], with d_inner = expand·D:
///
///     [x, z] = in_proj(u)                                   (no bias; x and z are [B, L, d_inner])
///     per branch:  x' = SiLU(causal depthwise conv_k(x))
///                  [dt, B, C] = x_proj(x')                  (no bias; dt_rank, N, N)
///                  y = selective_scan(x', dt_proj.W·dt, A = −exp(A_log), B, C, D, z,
///                                     delta_bias = dt_proj.b, softplus)
///     out = out_proj((y_f + flip(y_b)) / 2)                 (no bias)
///
/// The backward branch (`conv1d_b`, `x_proj_b`, `dt_proj_b`, `A_b_log`, `D_b`) runs on the flipped
/// sequence, gated by the flipped z; here it reads the sequence in place through the reverse conv and
/// scan kernels, which write every output at its own token, so no flip is ever copied.
/// `bidirectional: false` gives the plain (unidirectional) Mamba mixer with the same keys minus `_b`.
///
/// Initialisation follows Vim's code: PyTorch defaults for the projections and convs; dt_proj weight
/// U(±dt_rank^−½) and bias softplus⁻¹(dt), dt ~ LogUniform[1e-3, 0.1] floored at 1e-4; A_log =
/// log(1…N) per channel (S4D-real) and D = 1 for both branches; out_proj weight divided by
/// √`layers` (Vim's `_init_weights`, n_residuals_per_layer 1). That same `_init_weights` zeroes every
/// Linear bias not marked `_no_reinit`, and only `dt_proj.bias` is marked, so `dt_proj_b.bias` starts
/// at 0 (Δ_b = softplus(W·dt) ≈ 0.69 at first): this follows the code, not a stated intent.
open class MambaMixer: Module, UnaryLayer {
    public let config: MambaConfig
    @Child public private(set) var inProj: Linear
    @Child public private(set) var conv1d: CausalConv1d
    @Child public private(set) var xProj: Linear
    @Child public private(set) var dtProj: Linear
    public let aLog: Tensor
    public let d: Tensor
    @Child public private(set) var conv1dB: CausalConv1d?
    @Child public private(set) var xProjB: Linear?
    @Child public private(set) var dtProjB: Linear?
    public let aBLog: Tensor?
    public let dB: Tensor?
    @Child public private(set) var outProj: Linear

    override open var keyOverrides: [String: String] { ["aLog": "A_log", "d": "D", "aBLog": "A_b_log", "dB": "D_b"] }

    public init(_ config: MambaConfig, bidirectional: Bool = true, layers: Int = 1) {
        self.config = config
        let (dim, inner, n, rank) = (config.dim, config.inner, config.stateSize, config.dtRank)
        inProj = Linear(dim, 2 * inner, bias: false)
        func dtProjection(vimDefault: Bool) -> Linear {
            let bound = 1 / Float(rank).squareRoot()
            let weight = Tensor.uniform([inner, rank], low: -bound, high: bound).requiringGrad()
            let bias = Tensor.zeros([inner]).requiringGrad()
            if vimDefault {
                let dt = Tensor.uniform([inner])
                let (lo, hi) = (Foundation.log(Float(1e-3)), Foundation.log(Float(0.1)))
                for i in 0..<inner {
                    let v = Swift.max(Foundation.exp(dt.data[i] * (hi - lo) + lo), 1e-4)
                    bias.data[i] = v + Foundation.log(-Foundation.expm1(-v))  // softplus⁻¹
                }
            }
            return Linear(weight: weight, bias: bias)
        }
        func aLogInit() -> Tensor {
            let t = Tensor.empty([inner, n])
            for c in 0..<inner { for k in 0..<n { t.data[c * n + k] = Foundation.log(Float(k + 1)) } }
            return t.requiringGrad()
        }
        conv1d = CausalConv1d(channels: inner, kernel: config.convKernel)
        xProj = Linear(inner, rank + 2 * n, bias: false)
        dtProj = dtProjection(vimDefault: true)
        aLog = aLogInit()
        d = Tensor.ones([inner]).requiringGrad()
        if bidirectional {
            conv1dB = CausalConv1d(channels: inner, kernel: config.convKernel)
            xProjB = Linear(inner, rank + 2 * n, bias: false)
            dtProjB = dtProjection(vimDefault: false)
            aBLog = aLogInit()
            dB = Tensor.ones([inner]).requiringGrad()
        } else {
            conv1dB = nil; xProjB = nil; dtProjB = nil; aBLog = nil; dB = nil
        }
        outProj = Linear(inner, dim, bias: false)
        super.init()
        if layers > 1 && !Random.initialisationSkipped {
            let w = outProj.weight, s = 1 / Float(layers).squareRoot()
            for i in 0..<w.count { w.data[i] *= s }
        }
    }

    public var isBidirectional: Bool { conv1dB != nil }

    /// Without autograd, a stock mixer (`streams`) runs a sequence longer than `piecesAbove` tokens in
    /// pieces of `pieceTokens` (`mixStreaming`), computing in_proj and out_proj once per token and
    /// holding two [B, L, d_inner] tensors instead of the whole-sequence path's five. Variables so tests
    /// and `earshot bench encoder --piece-tokens` can set them; the defaults are measured in
    /// docs/BENCHMARKS.md (Session 17).
    nonisolated(unsafe) public static var pieceTokens = 1024
    nonisolated(unsafe) public static var piecesAbove = 0

    /// Whether inference may run in pieces: both projections stock bias-free `Linear`s as Vim builds
    /// them (an adapter or LoRA in their place runs as itself on the whole sequence).
    var streams: Bool {
        type(of: inProj) == Linear.self && type(of: outProj) == Linear.self && outProj.bias == nil
    }

    /// u [B, L, D] → [B, L, D].
    open func callAsFunction(_ u: Tensor) throws -> Tensor { try mix(u, flipped: false) }

    /// With `flipped`, flip(mixer(flip(u))) without a flip: every branch scans the other way. What the
    /// second layer of each Vim layer pair computes (see `VimBlock`).
    public func callAsFunction(_ u: Tensor, flipped: Bool) throws -> Tensor {
        flipped ? try mix(u, flipped: true) : try callAsFunction(u)
    }

    func mix(_ u: Tensor, flipped: Bool) throws -> Tensor {
        try check(u.rank == 3 && u.shape[2] == config.dim, "MambaMixer: input must be [B, L, \(config.dim)], got \(u.shape)")
        let inner = config.inner
        if !GradMode.isEnabled && u.shape[1] > MambaMixer.piecesAbove && streams {
            return try mixStreaming(u, norm: nil, flipped: flipped, addingTo: nil)
        }
        // A stock in_proj runs as two products on its weight's halves: x and z come out contiguous,
        // where slicing one [B, L, 2·d_inner] output copies both (the halves are small weight copies).
        // A replaced or subclassed layer (an adapter) runs as itself.
        let x: Tensor, z: Tensor
        if type(of: inProj) == Linear.self {
            let w = inProj.weight
            x = try u.linear(weight: w.slice(axis: 0, start: 0, end: inner), bias: inProj.bias?.slice(axis: 0, start: 0, end: inner))
            z = try u.linear(weight: w.slice(axis: 0, start: inner), bias: inProj.bias?.slice(axis: 0, start: inner))
        } else {
            let xz = try inProj(u)
            (x, z) = (try xz.slice(axis: 2, start: 0, end: inner), try xz.slice(axis: 2, start: inner))
        }
        let forward = try scan(x, z: z, conv: conv1d, xProj: xProj, dtProj: dtProj, aLog: aLog, d: d, reverse: flipped,
                               branch: "forward branch (conv1d, x_proj, dt_proj, A_log, D)")
        guard let conv1dB, let xProjB, let dtProjB, let aBLog, let dB else { return try outProj(forward) }
        // Without autograd the backward branch's scan adds into the forward's output (y_f + y_b in
        // place): two [B, L, d_inner] tensors fewer at the peak of a long sequence.
        let inPlace = !GradMode.isEnabled
        let backward = try scan(x, z: z, conv: conv1dB, xProj: xProjB, dtProj: dtProjB, aLog: aBLog, d: dB, reverse: !flipped,
                                branch: "backward branch (conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b)", addingTo: inPlace ? forward : nil)
        let sum = inPlace ? backward : try forward + backward
        // if_divide_out's halving folded into a stock out_proj's (small, bias-free) weight rather than
        // a pass over [B, L, d_inner].
        if type(of: outProj) == Linear.self && outProj.bias == nil {
            return try sum.linear(weight: outProj.weight * 0.5, bias: nil)
        }
        return try outProj(sum * 0.5)
    }

    /// One branch: conv, SiLU, x_proj, dt_proj and the gated selective scan, in token order. A scan
    /// error (a non-finite input, an overflowed state) gets the branch's keys in front of it, so a bad
    /// checkpoint tensor can be found.
    func scan(_ x: Tensor, z: Tensor, conv: CausalConv1d, xProj: Linear, dtProj: Linear, aLog: Tensor, d: Tensor,
              reverse: Bool, branch: String, addingTo sum: Tensor? = nil) throws -> Tensor {
        do {
            return try scanBranch(x, z: z, conv: conv, xProj: xProj, dtProj: dtProj, aLog: aLog, d: d, reverse: reverse, addingTo: sum)
        } catch let error as EngineError where error.message.hasPrefix("selectiveScan:") {
            throw NNError("MambaMixer \(branch): \(error.message)")
        }
    }

    func scanBranch(_ x: Tensor, z: Tensor, conv: CausalConv1d, xProj: Linear, dtProj: Linear, aLog: Tensor, d: Tensor,
                    reverse: Bool, addingTo sum: Tensor? = nil) throws -> Tensor {
        let (n, rank) = (config.stateSize, config.dtRank)
        let xc = try conv(x, reverse: reverse, silu: true)
        let xdbl = try xProj(xc)
        let dt = try xdbl.slice(axis: 2, start: 0, end: rank)
        let b = try xdbl.slice(axis: 2, start: rank, end: rank + n), c = try xdbl.slice(axis: 2, start: rank + n)
        // dt_proj's bias goes to the scan, which adds it and applies softplus in the same pass.
        let delta = try dt.linear(weight: dtProj.weight, bias: nil)
        return try Tensor.selectiveScan(xc, delta: delta, a: aLog.exp() * -1, b: b, c: c, d: d, z: z,
                                        deltaBias: dtProj.bias, deltaSoftplus: true, reverse: reverse, addingTo: sum)
    }
}

/// Vim's `Block` as SSAMBA configures it (plain LayerNorm, eps 1e-5, no fused add-norm): a pre-norm
/// layer that carries the residual stream next to the hidden state,
///
///     residual = residual + DropPath(hidden)      (residual = hidden in the first layer)
///     hidden   = mixer(norm(residual))
///
/// Keys `norm.*` and `mixer.*`. With `flipped`, the layer computes flip(layer(flip(h), flip(r))) in
/// place: norm, DropPath (one draw per sample) and the residual sum act per token, so only the mixer's
/// scan directions change. Vim's outer bidirectionality (layers 2i and 2i+1 on the sequence and on its
/// reverse, outputs summed) then needs no flip copies.
open class VimBlock: Module {
    @Child public private(set) var norm: LayerNorm
    @Child public private(set) var mixer: MambaMixer
    @Child public private(set) var dropPath: DropPath

    public init(_ config: MambaConfig, layers: Int = 1, eps: Float = 1e-5, dropPath p: Float = 0) {
        norm = LayerNorm(config.dim, eps: eps)
        mixer = MambaMixer(config, layers: layers)
        dropPath = DropPath(p)
    }

    /// A block holding `other`'s children themselves (same tensors, same keys), for wrappers that
    /// subclass it (`AdaptedVimBlock`).
    public init(sharing other: VimBlock) {
        norm = other.norm
        mixer = other.mixer
        dropPath = other.dropPath
    }

    open func callAsFunction(_ hidden: Tensor, residual: Tensor?, flipped: Bool = false) throws -> (hidden: Tensor, residual: Tensor) {
        let r = try residual.map { try $0 + dropPath(hidden) } ?? hidden
        return (try mixer(norm(r), flipped: flipped), r)
    }
}
