import Foundation

/// Batch normalisation in training mode as one op: two passes forward (statistics, then
/// y = (x − μ)·σ̂⁻¹·γ + β) and two backward, saving only x and the per-channel μ and σ̂⁻¹ = 1/√(σ² + ε)
/// (the composite of mean, variance, subtract, divide, multiply and add held four activation-sized
/// tensors per layer for the backward pass). With M values per channel, x̂ = (x − μ)σ̂⁻¹:
/// dβ = Σ dy, dγ = Σ dy·x̂, dx = γσ̂⁻¹ (dy − Σdy / M − x̂ · Σ(dy·x̂) / M).
extension Tensor {
    func batchNormTraining(runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                           momentum: Float, eps: Float) throws -> Tensor {
        let x = self, n = shape[0], c = shape[1], plane = count / Swift.max(n * c, 1), m = n * plane
        try check(m > 1, "batchNorm: training needs more than one value per channel, got input shape \(shape)")
        let mean = Tensor.empty([c]), invStd = Tensor.empty([c]), out = Tensor.empty(shape)
        let px = UnsafeSendable(value: x.data), po = UnsafeSendable(value: out.data)
        let pm = UnsafeSendable(value: mean.data), ps = UnsafeSendable(value: invStd.data)
        let pw = UnsafeSendable(value: weight?.data), pb = UnsafeSendable(value: bias?.data)
        parallelFor(c, costPerItem: 3 * m) { channels in
            for ch in channels {
                // Double sums: a channel of a 10 s batch holds half a million values.
                var sum = 0.0
                for i in 0..<n { let p = px.value + (i * c + ch) * plane; for j in 0..<plane { sum += Double(p[j]) } }
                let mu = sum / Double(m)
                var sq = 0.0
                for i in 0..<n { let p = px.value + (i * c + ch) * plane; for j in 0..<plane { let d = Double(p[j]) - mu; sq += d * d } }
                let variance = sq / Double(m)
                let inv = Float(1 / (variance + Double(eps)).squareRoot())
                pm.value[ch] = Float(mu); ps.value[ch] = Float(variance)   // biased variance, until the update below
                let scale = inv * (pw.value?[ch] ?? 1), shift = (pb.value?[ch] ?? 0) - Float(mu) * scale
                for i in 0..<n {
                    let p = px.value + (i * c + ch) * plane, q = po.value + (i * c + ch) * plane
                    for j in 0..<plane { q[j] = p[j] * scale + shift }
                }
            }
        }
        for ch in 0..<c {
            let variance = invStd.data[ch]
            if let runningMean, let runningVar {
                runningMean.data[ch] = (1 - momentum) * runningMean.data[ch] + momentum * mean.data[ch]
                runningVar.data[ch] = (1 - momentum) * runningVar.data[ch] + momentum * variance * Float(m) / Float(m - 1)
            }
            invStd.data[ch] = 1 / (variance + eps).squareRoot()
        }
        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return out.recording(inputs) { go in
            let gx = x.requiresGrad ? Tensor.empty(x.shape) : nil
            let gw = weight?.requiresGrad == true ? Tensor.empty([c]) : nil
            let gb = bias?.requiresGrad == true ? Tensor.empty([c]) : nil
            let pg = UnsafeSendable(value: go.data), pgx = UnsafeSendable(value: gx?.data)
            let pgw = UnsafeSendable(value: gw?.data), pgb = UnsafeSendable(value: gb?.data)
            let px = UnsafeSendable(value: x.data), pw = UnsafeSendable(value: weight?.data)
            parallelFor(c, costPerItem: 3 * m) { channels in
                for ch in channels {
                    let mu = mean.data[ch], inv = invStd.data[ch]
                    var sdy = 0.0, sdyx = 0.0
                    for i in 0..<n {
                        let p = px.value + (i * c + ch) * plane, g = pg.value + (i * c + ch) * plane
                        for j in 0..<plane { let dy = Double(g[j]); sdy += dy; sdyx += dy * Double((p[j] - mu) * inv) }
                    }
                    pgb.value?[ch] = Float(sdy)
                    pgw.value?[ch] = Float(sdyx)
                    guard let gxp = pgx.value else { continue }
                    let k = (pw.value?[ch] ?? 1) * inv
                    let a = Float(sdy / Double(m)), b = Float(sdyx / Double(m))
                    for i in 0..<n {
                        let p = px.value + (i * c + ch) * plane, g = pg.value + (i * c + ch) * plane, d = gxp + (i * c + ch) * plane
                        for j in 0..<plane { d[j] = k * (g[j] - a - (p[j] - mu) * inv * b) }
                    }
                }
            }
            var grads: [Tensor?] = [gx]
            if weight != nil { grads.append(gw) }
            if bias != nil { grads.append(gb) }
            return grads
        }
    }
}
