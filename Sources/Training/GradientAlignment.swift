import Engine
import Foundation

/// How well two losses agree on where the shared weights should go: the cosine between their
/// gradients, FLAD's reward for an auxiliary batch against the target batch of the same step.
///
///     r = cos(g_aux, g_target) = g_aux · g_target / (|g_aux| |g_target|)
///
/// over the shared trainable parameters: every parameter the run trains except the heads (with a
/// parameter-efficient method: the adapter, LoRA, prompt ... tensors and whatever else it trains in the
/// encoder). Heads are left out because each dataset has its own (other label sets), and a head no
/// other dataset touches cannot say whether two datasets agree. The reference (alon-albalak/FLAD)
/// compares the gradient of the shared LM head, its text-to-text models' only shared output layer.
public enum GradientAlignment {
    /// cos(a, b), accumulated in Double; 0 where either vector is zero (as `torch.cosine_similarity`,
    /// whose ε keeps 0/0 at 0).
    public static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "cosine: \(a.count) against \(b.count) values")
        var dot = 0.0, aa = 0.0, bb = 0.0
        for i in a.indices {
            let x = Double(a[i]), y = Double(b[i])
            dot += x * y; aa += x * x; bb += y * y
        }
        return aa > 0 && bb > 0 ? dot / (aa.squareRoot() * bb.squareRoot()) : 0
    }

    /// The parameters' gradients laid end to end (zeros for a parameter without one).
    public static func flatGradients(_ parameters: [Tensor]) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(parameters.reduce(0) { $0 + $1.count })
        for p in parameters {
            if let g = p.grad { let d = g.data; for j in 0..<p.count { out.append(d[j]) } }
            else { out.append(contentsOf: repeatElement(0, count: p.count)) }
        }
        return out
    }

    /// Backpropagates `first`, then `second`, into the parameters' `.grad`, where they add up (one step
    /// trains on both), and returns both loss values and the cosine between the two gradients over
    /// `shared`, each gradient being what its own backward pass added. Where a loss is not finite it
    /// is not backpropagated, the losses after it are not computed (NaN) and there is no cosine: the
    /// caller skips the step.
    public static func backwardPair(shared: [Tensor], first: () throws -> Tensor,
                                    second: () throws -> Tensor) throws -> (first: Float, second: Float, cosine: Double?) {
        // What was there before (nothing, after the trainer's zeroGrad) is not either loss's.
        let before = shared.contains { $0.grad != nil } ? flatGradients(shared) : nil
        let firstLoss = try first()
        let a = try firstLoss.item()
        guard a.isFinite else { return (a, .nan, nil) }
        try firstLoss.backward()
        var firstGrad = flatGradients(shared)
        if let before { for i in firstGrad.indices { firstGrad[i] -= before[i] } }
        let secondLoss = try second()
        let b = try secondLoss.item()
        guard b.isFinite else { return (a, b, nil) }
        let afterFirst = before == nil ? firstGrad : flatGradients(shared)
        try secondLoss.backward()
        // The second gradient is the growth since the first pass, taken parameter by parameter, so no
        // third copy of every gradient is made.
        var dot = 0.0, aa = 0.0, bb = 0.0, offset = 0
        for p in shared {
            let g = p.grad?.data
            for j in 0..<p.count {
                let x = Double(firstGrad[offset + j]), y = Double((g?[j] ?? 0) - afterFirst[offset + j])
                dot += x * y; aa += x * x; bb += y * y
            }
            offset += p.count
        }
        return (a, b, aa > 0 && bb > 0 ? dot / (aa.squareRoot() * bb.squareRoot()) : 0)
    }
}
