import Engine
import NN

/// A Swin block (HTSAT) with adapters wired as on a transformer block (`AdaptedMLP`, `AdaptedAttention`):
///
///     h = x + Attend(LN₁ x)                  [+ A₁ beside or after it: Houlsby]
///     y = h + FFN(LN₂ h) + A₂(LN₂ h)         (parallel; sequential: A₂(FFN(LN₂ h)))
///
/// where Attend is the (shifted) window attention and its output projection, and each adapter Aᵢ is a
/// per-token layer of the block's width (a bottleneck or conformer adapter). A Swin block's width
/// doubles stage by stage (HTSAT-tiny: 96 to 768), so each block's adapters are sized by its own width.
/// The block's keys are unchanged (`layernorm_before.*`, `attention.*`, `intermediate.*`, ...); the
/// adapters' are `mlp_adapter.*` and `attention_adapter.*`.
public final class AdaptedSwinLayer: SwinLayer {
    @Child public private(set) var mlpAdapter: any UnaryLayer
    @Child public private(set) var attentionAdapter: (any UnaryLayer)?
    let wiring: AdapterWiring

    public init(wrapping block: SwinLayer, mlpAdapter: any UnaryLayer, attentionAdapter: (any UnaryLayer)?, wiring: AdapterWiring) {
        self.mlpAdapter = mlpAdapter
        self.attentionAdapter = attentionAdapter
        self.wiring = wiring
        super.init(sharing: block)
    }

    override func callAsFunction(_ x: Tensor) throws -> Tensor {
        let u = try layernormBefore(x)
        let attended = try attentionAdapter.map { try wiring(u, layer: attend, adapter: $0) } ?? attend(u)
        let h = try x + dropPath(attended)
        return try h + dropPath(wiring(layernormAfter(h), layer: feedForward, adapter: mlpAdapter))
    }
}
