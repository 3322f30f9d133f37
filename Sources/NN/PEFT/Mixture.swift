import Engine

/// Dense mixture of adapters (Dense-MoA, Cappellazzo et al., 2024): every token goes through every
/// expert, weighted by a softmax router:
///   y = Σₑ softmax(router(x))ₑ · expertₑ(x)
/// with `router` a linear layer D → experts. Keys `router.weight`, `experts.<e>.down.weight`, ...
public final class DenseMixture: Module, UnaryLayer {
    @Child public private(set) var router: Linear
    @Child public private(set) var experts: [BottleneckAdapter]

    public init(dim: Int, bottleneck: Int, experts count: Int, initialisation: BottleneckAdapter.Initialisation = .zeros) {
        router = Linear(dim, count)
        experts = (0..<count).map { _ in BottleneckAdapter(dim: dim, bottleneck: bottleneck, initialisation: initialisation) }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let weights = try router(x).softmax(axis: -1)                               // [.., experts]
        var y: Tensor? = nil
        for (e, expert) in experts.enumerated() {
            let term = try expert(x) * weights.slice(axis: weights.rank - 1, start: e, end: e + 1)
            y = try y.map { try $0 + term } ?? term
        }
        return y!
    }
}
