import Engine
import NN

/// The AST encoder, keyed like timm's DeiT inside the original AST (`v.*`): cls and distillation
/// tokens, a learned positional embedding over the patch grid, pre-LN blocks and a final norm.
public final class ASTEncoder: Module, PatchEncoder, PromptableEncoder {
    public let clsToken: Tensor
    public let distToken: Tensor
    public let posEmbed: Tensor
    // Children are `@Child` so adapters can replace them by key (`Module.replaceModules`).
    @Child public private(set) var patchEmbed: PatchEmbed
    @Child public private(set) var blocks: [ViTBlock]
    @Child public private(set) var norm: LayerNorm
    /// Prompt tokens in the distillation token's place (prompt tuning), nil for none.
    @Child public private(set) var prompts: PromptTokens?
    let shape: (frames: Int, bins: Int)

    public init(_ c: ASTConfig) {
        shape = (c.inputTdim, c.inputFdim)
        clsToken = Init.truncatedNormal([1, 1, c.dim], std: 0.02).requiringGrad()
        distToken = Init.truncatedNormal([1, 1, c.dim], std: 0.02).requiringGrad()
        posEmbed = Init.truncatedNormal([1, c.patches + 2, c.dim], std: 0.02).requiringGrad()
        patchEmbed = PatchEmbed(channels: 1, dim: c.dim, patch: (c.fshape, c.tshape), stride: (c.fstride, c.tstride))
        blocks = (0..<c.depth).map { i in
            ViTBlock(dim: c.dim, heads: c.heads, mlpRatio: Float(c.mlpHidden) / Float(c.dim), eps: c.eps,
                     dropPath: c.depth > 1 ? c.dropPath * Float(i) / Float(c.depth - 1) : c.dropPath)
        }
        norm = LayerNorm(c.dim, eps: c.eps)
        prompts = nil
        super.init()
        Init.timmLinear(self)
    }

    public var width: Int { clsToken.shape[2] }
    /// cls and distillation tokens, or cls and the prompts.
    public var prefixTokens: Int { prompts.map { 1 + $0.count } ?? 2 }

    public var depth: Int { blocks.count }
    public func usePrompts(_ prompts: PromptTokens?) { self.prompts = prompts }
    public var inputFrames: Int { shape.frames }
    public var inputBins: Int { shape.bins }

    public func tokens(_ features: Tensor) throws -> Tensor {
        guard features.rank == 3, features.shape[1] == inputFrames, features.shape[2] == inputBins else {
            throw ModelError("AST: expected features [B, \(inputFrames), \(inputBins)], got \(features.shape)")
        }
        return try transform(patchTokens(features))
    }
}

/// Audio Spectrogram Transformer (Gong et al., 2021): Kaldi fbank [B, T, F] → logits [B, labels].
/// Keys match the original checkpoints without their `module.` prefix (`v.blocks.0.attn.qkv.weight`,
/// `mlp_head.1.weight`); `ASTCheckpoint` maps Hugging Face and `.pth` files onto them.
public final class AST: Module, AudioClassifierModel {
    @Child public private(set) var v: ASTEncoder
    @Child public private(set) var mlpHead: Sequential
    public let config: ASTConfig

    public init(_ config: ASTConfig) {
        self.config = config
        v = ASTEncoder(config)
        mlpHead = Sequential([LayerNorm(config.dim, eps: config.headEps), Linear(config.dim, config.labelDim)])
    }

    /// Token sequence after the final norm, [B, 2 + patches, D].
    public func encode(_ x: Tensor) throws -> Tensor { try v.tokens(x) }

    /// Pooled clip embedding [B, D].
    public func embed(_ x: Tensor) throws -> Tensor {
        let h = try encode(x)
        switch config.pooling {
        case .clsPair:
            return try (h.slice(axis: 1, start: 0, end: 1) + h.slice(axis: 1, start: 1, end: 2)).squeeze(1) * 0.5
        case .meanTokens:
            return try h.slice(axis: 1, start: v.prefixTokens).mean(axis: 1)
        }
    }

    /// Logits [B, labels] (apply sigmoid or softmax outside, as the reference does).
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try mlpHead(embed(x)) }

    public var architecture: ModelArchitecture { ModelArchitecture(family: ASTFamily.classifierFamily, config: config.json) }
    public var inputFrames: Int { config.inputTdim }
    public var inputBins: Int { config.inputFdim }
    public var embeddingWidth: Int { config.dim }
    public var outputs: Int { config.labelDim }
    public var headPrefixes: [String] { ["mlp_head."] }
    public var blockPattern: String { "v.blocks.*" }
    public var encoder: any AudioEncoder { v }
    public var finalNormPrefix: String? { "v.norm." }
    public func logits(_ features: Tensor) throws -> Tensor { try callAsFunction(features) }
    public func embedding(_ features: Tensor) throws -> Tensor { try embed(features) }
    public func logitsAndEmbedding(_ features: Tensor) throws -> (logits: Tensor, embedding: Tensor) {
        let e = try embed(features)
        return (try mlpHead(e), e)
    }
}

extension ASTEncoder {
    /// Patch tokens [B, N, D] of features [B, T, F] (input transposed to [B, 1, F, T] like AST).
    public func patchTokens(_ x: Tensor) throws -> Tensor {
        try patchEmbed(x.unsqueeze(1).transpose(2, 3))
    }

    /// cls, dist, patch tokens + positions, blocks, final norm: [B, 2 + N, D]. With prompts (PETL_AST's
    /// prompt tuning), the distillation token and its position give way to them: [cls, prompts, patches],
    /// and a deep set replaces the prompt slots before each block.
    public func transform(_ patches: Tensor) throws -> Tensor {
        let b = patches.shape[0], d = patches.shape[2]
        var h = try Tensor.concat([clsToken.expand([b, 1, d]), distToken.expand([b, 1, d]), patches], axis: 1) + posEmbed
        if prompts != nil { h = try Tensor.concat([h.slice(axis: 1, start: 0, end: 1), h.slice(axis: 1, start: 2)], axis: 1) }
        for (i, block) in blocks.enumerated() {
            if let p = try prompts?.prompts(forBlock: i, batch: b) {
                let rest = i == 0 ? 1 : 1 + p.shape[1]   // block 0 inserts them, later blocks replace them
                h = try Tensor.concat([h.slice(axis: 1, start: 0, end: 1), p, h.slice(axis: 1, start: rest)], axis: 1)
            }
            h = try block(h)
        }
        return try norm(h)
    }
}
