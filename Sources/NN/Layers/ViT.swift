import Engine

/// Conv patch embedding: [B, C, H, W] → [B, patches, D] (`patch_embed.proj`).
public final class PatchEmbed: Module {
    @Child public private(set) var proj: Conv2d

    public init(channels: Int, dim: Int, patch: (Int, Int), stride: (Int, Int)) {
        proj = Conv2d(channels, dim, kernel: patch, stride: stride)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let y = try proj(x)                                    // [B, D, gh, gw]
        return try y.flatten(from: 2).transpose(1, 2)          // [B, gh·gw, D]
    }
}

/// A small pre-LN Vision Transformer classifier: patches + cls token + learned positions, encoder,
/// cls pooling, linear head. Keys follow timm (`cls_token`, `pos_embed`, `patch_embed.proj`,
/// `blocks.i.*`, `norm`, `head`). AST builds on the same pieces.
public final class ViTClassifier: Module {
    @Child public private(set) var patchEmbed: PatchEmbed
    public let clsToken: Tensor
    public let posEmbed: Tensor
    @Child public private(set) var encoder: TransformerEncoder
    @Child public private(set) var head: Linear
    public let config: ViTConfig

    public init(config: ViTConfig, channels: Int, imageSize: (Int, Int), patch: (Int, Int), classes: Int) {
        self.config = config
        patchEmbed = PatchEmbed(channels: channels, dim: config.dim, patch: patch, stride: patch)
        let patches = (imageSize.0 / patch.0) * (imageSize.1 / patch.1)
        clsToken = Init.truncatedNormal([1, 1, config.dim], std: 0.02).requiringGrad()
        posEmbed = Init.truncatedNormal([1, patches + 1, config.dim], std: 0.02).requiringGrad()
        encoder = TransformerEncoder(config)
        head = Linear(config.dim, classes)
    }

    override public var keyOverrides: [String: String] { ["encoder": ""] }

    /// x [B, C, H, W] → logits [B, classes].
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let tokens = try patchEmbed(x)
        let b = tokens.shape[0]
        let cls = try clsToken.expand([b, 1, config.dim])
        let h = try encoder(Tensor.concat([cls, tokens], axis: 1) + posEmbed)
        let pooled = try h.slice(axis: 1, start: 0, end: 1).squeeze(1)
        return try head(pooled)
    }
}
