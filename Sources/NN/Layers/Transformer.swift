import Engine

/// Multi-head self-attention with a fused `qkv` projection (timm) or separate `query`/`key`/`value`
/// projections (Hugging Face), computed by the engine's fused blocked-softmax kernel:
/// softmax(Q Kᵀ / √d_head) V, then the output projection `proj`.
public final class MultiHeadAttention: Module, UnaryLayer {
    public let heads: Int
    public let qkv: Linear?
    public let query: Linear?, key: Linear?, value: Linear?
    public let proj: Linear
    public let attnDrop: Float

    public init(dim: Int, heads: Int, qkvBias: Bool = true, fusedQKV: Bool = true, attnDrop: Float = 0) {
        precondition(dim % heads == 0, "MultiHeadAttention: dim \(dim) must be divisible by heads \(heads)")
        self.heads = heads
        if fusedQKV {
            qkv = Linear(dim, 3 * dim, bias: qkvBias); query = nil; key = nil; value = nil
        } else {
            qkv = nil
            query = Linear(dim, dim, bias: qkvBias); key = Linear(dim, dim, bias: qkvBias); value = Linear(dim, dim, bias: qkvBias)
        }
        proj = Linear(dim, dim)
        self.attnDrop = attnDrop
    }

    /// x [B, N, D] → [B, N, D].
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try attend(x, adding: nil) }

    /// residual + attn(x), with the residual added inside the output projection where the engine can.
    public func callAsFunction(_ x: Tensor, adding residual: Tensor) throws -> Tensor { try attend(x, adding: residual) }

    /// residual + attn(norm(x)). At inference with a fused qkv, the norm runs inside the qkv projection
    /// block by block (`Tensor.fusedLayerNormLinear`) instead of as a pass of its own.
    public func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm, adding residual: Tensor) throws -> Tensor {
        guard let qkv, !needsGraph([x, norm.weight, norm.bias, qkv.weight, qkv.bias]) else {
            return try attend(norm(x), adding: residual)
        }
        try check(x.rank == 3, "MultiHeadAttention: input must be [B, N, D], got \(x.shape)")
        let packed = try Tensor.fusedLayerNormLinear(x, lnWeight: norm.weight, lnBias: norm.bias, eps: norm.eps,
                                                     weight: qkv.weight, bias: qkv.bias)
        return try attendPacked(packed, adding: residual)
    }

    func attend(_ x: Tensor, adding residual: Tensor?) throws -> Tensor {
        try check(x.rank == 3, "MultiHeadAttention: input must be [B, N, D], got \(x.shape)")
        let packed: Tensor
        if let qkv {
            packed = try qkv(x)
        } else if let query, let key, let value {
            // One GEMM over the concatenated weights gives the same packed layout as timm's qkv.
            let w = try Tensor.concat([query.weight, key.weight, value.weight], axis: 0)
            var b: Tensor? = nil
            if let qb = query.bias, let kb = key.bias, let vb = value.bias { b = try Tensor.concat([qb, kb, vb], axis: 0) }
            packed = try x.linear(weight: w, bias: b)
        } else { throw NNError("MultiHeadAttention: no projections") }
        return try attendPacked(packed, adding: residual)
    }

    /// Attention and the output projection on a packed [B, N, 3·D] qkv tensor.
    func attendPacked(_ packed: Tensor, adding residual: Tensor?) throws -> Tensor {
        let heads = try packed.packedSelfAttention(heads: heads)
        if let residual { return try heads.linear(weight: proj.weight, bias: proj.bias, adding: residual) }
        return try proj(heads)
    }
}

@inline(__always)
func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw NNError(message()) }
}

/// Whether an op over these tensors must record a graph: grad mode is on and one of them is trainable.
func needsGraph(_ tensors: [Tensor?]) -> Bool {
    GradMode.isEnabled && tensors.contains { $0?.requiresGrad == true }
}

/// fc2(act(fc1 x)), the transformer feed-forward block.
public final class MLP: Module, UnaryLayer {
    public let fc1: Linear
    public let fc2: Linear
    public let approximateGELU: Bool
    public let dropout: Dropout

    public init(dim: Int, hidden: Int, approximateGELU: Bool = false, dropout p: Float = 0) {
        fc1 = Linear(dim, hidden); fc2 = Linear(hidden, dim)
        self.approximateGELU = approximateGELU
        dropout = Dropout(p)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try dropout(fc2(dropout(fc1(x).gelu(approximate: approximateGELU))))
    }
}

/// Pre-LN transformer block: x + DropPath(attn(LN₁ x)), then x + DropPath(MLP(LN₂ x)) (timm `Block`).
public final class ViTBlock: Module, UnaryLayer {
    public let norm1: LayerNorm
    public let attn: MultiHeadAttention
    public let norm2: LayerNorm
    public let mlp: MLP
    public let dropPath: DropPath

    public init(dim: Int, heads: Int, mlpRatio: Float = 4, qkvBias: Bool = true, eps: Float = 1e-6,
                fusedQKV: Bool = true, dropPath p: Float = 0, dropout: Float = 0) {
        norm1 = LayerNorm(dim, eps: eps)
        attn = MultiHeadAttention(dim: dim, heads: heads, qkvBias: qkvBias, fusedQKV: fusedQKV)
        norm2 = LayerNorm(dim, eps: eps)
        mlp = MLP(dim: dim, hidden: Int(Float(dim) * mlpRatio), dropout: dropout)
        dropPath = DropPath(p)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        // DropPath must see attn's output alone; when it is the identity the residual can join inside proj.
        let h = dropPath.isIdentity ? try attn(x, normalizedBy: norm1, adding: x) : try x + dropPath(attn(norm1(x)))
        if !needsGraph(h) && mlp.dropout.p == 0 {
            // Inference: the whole MLP half in one cache-blocked pass (Engine/FusedInference.swift).
            return try Tensor.fusedResidualMLP(h, lnWeight: norm2.weight, lnBias: norm2.bias, eps: norm2.eps,
                                               fc1Weight: mlp.fc1.weight, fc1Bias: mlp.fc1.bias,
                                               fc2Weight: mlp.fc2.weight, fc2Bias: mlp.fc2.bias,
                                               approximateGELU: mlp.approximateGELU)
        }
        return try h + dropPath(mlp(norm2(h)))
    }

    /// Whether the MLP half must record a graph (grad mode on and its input or a parameter trainable).
    func needsGraph(_ h: Tensor) -> Bool {
        NN.needsGraph([h, norm2.weight, norm2.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias])
    }
}

/// Named encoder sizes, as timm's DeiT/ViT configs.
public struct ViTConfig: Codable, Sendable, Equatable {
    public var dim: Int, depth: Int, heads: Int, mlpRatio: Float
    public var eps: Float = 1e-6
    public var dropPath: Float = 0

    public init(dim: Int, depth: Int, heads: Int, mlpRatio: Float = 4, eps: Float = 1e-6, dropPath: Float = 0) {
        self.dim = dim; self.depth = depth; self.heads = heads; self.mlpRatio = mlpRatio; self.eps = eps; self.dropPath = dropPath
    }

    public static let tiny = ViTConfig(dim: 192, depth: 12, heads: 3)
    public static let small = ViTConfig(dim: 384, depth: 12, heads: 6)
    public static let base = ViTConfig(dim: 768, depth: 12, heads: 12)

    public static func named(_ name: String) -> ViTConfig? {
        ["tiny": .tiny, "small": .small, "base": .base][name]
    }
}

/// A stack of pre-LN blocks with a final LayerNorm (`blocks.*`, `norm`).
public final class TransformerEncoder: Module, UnaryLayer {
    public let blocks: [ViTBlock]
    public let norm: LayerNorm

    public init(_ config: ViTConfig) {
        blocks = (0..<config.depth).map { i in
            // Stochastic depth rises linearly with depth, as in timm.
            let p = config.depth > 1 ? config.dropPath * Float(i) / Float(config.depth - 1) : config.dropPath
            return ViTBlock(dim: config.dim, heads: config.heads, mlpRatio: config.mlpRatio, eps: config.eps, dropPath: p)
        }
        norm = LayerNorm(config.dim, eps: config.eps)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = x
        for block in blocks { h = try block(h) }
        return try norm(h)
    }
}
