import Engine

/// A Vim (Mamba) block with an adapter beside its mixer, both reading the normalised residual stream:
///   hidden = mixer(norm(r)) + adapter(norm(r))
/// the Pfeiffer-parallel placement of a transformer's MLP adapter carried over to a block that has one
/// sub-layer. The block's keys are unchanged (`norm.*`, `mixer.*`); the adapter's are `adapter.*`. In
/// the flipped layer of a Vim pair (`flipped`) the mixer scans the other way; a per-token adapter
/// (bottleneck, mixtures) is the same either way, and a conformer adapter convolves in token order.
public final class AdaptedVimBlock: VimBlock {
    @Child public private(set) var adapter: any UnaryLayer

    public init(wrapping block: VimBlock, adapter: any UnaryLayer) {
        self.adapter = adapter
        super.init(sharing: block)
    }

    override public func callAsFunction(_ hidden: Tensor, residual: Tensor?, flipped: Bool = false) throws -> (hidden: Tensor, residual: Tensor) {
        let r = try residual.map { try $0 + dropPath(hidden) } ?? hidden
        let u = try norm(r)
        return (try mixer(u, flipped: flipped) + adapter(u), r)
    }
}
