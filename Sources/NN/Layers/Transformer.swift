import Engine

/// Multi-head self-attention with a fused `qkv` projection (timm) or separate `query`/`key`/`value`
/// projections (Hugging Face), computed by the engine's fused blocked-softmax kernel:
/// softmax(Q Kᵀ / √d_head) V, then the output projection `proj`.
///
/// Its projections are `@Child`, so adapters can replace them (`Module.replaceModules`). The fused
/// paths (LayerNorm inside the qkv GEMM, one GEMM over concatenated query/key/value weights, the
/// residual added inside `proj`) run only where the layers they read are exactly `Linear` and
/// `LayerNorm`, and where this layer is exactly a `MultiHeadAttention`; otherwise every child is called.
open class MultiHeadAttention: Module, UnaryLayer {
    public let heads: Int
    @Child public private(set) var qkv: Linear?
    @Child public private(set) var query: Linear?
    @Child public private(set) var key: Linear?
    @Child public private(set) var value: Linear?
    @Child public private(set) var proj: Linear
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

    /// A layer holding `other`'s projections themselves (the same modules, under the same keys): what a
    /// subclass that wraps `other` calls.
    public init(sharing other: MultiHeadAttention) {
        heads = other.heads
        qkv = other.qkv; query = other.query; key = other.key; value = other.value
        proj = other.proj
        attnDrop = other.attnDrop
    }

    /// x [B, N, D] → [B, N, D].
    open func callAsFunction(_ x: Tensor) throws -> Tensor { try attend(x, adding: nil) }

    /// residual + attn(x), with the residual added inside the output projection where the engine can.
    public func callAsFunction(_ x: Tensor, adding residual: Tensor) throws -> Tensor {
        guard isStock else { return try callAsFunction(x) + residual }
        return try attend(x, adding: residual)
    }

    /// residual + attn(norm(x)). At inference with a fused qkv, the norm runs inside the qkv projection
    /// block by block (`Tensor.fusedLayerNormLinear`) instead of as a pass of its own.
    public func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm, adding residual: Tensor) throws -> Tensor {
        guard isStock else { return try callAsFunction(norm(x)) + residual }
        if let converted = qkv as? LowPrecisionLinear {   // reduced precision: the norm runs as x is converted
            try check(x.rank == 3, "MultiHeadAttention: input must be [B, N, D], got \(x.shape)")
            return try attendPacked(converted(x, normalizedBy: norm), adding: residual)
        }
        guard let qkv, type(of: qkv) == Linear.self, type(of: norm) == LayerNorm.self,
              !needsGraph([x, norm.weight, norm.bias, qkv.weight, qkv.bias]) else {
            return try attend(norm(x), adding: residual)
        }
        try check(x.rank == 3, "MultiHeadAttention: input must be [B, N, D], got \(x.shape)")
        let packed = try Tensor.fusedLayerNormLinear(x, lnWeight: norm.weight, lnBias: norm.bias, eps: norm.eps,
                                                     weight: qkv.weight, bias: qkv.bias)
        return try attendPacked(packed, adding: residual)
    }

    /// Whether this is exactly a `MultiHeadAttention`: a subclass may override `callAsFunction(_:)`, which
    /// the residual forms then call instead of their fused paths.
    var isStock: Bool { type(of: self) == MultiHeadAttention.self }

    func attend(_ x: Tensor, adding residual: Tensor?) throws -> Tensor {
        try attendPacked(projectQKV(x), adding: residual)
    }

    /// The packed [B, N, 3·D] queries, keys and values of x [B, N, D] (q, k, v order along the last axis).
    func projectQKV(_ x: Tensor) throws -> Tensor {
        try check(x.rank == 3, "MultiHeadAttention: input must be [B, N, D], got \(x.shape)")
        let packed: Tensor
        if let qkv {
            packed = try qkv(x)
        } else if let query, let key, let value {
            packed = try Linear.packedProjection(x, query: query, key: key, value: value)
        } else { throw NNError("MultiHeadAttention: no projections") }
        return packed
    }

    /// Attention and the output projection on a packed [B, N, 3·D] qkv tensor.
    func attendPacked(_ packed: Tensor, adding residual: Tensor?) throws -> Tensor {
        let heads = try packed.packedSelfAttention(heads: heads)
        guard let residual else { return try proj(heads) }
        if type(of: proj) == Linear.self { return try heads.linear(weight: proj.weight, bias: proj.bias, adding: residual) }
        if let converted = proj as? LowPrecisionLinear { return try converted(heads, adding: residual) }
        return try proj(heads) + residual
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
open class MLP: Module, UnaryLayer {
    @Child public private(set) var fc1: Linear
    @Child public private(set) var fc2: Linear
    public let approximateGELU: Bool
    @Child public private(set) var dropout: Dropout

    public init(dim: Int, hidden: Int, approximateGELU: Bool = false, dropout p: Float = 0) {
        fc1 = Linear(dim, hidden); fc2 = Linear(hidden, dim)
        self.approximateGELU = approximateGELU
        dropout = Dropout(p)
    }

    /// A layer holding `other`'s children themselves (the same modules, under the same keys): what a
    /// subclass that wraps `other` calls.
    public init(sharing other: MLP) {
        fc1 = other.fc1; fc2 = other.fc2
        approximateGELU = other.approximateGELU
        dropout = other.dropout
    }

    open func callAsFunction(_ x: Tensor) throws -> Tensor {
        try dropout(fc2(dropout(fc1(x).gelu(approximate: approximateGELU))))
    }
}

/// Pre-LN transformer block: x + DropPath(attn(LN₁ x)), then x + DropPath(MLP(LN₂ x)) (timm `Block`).
///
/// At inference the MLP half runs as one fused pass that reads `norm2`, `mlp.fc1` and `mlp.fc2`
/// directly; it is taken only where those are exactly `LayerNorm`, `MLP` and `Linear`, so an adapter in
/// any of them is called (`MultiHeadAttention` makes the same check for the attention half).
open class ViTBlock: Module, UnaryLayer {
    @Child public private(set) var norm1: LayerNorm
    @Child public private(set) var attn: MultiHeadAttention
    @Child public private(set) var norm2: LayerNorm
    @Child public private(set) var mlp: MLP
    @Child public private(set) var dropPath: DropPath

    public init(dim: Int, heads: Int, mlpRatio: Float = 4, qkvBias: Bool = true, eps: Float = 1e-6,
                fusedQKV: Bool = true, dropPath p: Float = 0, dropout: Float = 0) {
        norm1 = LayerNorm(dim, eps: eps)
        attn = MultiHeadAttention(dim: dim, heads: heads, qkvBias: qkvBias, fusedQKV: fusedQKV)
        norm2 = LayerNorm(dim, eps: eps)
        mlp = MLP(dim: dim, hidden: Int(Float(dim) * mlpRatio), dropout: dropout)
        dropPath = DropPath(p)
    }

    /// A block holding `other`'s children themselves (the same modules, under the same keys): what a
    /// subclass that wraps `other` calls.
    public init(sharing other: ViTBlock) {
        norm1 = other.norm1; attn = other.attn; norm2 = other.norm2; mlp = other.mlp
        dropPath = other.dropPath
    }

    open func callAsFunction(_ x: Tensor) throws -> Tensor {
        // DropPath must see attn's output alone; when it is the identity the residual can join inside proj.
        let h = dropPath.isIdentity ? try attn(x, normalizedBy: norm1, adding: x) : try x + dropPath(attn(norm1(x)))
        if mlpHalfIsStock && dropPath.isIdentity && mlp.dropout.p == 0 && !needsGraph(h) {
            // Inference: the whole MLP half in one cache-blocked pass (Engine/FusedInference.swift).
            return try Tensor.fusedResidualMLP(h, lnWeight: norm2.weight, lnBias: norm2.bias, eps: norm2.eps,
                                               fc1Weight: mlp.fc1.weight, fc1Bias: mlp.fc1.bias,
                                               fc2Weight: mlp.fc2.weight, fc2Bias: mlp.fc2.bias,
                                               approximateGELU: mlp.approximateGELU)
        }
        if let lowPrecision = try lowPrecisionMLP(h) { return lowPrecision }   // LowPrecisionLinear.swift
        return try h + dropPath(mlp(norm2(h)))
    }

    /// Whether the MLP half's layers are exactly the stock ones the fused pass stands in for.
    var mlpHalfIsStock: Bool {
        type(of: norm2) == LayerNorm.self && type(of: mlp) == MLP.self
            && type(of: mlp.fc1) == Linear.self && type(of: mlp.fc2) == Linear.self
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
    @Child public private(set) var blocks: [ViTBlock]
    @Child public private(set) var norm: LayerNorm

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

extension Linear {
    /// x through separate query, key and value layers, packed as [.., 3·D] in the (3, H, Dh) layout of a
    /// fused qkv projection (what the fused attention kernel reads). Stock layers run as one GEMM over
    /// their stacked weights; a wrapped one (an adapter, LoRA) runs on its own and is concatenated.
    public static func packedProjection(_ x: Tensor, query: Linear, key: Linear, value: Linear) throws -> Tensor {
        guard type(of: query) == Linear.self && type(of: key) == Linear.self && type(of: value) == Linear.self else {
            return try Tensor.concat([query(x), key(x), value(x)], axis: x.rank - 1)
        }
        let w = try Tensor.concat([query.weight, key.weight, value.weight], axis: 0)
        var b: Tensor? = nil
        if let qb = query.bias, let kb = key.bias, let vb = value.bias { b = try Tensor.concat([qb, kb, vb], axis: 0) }
        return try x.linear(weight: w, bias: b)
    }
}
