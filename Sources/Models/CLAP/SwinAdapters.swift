import Engine
import NN

/// A Swin block (HTSAT) with adapters wired as on a transformer block (`AdaptedMLP`, `AdaptedAttention`):
///
///     h = x + Attend(LN₁ x)                  [+ A₁ beside or after it: Houlsby]
///     y = h + FFN(LN₂ h) + A₂(LN₂ h)         (parallel; sequential: A₂(FFN(LN₂ h)))
///
/// where Attend is the (shifted) window attention and its output projection, and each adapter Aᵢ is a
/// layer of the block's width over its tokens (a bottleneck or conformer adapter, or a mixture of
/// bottlenecks). A Swin block's width doubles stage by stage (HTSAT-tiny: 96 to 768), so each block's
/// adapters are sized by its own width. A mixture at the attention alone (PETL_AST's default for MoA)
/// is `echoesAttentionAdapter`: its output M(LN₁ x) is added after the attention and again after the
/// feed-forward, as PETL_AST's code does (`AdapterEcho`):
///
///     h = x + Attend(LN₁ x) + M(LN₁ x),     y = h + FFN(LN₂ h) + M(LN₁ x)
///
/// The block's keys are unchanged (`layernorm_before.*`, `attention.*`, `intermediate.*`, ...); the
/// adapters' are `mlp_adapter.*` and `attention_adapter.*`.
public final class AdaptedSwinLayer: SwinLayer {
    @Child public private(set) var mlpAdapter: (any UnaryLayer)?
    @Child public private(set) var attentionAdapter: (any UnaryLayer)?
    let wiring: AdapterWiring
    /// The attention adapter's output is added after the feed-forward too (parallel placement only).
    public let echoesAttentionAdapter: Bool

    public init(wrapping block: SwinLayer, mlpAdapter: (any UnaryLayer)?, attentionAdapter: (any UnaryLayer)?, wiring: AdapterWiring,
                echoesAttentionAdapter: Bool = false) {
        precondition(!echoesAttentionAdapter || (attentionAdapter != nil && wiring.placement == .parallel),
                     "an echoed attention adapter sits beside the attention")
        self.mlpAdapter = mlpAdapter
        self.attentionAdapter = attentionAdapter
        self.wiring = wiring
        self.echoesAttentionAdapter = echoesAttentionAdapter
        super.init(sharing: block)
    }

    override func callAsFunction(_ x: Tensor) throws -> Tensor {
        let u = try layernormBefore(x)
        var echo: Tensor? = nil
        let attended: Tensor
        if let adapter = attentionAdapter, echoesAttentionAdapter {
            let m = try adapter(u)
            (attended, echo) = (try attend(u) + m, m)
        } else {
            attended = try attentionAdapter.map { try wiring(u, layer: attend, adapter: $0) } ?? attend(u)
        }
        let h = try x + dropPath(attended)
        let n2 = try layernormAfter(h)
        var fed = try mlpAdapter.map { try wiring(n2, layer: feedForward, adapter: $0) } ?? feedForward(n2)
        if let echo { fed = try fed + echo }
        return try h + dropPath(fed)
    }
}
