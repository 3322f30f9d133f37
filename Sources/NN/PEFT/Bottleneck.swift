import Engine

/// Bottleneck adapter (Houlsby et al., 2019; Pfeiffer et al., 2021): up(GELU(down(x))), a width-`d`
/// signal through `bottleneck` units and back. Either way it starts as the identity of the layer it
/// wraps (its output is 0):
/// - `.zeros`, PETL_AST's initialisation: every weight and bias 0. Then GELU(down x) = 0, so neither
///   matrix ever gets a gradient and only `up.bias` learns: the adapter is a learned offset (measured in
///   `PEFTFineTuneTests`). The default, as the reference's numbers come from it.
/// - `.standard`: `down` torch's default (kaiming-uniform), `up` zero, as adapters are usually
///   initialised: both matrices learn from the first step.
public final class BottleneckAdapter: Module, UnaryLayer {
    public enum Initialisation: String, Codable, Sendable, CaseIterable { case zeros, standard }

    @Child public private(set) var down: Linear
    @Child public private(set) var up: Linear

    public init(dim: Int, bottleneck: Int, initialisation: Initialisation = .zeros) {
        down = Linear(dim, bottleneck)
        up = Linear(bottleneck, dim)
        super.init()
        let zeroed = initialisation == .zeros ? namedParameters().map(\.1) : up.namedParameters().map(\.1)
        for t in zeroed { t.data.update(repeating: 0, count: t.count) }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try up(down(x).gelu()) }
}

/// Where an adapter sits beside the layer it adapts.
public enum AdapterPlacement: String, Codable, Sendable, CaseIterable {
    /// layer(x) + adapter(x): both read the same (normalised) input.
    case parallel
    /// adapter(layer(x)) [+ layer(x) with the residual]: the adapter reads the layer's output
    /// (PETL_AST's "after" placements: parallel-after and sequential-after both give this with the residual).
    case sequential
    /// layer(adapter(x)) + adapter(x): the adapter first, the layer on its output (PETL_AST's
    /// sequential-before). With PETL_AST's all-zero adapters the layer then starts on zeros.
    case before
}

/// An adapter wrapped around a layer: `parallel` gives layer(x) + adapter(x); `sequential` gives
/// adapter(layer(x)), plus layer(x) when `residual` (PETL_AST's `apply_residual`, off by default).
public struct AdapterWiring: Sendable {
    public let placement: AdapterPlacement
    public let residual: Bool
    /// Where a parallel adapter's output also goes (`AdapterEcho`), nil for none.
    var echo: AdapterEcho? = nil

    public init(placement: AdapterPlacement, residual: Bool = false) { (self.placement, self.residual) = (placement, residual) }

    init(placement: AdapterPlacement, residual: Bool, echo: AdapterEcho?) { (self.placement, self.residual, self.echo) = (placement, residual, echo) }

    public func callAsFunction(_ x: Tensor, layer: (Tensor) throws -> Tensor, adapter: any UnaryLayer) throws -> Tensor {
        if placement == .before {
            let a = try adapter(x)
            return try layer(a) + a
        }
        let y = try layer(x)
        switch placement {
        case .parallel:
            let a = try adapter(x)
            echo?.output = a
            return try y + a
        case .sequential, .before: return residual ? try adapter(y) + y : try adapter(y)
        }
    }
}

/// A transformer block's feed-forward half with an adapter (a `BottleneckAdapter` or a
/// `ConformerAdapter`; Pfeiffer's placement; Houlsby's adds `AdaptedAttention` too). The MLP's own
/// weights keep their keys (`mlp.fc1.weight`); the adapter's are `mlp.adapter.down.weight`, ...
public final class AdaptedMLP: MLP {
    @Child public private(set) var adapter: any UnaryLayer
    let wiring: AdapterWiring

    public init(wrapping mlp: MLP, adapter: any UnaryLayer, placement: AdapterPlacement, residual: Bool = false) {
        self.adapter = adapter
        wiring = AdapterWiring(placement: placement, residual: residual)
        super.init(sharing: mlp)
    }

    override public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try wiring(x, layer: { try super.callAsFunction($0) }, adapter: adapter)
    }
}

/// Multi-head attention with an adapter beside it (Houlsby's second adapter).
public final class AdaptedAttention: MultiHeadAttention {
    @Child public private(set) var adapter: any UnaryLayer
    let wiring: AdapterWiring

    /// `echo`: a parallel adapter's output is also left there for the block's `EchoedMLP` (PETL_AST's
    /// mixture at the attention).
    public init(wrapping attention: MultiHeadAttention, adapter: any UnaryLayer, placement: AdapterPlacement,
                residual: Bool = false, echo: AdapterEcho? = nil) {
        self.adapter = adapter
        wiring = AdapterWiring(placement: placement, residual: residual, echo: echo)
        super.init(sharing: attention)
    }

    override public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try wiring(x, layer: { try super.callAsFunction($0) }, adapter: adapter)
    }
}
