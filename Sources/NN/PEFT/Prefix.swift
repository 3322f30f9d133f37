import Engine

/// Prefix tuning (Li and Liang, 2021) on self-attention: `tokens` learned keys and values join each
/// layer's own, so every query also attends to them; queries and the sequence length are unchanged:
///   softmax(Q [Pₖ; K]ᵀ / √d) [Pᵥ; V]
/// (PETL_AST inserts them after the cls position; without a causal mask, where they sit among the keys
/// does not change the result). Keys `prefix_key` and `prefix_value`, [1, tokens, D]; the wrapped
/// projections keep theirs.
public final class PrefixAttention: MultiHeadAttention {
    public let prefixKey: Tensor
    public let prefixValue: Tensor

    /// PETL_AST's init: uniform on ±√(6 / (3·16·16 + D)), the ViT prompt init for 16 x 16 patches.
    public init(wrapping attention: MultiHeadAttention, tokens: Int, dim: Int) {
        let bound = (6 / Float(3 * 16 * 16 + dim)).squareRoot()
        prefixKey = Tensor.uniform([1, tokens, dim], low: -bound, high: bound).requiringGrad()
        prefixValue = Tensor.uniform([1, tokens, dim], low: -bound, high: bound).requiringGrad()
        super.init(sharing: attention)
    }

    override public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let packed = try projectQKV(x)
        let (b, n, d) = (x.shape[0], x.shape[1], x.shape[2]), p = prefixKey.shape[1], dh = d / heads
        let h = heads
        func split(_ t: Tensor, _ rows: Int) throws -> Tensor { try t.reshape([b, rows, h, dh]).transpose(1, 2) }
        let q = try split(packed.slice(axis: 2, start: 0, end: d), n)
        let k = try split(Tensor.concat([prefixKey.expand([b, p, d]), packed.slice(axis: 2, start: d, end: 2 * d)], axis: 1), n + p)
        let v = try split(Tensor.concat([prefixValue.expand([b, p, d]), packed.slice(axis: 2, start: 2 * d, end: 3 * d)], axis: 1), n + p)
        let o = try Tensor.scaledDotProductAttention(q, k, v)                     // [B, H, N, dh]
        return try proj(o.transpose(1, 2).reshape([b, n, d]))
    }
}
