import Foundation

/// Fused losses from logits: one pass computes the loss and the softmax needed by the gradient.
extension Tensor {
    /// Mean cross-entropy of logits [N, C] against class indices, with optional label smoothing ε
    /// (target = (1 − ε) one-hot + ε / C) and an ignore index, like `F.cross_entropy`.
    public func crossEntropy(targets: [Int], labelSmoothing: Float = 0, ignoreIndex: Int? = nil) throws -> Tensor {
        try check(rank == 2, "crossEntropy: logits must be [N, C], got \(shape)")
        let (n, c) = (shape[0], shape[1])
        try check(targets.count == n, "crossEntropy: \(targets.count) targets for \(n) rows of logits")
        try check(labelSmoothing >= 0 && labelSmoothing <= 1, "crossEntropy: label smoothing must be in [0, 1]")
        for (i, t) in targets.enumerated() where t != ignoreIndex {
            try check(t >= 0 && t < c, "crossEntropy: target \(t) at row \(i) is outside [0, \(c))")
        }
        let logp = Kernels.softmaxRows(self, log: true)
        let active = targets.filter { $0 != ignoreIndex }.count
        var total: Double = 0
        for i in 0..<n where targets[i] != ignoreIndex {
            let row = logp.data + i * c
            var smooth: Double = 0
            if labelSmoothing > 0 { for j in 0..<c { smooth += Double(row[j]) } }
            total -= Double(1 - labelSmoothing) * Double(row[targets[i]]) + Double(labelSmoothing) / Double(c) * smooth
        }
        let denom = Float(Swift.max(active, 1))
        let loss = Tensor.scalar(active == 0 ? .nan : Float(total) / denom)
        return loss.recording([self]) { g in
            let gx = Tensor.zeros([n, c])
            let scale = g.data[0] / denom
            for i in 0..<n where targets[i] != ignoreIndex {
                let row = logp.data + i * c, d = gx.data + i * c
                for j in 0..<c { d[j] = (Foundation.exp(row[j]) - labelSmoothing / Float(c)) * scale }
                d[targets[i]] -= (1 - labelSmoothing) * scale
            }
            return [gx]
        }
    }

    /// Mean cross-entropy against soft targets [N, C] (mixup): −Σ_j t_j log softmax(x)_j, averaged over N.
    public func crossEntropy(softTargets: Tensor) throws -> Tensor {
        try check(rank == 2 && softTargets.shape == shape, "crossEntropy: soft targets \(softTargets.shape) must match logits \(shape)")
        return try -((softTargets * logSoftmax(axis: -1)).sum(axis: 1).mean())
    }

    /// Mean binary cross-entropy with logits, computed stably as max(x, 0) − x·y + log(1 + e^{−|x|}).
    public func binaryCrossEntropyWithLogits(targets: Tensor) throws -> Tensor {
        try check(targets.shape == shape, "binaryCrossEntropyWithLogits: targets \(targets.shape) must match logits \(shape)")
        let x = self
        var total: Double = 0
        for i in 0..<count {
            let v = x.data[i], y = targets.data[i]
            total += Double(Swift.max(v, 0) - v * y + Foundation.log1p(Foundation.exp(-Swift.abs(v))))
        }
        let n = Float(Swift.max(count, 1))
        return Tensor.scalar(Float(total) / n).recording([x, targets]) { g in
            let s = g.data[0] / n
            var gx: Tensor?, gy: Tensor?
            if x.requiresGrad {
                gx = Tensor.empty(x.shape)
                for i in 0..<x.count { gx!.data[i] = (1 / (1 + Foundation.exp(-x.data[i])) - targets.data[i]) * s }
            }
            if targets.requiresGrad {
                gy = Tensor.empty(x.shape)
                for i in 0..<x.count { gy!.data[i] = -x.data[i] * s }
            }
            return [gx, gy]
        }
    }

    /// Mean squared error.
    public func mseLoss(_ target: Tensor) throws -> Tensor {
        try check(target.shape == shape, "mseLoss: target \(target.shape) must match input \(shape)")
        return try (self - target).square().mean()
    }
}
