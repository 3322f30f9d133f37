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
