import Engine

/// One low-rank update: up(down(x)), `down` [rank, in] and `up` [rows, rank], no biases.
public final class LoRAFactor: Module {
    @Child public private(set) var down: Linear
    @Child public private(set) var up: Linear

    /// PETL_AST's initialisation: `down` zero and `up` torch's default (kaiming-uniform), the reverse of
    /// the original LoRA's (random down, zero up); either way the update starts at zero.
    public init(inFeatures: Int, rows: Int, rank: Int) {
        down = Linear(inFeatures, rank, bias: false)
        up = Linear(rank, rows, bias: false)
        super.init()
        down.weight.data.update(repeating: 0, count: down.weight.count)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try up(down(x)) }
}

/// Low-rank adaptation of a linear layer (Hu et al., 2021):
///   y = W x + b + s · Σₜ placeₜ(upₜ(downₜ(x)))
/// where factor t adds to the output rows `rows[t]` only (a fused qkv projection adapts its q and v
/// thirds, as LoRA on separate query and value layers would). W and b are the wrapped layer's own
/// tensors under their own keys; the factors are `lora.<t>.down.weight` and `lora.<t>.up.weight`.
/// `merged()` folds the update into a plain `Linear` for inference.
public final class LoRALinear: Linear {
    @Child public private(set) var lora: [LoRAFactor]
    public let rows: [Range<Int>]
    public let scale: Float

    public init(wrapping layer: Linear, rows: [Range<Int>], rank: Int, scale: Float) throws {
        let outF = layer.weight.shape[0], inF = layer.weight.shape[1]
        guard rank >= 1 && rank <= inF else { throw NNError("LoRA: rank \(rank) must be between 1 and the input width \(inF)") }
        guard !rows.isEmpty, rows.allSatisfy({ $0.lowerBound >= 0 && $0.upperBound <= outF && !$0.isEmpty }) else {
            throw NNError("LoRA: output rows \(rows) do not fit a layer with \(outF) outputs")
        }
        lora = rows.map { LoRAFactor(inFeatures: inF, rows: $0.count, rank: rank) }
        self.rows = rows
        self.scale = scale
        super.init(sharing: layer)
    }

    /// y = W x + b + s · Σₜ placeₜ(upₜ(downₜ x)): the frozen product and the low-rank path side by side,
    /// as loralib computes it. W gets no gradient when frozen, so the backward pass runs no
    /// [out, in] weight-gradient GEMM for it (folding the update into the weight first made W + ΔW
    /// trainable and cost that GEMM: LoRA stepped 1.31x faster than full fine-tuning at AST-base, against
    /// 1.45x for adapters). One engine op (`Tensor.linear(weight:bias:lowRank:scale:)`) runs both factors'
    /// down products as one GEMM and adds the up products into their rows of the frozen product in place,
    /// so the only extra activation is the rank-wide `down x` (no full-width update tensors, scale passes,
    /// copies of the product or per-factor input gradients to sum).
    override public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try x.linear(weight: weight, bias: bias, lowRank: zip(lora, rows).map { LowRankUpdate(down: $0.down.weight, up: $0.up.weight, columns: $1) },
                     scale: scale)
    }

    func effectiveWeight() throws -> Tensor {
        let outF = weight.shape[0]
        var w = weight
        for (factor, r) in zip(lora, rows) {
            var delta = try factor.up.weight.matmul(factor.down.weight) * scale   // [rows, in]
            if r.count != outF { delta = try delta.pad([(r.lowerBound, outF - r.upperBound)]) }
            w = try w + delta
        }
        return w
    }

    /// A plain `Linear` with W + s · Σₜ upₜ downₜ on each factor's rows: the same outputs at the cost of
    /// the stock layer (and its fused paths).
    public func merged() throws -> Linear {
        let w = try GradMode.noGrad { try effectiveWeight() }
        return Linear(weight: w.requiringGrad(weight.requiresGrad), bias: bias)
    }

    /// The inverse of `merged()`: the base layer W = W' − s · Σₜ upₜ downₜ of a layer these factors were
    /// merged into (to swap one task's update for another's without keeping the unmerged model). Equal
    /// to the original weight up to float rounding (~1e-7 relative).
    public func unmerge(_ merged: Linear) throws -> Linear {
        guard merged.weight.shape == weight.shape else {
            throw NNError("LoRA unmerge: a layer of shape \(merged.weight.shape), these factors adapt \(weight.shape)")
        }
        let w = try GradMode.noGrad { try merged.weight - effectiveWeight() + weight }
        return Linear(weight: w.requiringGrad(merged.weight.requiresGrad), bias: merged.bias)
    }
}
