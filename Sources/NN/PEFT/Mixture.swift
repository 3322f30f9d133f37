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

/// Soft mixture of adapters (Soft-MoA, Cappellazzo et al., Interspeech 2024; after Puigcerver et al.'s
/// Soft-MoE): each expert reads `slots` weighted averages of the tokens and every token reads a weighted
/// average of all expert outputs. With X [B, M, D] and slot embeddings Φ [D, experts, slots]:
///   logits = X Φ                      [B, M, E·S]   (slot index e·S + s)
///   dispatch = softmax over the M tokens,   combine = softmax over the E·S slots
///   slotsₑ = dispatchₑᵀ X              [B, S, D]    (expert e's slots)
///   Y = combine · [expert₀(slots₀); …; expert_{E−1}(slots_{E−1})]
/// Cost is E·S adapter rows per clip instead of E per token (Dense-MoA's).
///
/// `normalize` (PETL_AST's NORMALIZE, off by default there and here): X is L2-normalised over D (and the
/// experts then read slots of the normalised tokens, as the reference's reassignment of X does) and Φ
/// over its *expert* axis (`l2_normalize(slot_params, axis=1)`; Soft-MoE normalises over D), times a
/// learned `scale` starting at 1. Keys: `slot_params` [D, E, S], `scale` [] (normalize only),
/// `experts.<e>.down.weight`, ...
public final class SoftMixture: Module, UnaryLayer {
    @Child public private(set) var experts: [BottleneckAdapter]
    public let slotParams: Tensor
    public let scale: Tensor?
    public let slots: Int

    /// Φ starts Xavier-normal as in the reference: std √(2 / (fan_in + fan_out)) with torch's fans of a
    /// [D, E, S] tensor, fan_in = E·S and fan_out = D·S.
    public init(dim: Int, bottleneck: Int, experts count: Int, slots: Int, normalize: Bool = false,
                initialisation: BottleneckAdapter.Initialisation = .zeros) {
        experts = (0..<count).map { _ in BottleneckAdapter(dim: dim, bottleneck: bottleneck, initialisation: initialisation) }
        let std = (2 / Float(count * slots + dim * slots)).squareRoot()
        slotParams = Tensor.randn([dim, count, slots], std: std).requiringGrad()
        scale = normalize ? Tensor.ones([]).requiringGrad() : nil
        self.slots = slots
    }

    /// x · 1 / (‖x‖ + 1e-6) along `axis` (the reference's `l2_normalize`, epsilon outside the root).
    static func l2Normalized(_ x: Tensor, axis: Int) throws -> Tensor {
        try x / (x.square().sum(axis: axis, keepDim: true).sqrt() + 1e-6)
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank == 3 else { throw NNError("SoftMixture: input must be [B, tokens, D], got \(input.shape)") }
        let (b, m, d) = (input.shape[0], input.shape[1], input.shape[2])
        let e = experts.count, n = e * slots
        var x = input, phi = slotParams
        if let scale {
            x = try Self.l2Normalized(input, axis: 2)
            phi = try Self.l2Normalized(slotParams, axis: 1) * scale
        }
        let logits = try x.matmul(phi.reshape([d, n]))                      // [B, M, E·S]
        let dispatch = try logits.softmax(axis: 1), combine = try logits.softmax(axis: 2)
        let slotInputs = try dispatch.transpose(1, 2).matmul(x)             // [B, E·S, D]
        let outputs = try experts.enumerated().map { i, expert in
            try expert(slotInputs.slice(axis: 1, start: i * slots, end: (i + 1) * slots))
        }
        let y = try combine.matmul(Tensor.concat(outputs, axis: 1))        // [B, M, D]
        precondition(y.shape == [b, m, d])
        return y
    }
}

/// Carries a block's attention-side adapter output to its MLP side: PETL_AST's Pfeiffer mixture at the
/// attention ('MHSA', its default location) adds its output after the attention and, because its
/// `moa_output` variable is still set when the feed-forward sum reads it, a second time after the MLP:
///   h₁ = h + A(LN₁ h) + M(LN₁ h),   h₂ = h₁ + F(LN₂ h₁) + M(LN₁ h)
/// `AdaptedAttention` with an echo stores M(LN₁ h); `EchoedMLP` adds it to its own output.
public final class AdapterEcho: @unchecked Sendable {
    var output: Tensor?
    public init() {}
}

/// An MLP that adds what its block's attention adapter left in `echo` (see `AdapterEcho`); its own
/// weights keep their keys.
public final class EchoedMLP: MLP {
    let echo: AdapterEcho

    public init(wrapping mlp: MLP, echo: AdapterEcho) {
        self.echo = echo
        super.init(sharing: mlp)
    }

    override public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard let m = echo.output else {
            throw NNError("EchoedMLP: no attention-adapter output to add (the block ran its MLP before its attention)")
        }
        echo.output = nil
        return try super.callAsFunction(x) + m
    }
}
