import Engine
import NN

/// SSAMBA's encoder (Vim's `VisionMamba` inside `AMBAModel`), keyed as the reference's `v.*`:
/// `patch_embed.proj`, `cls_token` [1, 1, D], `pos_embed` [1, 1 + N, D], `layers.{i}` (Vim blocks),
/// `norm_f`. For patch tokens p [B, N, D]:
///
///     h = [cls, p] + pos;  r = nil
///     for each pair i:  (h_f, r_f) = L[2i](h, r)
///                       (h_b, r_b) = flip(L[2i+1](flip h, flip r))
///                       h = h_f + h_b;  r = r_f + r_b
///     tokens = norm_f(norm_f(r + DropPath(h)))
///
/// `norm_f` twice because every AMBAModel forward applies it once more to VisionMamba's output.
/// The second layer of a pair runs in place on the reversed order (`VimBlock(flipped:)`), so no
/// sequence is ever copied reversed.
public final class AMBAEncoder: Module, PatchEncoder {
    public let clsToken: Tensor
    public let posEmbed: Tensor
    @Child public private(set) var patchEmbed: PatchEmbed
    @Child public private(set) var layers: [VimBlock]
    @Child public private(set) var normF: LayerNorm
    /// The drop path on the last hidden state before the final residual sum (Vim's `self.drop_path`).
    @Child public private(set) var dropPath: DropPath
    public let config: AMBAConfig

    public init(_ c: AMBAConfig) {
        config = c
        clsToken = Init.truncatedNormal([1, 1, c.dim], std: 0.02).requiringGrad()
        posEmbed = Init.truncatedNormal([1, c.patches + 1, c.dim], std: 0.02).requiringGrad()
        // SSAMBA replaces Vim's patch conv with a fresh nn.Conv2d: PyTorch's default initialisation.
        patchEmbed = PatchEmbed(channels: 1, dim: c.dim, patch: (c.fshape, c.tshape), stride: (c.fstride, c.tstride))
        layers = (0..<c.depth).map { VimBlock(c.mamba, layers: c.depth, eps: c.eps, dropPath: c.layerDropPath($0)) }
        normF = LayerNorm(c.dim, eps: c.eps)
        dropPath = DropPath(c.dropPath)
    }

    public var width: Int { config.dim }
    public var prefixTokens: Int { 1 }
    public var inputFrames: Int { config.inputTdim }
    public var inputBins: Int { config.inputFdim }

    /// Tokens of features [B, T, F]. T may differ from `inputFrames` (a Mamba has no window): the
    /// positions are then interpolated along time to the clip's patch columns, as fine-tuning starts
    /// adapt them (`ASTCheckpoint.adaptPositionalEmbedding`; a shorter grid takes the middle columns).
    /// That is an inference path: while autograd records, another length is refused, because the
    /// adapted positions are a copy that `pos_embed` would get no gradient through.
    public func tokens(_ features: Tensor) throws -> Tensor {
        guard features.rank == 3, features.shape[2] == inputBins, features.shape[1] >= config.tshape else {
            throw ModelError("AMBA: expected features [B, T, \(inputBins)] with T ≥ \(config.tshape) frames (one patch; "
                             + "\(inputFrames) in training), got \(features.shape)")
        }
        let frames = features.shape[1]
        if frames == inputFrames { return try transform(patchTokens(features)) }
        if GradMode.isEnabled && posEmbed.requiresGrad {
            throw ModelError("AMBA: features of \(frames) frames while training; the model trains on \(inputFrames) "
                             + "(other lengths interpolate pos_embed, which is inference only)")
        }
        return try transform(patchTokens(features), positions: positions(frames: frames))
    }

    /// Patch columns of a clip of `frames` frames (the time axis of the patch grid).
    public func timeGrid(frames: Int) -> Int { (frames - config.tshape) / config.tstride + 1 }

    /// `pos_embed` for a clip of `frames` frames: [1, 1 + fGrid·t, D] with t its patch columns, the
    /// trained positions where t is the trained grid's, else interpolated (bilinear, along time only).
    public func positions(frames: Int) throws -> Tensor {
        let t = timeGrid(frames: frames)
        if t == config.tGrid { return posEmbed }
        return try ASTCheckpoint.adaptPositionalEmbedding(posEmbed, from: (config.fGrid, config.tGrid),
                                                         to: (config.fGrid, t), prefixTokens: 1)
    }

    /// Patch tokens [B, N, D] of features [B, T, F] (input transposed to [B, 1, F, T] as in SSAST).
    public func patchTokens(_ x: Tensor) throws -> Tensor {
        try patchEmbed(x.unsqueeze(1).transpose(2, 3))
    }

    /// cls + patches + positions, the layer pairs, the final residual sum and `norm_f` twice:
    /// [B, 1 + N, D]. N must be the positions' count (`config.patches` for `pos_embed` itself); a
    /// longer sequence is refused with the limit named (`tokens` interpolates the positions first).
    public func transform(_ patches: Tensor) throws -> Tensor { try transform(patches, positions: posEmbed) }

    public func transform(_ patches: Tensor, positions: Tensor) throws -> Tensor {
        let b = patches.shape[0], n = patches.shape[1], d = patches.shape[2]
        guard positions.rank == 3, positions.shape[1] == n + 1, positions.shape[2] == d else {
            throw ModelError("AMBA: \(n) patch tokens of width \(d), but the positions \(positions.shape) hold 1 + \(positions.shape[1] - 1) "
                             + "(pos_embed covers \(config.patches) patches, a \(config.fGrid) x \(config.tGrid) grid of "
                             + "\(inputFrames) frames; give features of another length to tokens(), which interpolates)")
        }
        return try blocks(Tensor.concat([clsToken.expand([b, 1, d]), patches], axis: 1) + positions)
    }

    /// The layer pairs, the final residual sum and `norm_f` twice on a token sequence [B, L, D] (cls
    /// and positions already in): what `earshot bench encoder --arch mamba` times on its own.
    public func blocks(_ x: Tensor) throws -> Tensor {
        if !GradMode.isEnabled && layers.allSatisfy({ type(of: $0) == VimBlock.self && $0.dropPath.isIdentity }) && dropPath.isIdentity {
            return try inferenceBlocks(x)
        }
        var hidden = x
        var residual: Tensor? = nil
        for i in stride(from: 0, to: layers.count - 1, by: 2) {
            let f = try layers[i](hidden, residual: residual)
            let r = try layers[i + 1](hidden, residual: residual, flipped: true)
            (hidden, residual) = (try f.hidden + r.hidden, try f.residual + r.residual)
        }
        let last = try residual.map { try $0 + dropPath(hidden) } ?? hidden
        return try normF(normF(last))
    }

    /// `blocks` without autograd and with every drop path the identity: both layers of a pair then
    /// form the same residual r = residual + hidden, so it is computed once, and the pair's residual
    /// sum is r + r (bitwise what the two sums give). Both stay in one tensor updated in place, the
    /// second mixer adds into the first's output (h = h_f + h_b), and each mixer normalises r per piece
    /// (`VimBlock.inferenceMix`): besides the mixers' own, three [B, L, D] tensors at the peak (the
    /// input, r and h) however long the sequence.
    func inferenceBlocks(_ x: Tensor) throws -> Tensor {
        var residual: Tensor? = nil, hidden: Tensor? = nil
        for i in stride(from: 0, to: layers.count - 1, by: 2) {
            var r = x
            if let res = residual, let h = hidden {
                try res.addInPlace(h)
                r = res
            }
            hidden = nil
            let hf = try layers[i].inferenceMix(r, flipped: false, addingTo: nil)
            hidden = try layers[i + 1].inferenceMix(r, flipped: true, addingTo: hf)
            if let res = residual {
                let p = res.data
                for j in 0..<res.count { p[j] += p[j] }
            } else {
                residual = try x + x
            }
        }
        guard hidden != nil, residual != nil else { return try normF(normF(x)) }
        // Each tensor is let go as soon as it is read, so the norms reuse their pooled buffers.
        try residual!.addInPlace(hidden!)
        hidden = nil
        let once = try normF(residual!)
        residual = nil
        return try normF(once)
    }
}

/// A classifier that takes clips of any length in one pass (no windowing): what `Classifier` and
/// `earshot classify`/`embed` ask before cutting a long recording into windows of `inputFrames`.
/// Declared here rather than on `AudioClassifierModel` so the core protocol stays as it is; a model
/// that does not conform is windowed as before.
public protocol VariableLengthClassifier: AudioClassifierModel {
    /// Whether `logits`/`embedding` take features [1, T, bins] of any T ≥ `minimumFrames` (shorter clips
    /// are padded to that).
    var takesAnyLength: Bool { get }
    /// The fewest frames a clip runs at unpadded (default `inputFrames`: shorter clips pad to one window).
    var minimumFrames: Int { get }
}

extension VariableLengthClassifier {
    public var minimumFrames: Int { inputFrames }
}

/// SSAMBA's classifier (`AMBAModel` at its fine-tuning stage): the encoder, the pooled tokens
/// (`ft_avgtok`: mean of tokens[1:]; or `ft_cls`), and `mlp_head` = LayerNorm + Linear.
/// Keys are the reference's without DataParallel's `module.` (`v.layers.0.mixer.A_log`,
/// `mlp_head.1.weight`).
public final class AMBA: Module, AudioClassifierModel, VariableLengthClassifier {
    @Child public private(set) var v: AMBAEncoder
    @Child public private(set) var mlpHead: Sequential
    public let config: AMBAConfig

    public init(_ config: AMBAConfig) {
        self.config = config
        v = AMBAEncoder(config)
        mlpHead = Sequential([LayerNorm(config.dim, eps: config.headEps), Linear(config.dim, config.labelDim)])
    }

    /// Pooled clip embedding [B, D].
    public func embed(_ x: Tensor) throws -> Tensor {
        let h = try v.tokens(x)
        switch config.pooling {
        case .meanTokens: return try h.slice(axis: 1, start: v.prefixTokens).mean(axis: 1)
        case .cls: return try h.slice(axis: 1, start: 0, end: 1).squeeze(1)
        }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try mlpHead(embed(x)) }

    public var architecture: ModelArchitecture { ModelArchitecture(family: SSAMBAFamily.classifierFamily, config: config.json) }
    public var inputFrames: Int { config.inputTdim }
    public var inputBins: Int { config.inputFdim }
    public var embeddingWidth: Int { config.dim }
    public var outputs: Int { config.labelDim }
    public var headPrefixes: [String] { ["mlp_head."] }
    public var blockPattern: String { "v.layers.*" }
    public var encoder: any AudioEncoder { v }
    public var finalNormPrefix: String? { "v.norm_f." }
    public func logits(_ features: Tensor) throws -> Tensor { try callAsFunction(features) }
    public func embedding(_ features: Tensor) throws -> Tensor { try embed(features) }
    public func logitsAndEmbedding(_ features: Tensor) throws -> (logits: Tensor, embedding: Tensor) {
        let e = try embed(features)
        return (try mlpHead(e), e)
    }
    /// A Mamba has no attention window: cost and memory grow linearly with the clip, and the positions
    /// are interpolated to its length (`AMBAEncoder.tokens`).
    public var takesAnyLength: Bool { true }
}

extension SSAST {
    /// SSAMBA: SSAST's masked patch modelling on the audio Mamba encoder, recorded as `ssamba` with
    /// the AMBA config (stride must equal the patch shape, as in every pretraining).
    public static func ssamba(_ config: AMBAConfig) -> SSAST {
        SSAST(encoder: AMBAEncoder(config), config: config.grid,
              architecture: ModelArchitecture(family: SSAMBAFamily.pretrainingFamily, config: config.json))
    }
}
