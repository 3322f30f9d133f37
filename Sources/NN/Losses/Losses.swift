import Foundation
import Engine

/// Loss functions with PyTorch's names and defaults (mean reduction). The fused kernels live on
/// `Tensor`; this namespace adds the composite ones.
public enum Losses {
    /// `F.cross_entropy` with class indices.
    public static func crossEntropy(_ logits: Tensor, _ targets: [Int], labelSmoothing: Float = 0) throws -> Tensor {
        try logits.crossEntropy(targets: targets, labelSmoothing: labelSmoothing)
    }

    /// Cross-entropy against soft targets (mixup, label distributions).
    public static func crossEntropy(_ logits: Tensor, soft targets: Tensor) throws -> Tensor {
        try logits.crossEntropy(softTargets: targets)
    }

    public static func bceWithLogits(_ logits: Tensor, _ targets: Tensor) throws -> Tensor {
        try logits.binaryCrossEntropyWithLogits(targets: targets)
    }

    public static func mse(_ input: Tensor, _ target: Tensor) throws -> Tensor { try input.mseLoss(target) }

    /// A teacher's targets at temperature T from its logits z_t [N, C]: softmax(z_t / T) per row, or for
    /// multi-label σ(z_t / T) per class (what `distillation` takes; mixup mixes these, not the logits).
    public static func softenedTeacher(_ teacherLogits: Tensor, temperature: Float, multiLabel: Bool) throws -> Tensor {
        try check(temperature > 0, "distillation: temperature \(temperature) must be positive")
        let scaled = teacherLogits * (1 / temperature)
        return multiLabel ? scaled.sigmoid() : try scaled.softmax(axis: -1)
    }

    /// Knowledge distillation (Hinton et al., 2015) of student logits z_s [N, C] toward a teacher's softened
    /// targets p = `softenedTeacher(z_t, T)`:
    ///
    ///     single-label:  T² · mean_n KL(p_n ‖ softmax(z_s,n / T))
    ///     multi-label:   T² · mean_{n,c} [BCE(z_s,nc / T, p_nc) − H(p_nc)]      (a binary KL per class)
    ///
    /// T² keeps the gradient's scale as T changes (the soft targets' gradients scale as 1/T²). The teacher's
    /// entropy is a constant: it makes the value a divergence (0 when the student agrees) without changing
    /// the gradient, which is the soft-target cross-entropy's.
    public static func distillation(student: Tensor, teacher p: Tensor, temperature: Float, multiLabel: Bool) throws -> Tensor {
        try check(student.rank == 2 && p.shape == student.shape, "distillation: teacher targets \(p.shape) must match student logits \(student.shape)")
        try check(temperature > 0, "distillation: temperature \(temperature) must be positive")
        let scaled = student * (1 / temperature)
        var entropy: Double = 0
        for i in 0..<p.count {
            let q = Double(p.data[i])
            if q > 0 { entropy -= q * Foundation.log(q) }
            if multiLabel && q < 1 { entropy -= (1 - q) * Foundation.log(1 - q) }
        }
        let (n, c) = (student.shape[0], student.shape[1])
        entropy /= Double(multiLabel ? max(n * c, 1) : max(n, 1))
        let divergence = try (multiLabel ? scaled.binaryCrossEntropyWithLogits(targets: p) : scaled.crossEntropy(softTargets: p))
            - Tensor.scalar(Float(entropy))
        return divergence * (temperature * temperature)
    }

    /// InfoNCE: for each row i of `queries` the positive is row i of `keys` and every other row is a
    /// negative. Logits are qᵢ·kⱼ / τ; the loss is the mean cross-entropy against the diagonal.
    /// Works on [M, D] or batched [B, M, D] (one softmax per clip, as SSAST's discriminative loss).
    public static func infoNCE(_ queries: Tensor, _ keys: Tensor, temperature: Float = 1) throws -> Tensor {
        try check(queries.shape == keys.shape && (queries.rank == 2 || queries.rank == 3),
                  "infoNCE: queries \(queries.shape) and keys \(keys.shape) must both be [M, D] or [B, M, D]")
        try check(temperature > 0, "infoNCE: temperature must be positive")
        let q = queries.rank == 2 ? try queries.unsqueeze(0) : queries
        let k = keys.rank == 2 ? try keys.unsqueeze(0) : keys
        let (b, m) = (q.shape[0], q.shape[1])
        let logits = try q.matmul(k.transpose(1, 2)) * (1 / temperature)      // [B, M, M]
        let targets = (0..<b).flatMap { _ in Array(0..<m) }
        return try logits.reshape([b * m, m]).crossEntropy(targets: targets)
    }

    /// Fraction of rows whose highest logit is the diagonal (the pretext accuracy InfoNCE reports).
    public static func infoNCEAccuracy(_ queries: Tensor, _ keys: Tensor) throws -> Float {
        let q = queries.rank == 2 ? try queries.unsqueeze(0) : queries
        let k = keys.rank == 2 ? try keys.unsqueeze(0) : keys
        let logits = try GradMode.noGrad { try q.matmul(k.transpose(1, 2)) }
        let m = q.shape[1]
        let best = try logits.argmax(axis: -1)
        let hits = best.enumerated().filter { $0.element == $0.offset % m }.count
        return Float(hits) / Float(best.count)
    }
}
