import Engine
import NN

/// The AST encoder, keyed like timm's DeiT inside the original AST (`v.*`): cls and distillation
/// tokens, a learned positional embedding over the patch grid, pre-LN blocks and a final norm.
public final class ASTEncoder: Module {
    public let clsToken: Tensor
    public let distToken: Tensor
    public let posEmbed: Tensor
    public let patchEmbed: PatchEmbed
    public let blocks: [ViTBlock]
    public let norm: LayerNorm

    public init(_ c: ASTConfig) {
        clsToken = Init.truncatedNormal([1, 1, c.dim], std: 0.02).requiringGrad()
        distToken = Init.truncatedNormal([1, 1, c.dim], std: 0.02).requiringGrad()
        posEmbed = Init.truncatedNormal([1, c.patches + 2, c.dim], std: 0.02).requiringGrad()
        patchEmbed = PatchEmbed(channels: 1, dim: c.dim, patch: (c.fshape, c.tshape), stride: (c.fstride, c.tstride))
        blocks = (0..<c.depth).map { i in
            ViTBlock(dim: c.dim, heads: c.heads, mlpRatio: Float(c.mlpHidden) / Float(c.dim), eps: c.eps,
                     dropPath: c.depth > 1 ? c.dropPath * Float(i) / Float(c.depth - 1) : c.dropPath)
        }
        norm = LayerNorm(c.dim, eps: c.eps)
        super.init()
        Init.timmLinear(self)
    }
}

/// Audio Spectrogram Transformer (Gong et al., 2021): Kaldi fbank [B, T, F] → logits [B, labels].
/// Keys match the original checkpoints without their `module.` prefix (`v.blocks.0.attn.qkv.weight`,
/// `mlp_head.1.weight`); `ASTCheckpoint` maps Hugging Face and `.pth` files onto them.
public final class AST: Module {
    public let v: ASTEncoder
    public let mlpHead: Sequential
    public let config: ASTConfig

    public init(_ config: ASTConfig) {
        self.config = config
        v = ASTEncoder(config)
        mlpHead = Sequential([LayerNorm(config.dim, eps: config.headEps), Linear(config.dim, config.labelDim)])
    }

    /// Token sequence after the final norm, [B, 2 + patches, D].
    public func encode(_ x: Tensor) throws -> Tensor {
        guard x.rank == 3, x.shape[1] == config.inputTdim, x.shape[2] == config.inputFdim else {
            throw ModelError("AST: expected features [B, \(config.inputTdim), \(config.inputFdim)], got \(x.shape)")
        }
        return try v.transform(v.patchTokens(x))
    }

    /// Pooled clip embedding [B, D].
    public func embed(_ x: Tensor) throws -> Tensor {
        let h = try encode(x)
        switch config.pooling {
        case .clsPair:
            return try (h.slice(axis: 1, start: 0, end: 1) + h.slice(axis: 1, start: 1, end: 2)).squeeze(1) * 0.5
        case .meanTokens:
            return try h.slice(axis: 1, start: 2).mean(axis: 1)
        }
    }

    /// Logits [B, labels] (apply sigmoid or softmax outside, as the reference does).
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try mlpHead(embed(x)) }
}

extension ASTEncoder {
    /// Patch tokens [B, N, D] of features [B, T, F] (input transposed to [B, 1, F, T] like AST).
    public func patchTokens(_ x: Tensor) throws -> Tensor {
        try patchEmbed(x.unsqueeze(1).transpose(2, 3))
    }

    /// cls, dist, patch tokens + positions, blocks, final norm: [B, 2 + N, D].
    public func transform(_ patches: Tensor) throws -> Tensor {
        let b = patches.shape[0], d = patches.shape[2]
        var h = try Tensor.concat([clsToken.expand([b, 1, d]), distToken.expand([b, 1, d]), patches], axis: 1) + posEmbed
        for block in blocks { h = try block(h) }
        return try norm(h)
    }
}
