import Foundation

/// Row kernels (softmax, log-softmax, layer norm) fused forward and backward, parallel over rows.
extension Kernels {
    /// Four independent running maxima: one compare-and-blend chain is latency-bound (~0.5 cycle per
    /// float here); four keep both vector ports busy.
    @inline(always)
    static func rowMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        @inline(always) func load(_ p: UnsafePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
        var m0 = V8(repeating: -.infinity), m1 = m0, m2 = m0, m3 = m0, j = 0
        while j + 32 <= n {
            let v0 = load(x + j), v1 = load(x + j + 8), v2 = load(x + j + 16), v3 = load(x + j + 24)
            m0.replace(with: v0, where: v0 .> m0); m1.replace(with: v1, where: v1 .> m1)
            m2.replace(with: v2, where: v2 .> m2); m3.replace(with: v3, where: v3 .> m3)
            j += 32
        }
        while j + 8 <= n { let v = load(x + j); m0.replace(with: v, where: v .> m0); j += 8 }
        m0.replace(with: m1, where: m1 .> m0); m2.replace(with: m3, where: m3 .> m2); m0.replace(with: m2, where: m2 .> m0)
        // Halves by hand: the standard library's `SIMD8.max()` stayed an out-of-line generic call (0.3% of
        // encoder inference in perf), once per 12-query strip row.
        var h = m0.lowHalf, g = m0.highHalf
        h.replace(with: g, where: g .> h)
        var q = h.lowHalf, u = h.highHalf
        q.replace(with: u, where: u .> q)
        var r = q[0] > q[1] ? q[0] : q[1]
        while j < n { if x[j] > r { r = x[j] }; j += 1 }
        return r
    }

    /// x = 2^(x - shift) in place (base-2 scores, see `VMath.exp2`); returns the sum.
    @inline(always)
    static func exp2ShiftSum(_ x: UnsafeMutablePointer<Float>, _ n: Int, _ shift: Float) -> Float {
        shiftMapSum(x, x, n, shift, Exp2Function.self)
    }

    /// y = exp(x - shift) written to `y`; returns the sum.
    @inline(always)
    static func expShiftSum(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ shift: Float) -> Float {
        shiftMapSum(x, y, n, shift, ExpFunction.self)
    }

    /// y = F(x - shift) written to `y` (which may be `x`); returns the sum. The tail is padded with
    /// -inf, which both exponentials map to (next to) zero, and only its real lanes are stored and summed.
    @inline(always)
    static func shiftMapSum<F: VectorFunction>(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                                               _ shift: Float, _: F.Type) -> Float {
        let s = V8(repeating: shift)
        var acc = V8(repeating: 0), j = 0
        while j + 8 <= n {
            let e = F.apply(UnsafeRawPointer(x + j).loadUnaligned(as: V8.self) - s)
            UnsafeMutableRawPointer(y + j).storeBytes(of: e, as: V8.self)
            acc += e; j += 8
        }
        var total = acc.sum()
        if j < n {
            var v = V8(repeating: -.infinity)
            for t in 0..<(n - j) { v[t] = x[j + t] }
            let e = F.apply(v - s)
            for t in 0..<(n - j) { y[j + t] = e[t]; total += e[t] }
        }
        return total
    }

    @inline(always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = V8(repeating: 0), j = 0
        while j + 8 <= n {
            acc += UnsafeRawPointer(a + j).loadUnaligned(as: V8.self) * UnsafeRawPointer(b + j).loadUnaligned(as: V8.self)
            j += 8
        }
        var total = acc.sum()
        while j < n { total += a[j] * b[j]; j += 1 }
        return total
    }

    /// One row of layer norm: y = (x − μ) / √(σ² + eps) · w + b; returns (μ, 1/√(σ² + eps)).
    @inline(always)
    static func layerNormRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ d: Int,
                             weight w: UnsafePointer<Float>?, bias b: UnsafePointer<Float>?, eps: Float) -> (Float, Float) {
        // Vector sums with two accumulators: a scalar float sum is one dependent add per element
        // (the compiler may not reorder it), which made layer norm ~3% of an encoder's inference.
        @inline(always) func load(_ p: UnsafePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
        var a0 = V8(repeating: 0), a1 = a0, j = 0
        while j + 16 <= d { a0 += load(x + j); a1 += load(x + j + 8); j += 16 }
        if j + 8 <= d { a0 += load(x + j); j += 8 }
        var s = (a0 + a1).sum()
        while j < d { s += x[j]; j += 1 }
        let mean = s / Float(d), m = V8(repeating: mean)
        a0 = V8(repeating: 0); a1 = a0; j = 0
        while j + 16 <= d {
            let t0 = load(x + j) - m, t1 = load(x + j + 8) - m
            a0 = VMath.fma(t0, t0, a0); a1 = VMath.fma(t1, t1, a1); j += 16
        }
        if j + 8 <= d { let t = load(x + j) - m; a0 = VMath.fma(t, t, a0); j += 8 }
        var v = (a0 + a1).sum()
        while j < d { let t = x[j] - mean; v += t * t; j += 1 }
        let rstd = 1 / (v / Float(d) + eps).squareRoot(), r = V8(repeating: rstd)
        j = 0
        while j + 8 <= d {
            var o = (load(x + j) - m) * r
            if let w { o *= load(w + j) }
            if let b { o += load(b + j) }
            UnsafeMutableRawPointer(y + j).storeBytes(of: o, as: V8.self)
            j += 8
        }
        while j < d {
            var o = (x[j] - mean) * rstd
            if let w { o *= w[j] }
            if let b { o += b[j] }
            y[j] = o; j += 1
        }
        return (mean, rstd)
    }

    /// Backward of one layer-norm row. With x̂ = (x − μ)·rstd and h = g·w (g where no weight):
    /// dx = rstd (h − mean(h) − x̂ mean(h x̂)); dw += g x̂ and db += g when asked for. Vector sums, as
    /// in `layerNormRow` (the scalar loop with per-element optional checks: 0.7% of a training step, now 0.3%).
    @inline(always)
    static func layerNormBackwardRow(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ d: Int, mean: Float, rstd: Float,
                                     weight w: UnsafePointer<Float>?, dx: UnsafeMutablePointer<Float>?,
                                     dWeight dw: UnsafeMutablePointer<Float>?, dBias db: UnsafeMutablePointer<Float>?) {
        @inline(always) func load(_ p: UnsafePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
        @inline(always) func store(_ v: V8, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self) }
        let m = V8(repeating: mean), r = V8(repeating: rstd)
        var sumH = V8(repeating: 0), sumHX = V8(repeating: 0), j = 0
        while j + 8 <= d {
            let gv = load(g + j), xh = (load(x + j) - m) * r
            let h = w.map { gv * load($0 + j) } ?? gv
            sumH += h; sumHX = VMath.fma(h, xh, sumHX)
            if let dw { store(VMath.fma(gv, xh, load(dw + j)), dw + j) }
            if let db { store(load(db + j) + gv, db + j) }
            j += 8
        }
        var totalH = sumH.sum(), totalHX = sumHX.sum()
        let tail = j
        while j < d {
            let xh = (x[j] - mean) * rstd, h = g[j] * (w?[j] ?? 1)
            totalH += h; totalHX += h * xh
            dw?[j] += g[j] * xh
            db?[j] += g[j]
            j += 1
        }
        guard let dx else { return }
        let meanH = totalH / Float(d), meanHX = totalHX / Float(d)
        let mh = V8(repeating: meanH), mhx = V8(repeating: meanHX)
        j = 0
        while j + 8 <= d {
            let gv = load(g + j), xh = (load(x + j) - m) * r
            let h = w.map { gv * load($0 + j) } ?? gv
            store(r * (h - mh - xh * mhx), dx + j)
            j += 8
        }
        for t in tail..<d {
            let xh = (x[t] - mean) * rstd
            dx[t] = rstd * (g[t] * (w?[t] ?? 1) - meanH - xh * meanHX)
        }
    }

    static func softmaxRows(_ x: Tensor, log: Bool) -> Tensor {
        let n = x.shape.last ?? 1, rows = x.count / Swift.max(n, 1)
        let out = Tensor.empty(x.shape)
        let px = x.data, po = out.data
        parallelFor(rows, costPerItem: n * 8) { range in
            for r in range {
                let xi = px + r * n, yi = po + r * n
                let m = rowMax(xi, n)
                let s = expShiftSum(xi, yi, n, m)
                if log {
                    let shift = m + Foundation.log(s)
                    for j in 0..<n { yi[j] = xi[j] - shift }
                } else {
                    let inv = 1 / s
                    for j in 0..<n { yi[j] *= inv }
                }
            }
        }
        return out
    }
}

extension Tensor {
    /// softmax along `axis`: exp(x - max) / Σ exp(x - max).
    public func softmax(axis: Int = -1) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "softmax")
        if a != rank - 1 { return try transpose(a, -1).softmax(axis: -1).transpose(a, -1) }
        let y = Kernels.softmaxRows(self, log: false)
        let n = shape.last ?? 1
        return y.recording([self]) { g in
            // dx = y ⊙ (g − Σ g y)
            let gx = Tensor.empty(y.shape)
            parallelFor(y.count / Swift.max(n, 1), costPerItem: n * 4) { range in
                for r in range {
                    let yi = y.data + r * n, gi = g.data + r * n, di = gx.data + r * n
                    let s = Kernels.dot(gi, yi, n)
                    for j in 0..<n { di[j] = yi[j] * (gi[j] - s) }
                }
            }
            return [gx]
        }
    }

    /// log-softmax along `axis`: x − max − log Σ exp(x − max).
    public func logSoftmax(axis: Int = -1) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "logSoftmax")
        if a != rank - 1 { return try transpose(a, -1).logSoftmax(axis: -1).transpose(a, -1) }
        let y = Kernels.softmaxRows(self, log: true)
        let n = shape.last ?? 1
        return y.recording([self]) { g in
            // dx = g − softmax ⊙ Σ g
            let gx = Tensor.empty(y.shape)
            for r in 0..<(y.count / Swift.max(n, 1)) {
                let yi = y.data + r * n, gi = g.data + r * n, di = gx.data + r * n
                var s: Float = 0
                for j in 0..<n { s += gi[j] }
                for j in 0..<n { di[j] = gi[j] - Foundation.exp(yi[j]) * s }
            }
            return [gx]
        }
    }

    /// Layer normalisation over the last axis: (x − μ) / √(σ² + eps) · weight + bias (biased σ²).
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float) throws -> Tensor {
        let d = shape.last ?? 0
        try check(d > 0, "layerNorm: input shape \(shape) has an empty last axis")
        if let weight { try check(weight.shape == [d], "layerNorm: weight shape \(weight.shape), expected [\(d)]") }
        if let bias { try check(bias.shape == [d], "layerNorm: bias shape \(bias.shape), expected [\(d)]") }
        let rows = count / d
        let x = self
        let out = Tensor.empty(shape)
        let stats = Tensor.empty([rows, 2])  // mean, rstd
        let pw = weight?.data, pb = bias?.data
        parallelFor(rows, costPerItem: d * 3) { range in
            for r in range {
                let (mean, rstd) = Kernels.layerNormRow(x.data + r * d, out.data + r * d, d, weight: pw, bias: pb, eps: eps)
                stats.data[2 * r] = mean; stats.data[2 * r + 1] = rstd
            }
        }
        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return out.recording(inputs) { g in
            let gx = x.requiresGrad ? Tensor.empty(x.shape) : nil
            let needW = weight?.requiresGrad ?? false, needB = bias?.requiresGrad ?? false
            let chunks = Swift.max(1, Swift.min(Threading.threads, rows))
            let partial = Tensor.zeros([chunks, 2, d])  // per-chunk dW, dB, summed after
            parallelFor(chunks, costPerItem: 1 << 20) { cr in
                for c in cr {
                    let dw = partial.data + c * 2 * d, db = dw + d
                    for r in (rows * c / chunks)..<(rows * (c + 1) / chunks) {
                        Kernels.layerNormBackwardRow(x.data + r * d, g.data + r * d, d, mean: stats.data[2 * r], rstd: stats.data[2 * r + 1],
                                                     weight: pw, dx: gx.map { $0.data + r * d },
                                                     dWeight: needW ? dw : nil, dBias: needB ? db : nil)
                    }
                }
            }
            var grads: [Tensor?] = [gx]
            if weight != nil {
                var gw: Tensor?
                if needW { gw = Tensor.zeros([d]); for c in 0..<chunks { for j in 0..<d { gw!.data[j] += partial.data[c * 2 * d + j] } } }
                grads.append(gw)
            }
            if bias != nil {
                var gb: Tensor?
                if needB { gb = Tensor.zeros([d]); for c in 0..<chunks { for j in 0..<d { gb!.data[j] += partial.data[c * 2 * d + d + j] } } }
                grads.append(gb)
            }
            return grads
        }
    }

    /// Batch normalisation over axis 1 of [N, C, ...]. In training (one fused op, BatchNormTraining.swift) it
    /// normalises with the batch's biased variance and updates the running statistics in place with the unbiased variance and
    /// `momentum` (PyTorch's convention: running = (1 − m) running + m batch).
    public func batchNorm(runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                          training: Bool, momentum: Float = 0.1, eps: Float = 1e-5) throws -> Tensor {
        try check(rank >= 2, "batchNorm: input must be [N, C, ...], got \(shape)")
        let c = shape[1]
        for (name, t) in [("runningMean", runningMean), ("runningVar", runningVar), ("weight", weight), ("bias", bias)] {
            if let t { try check(t.shape == [c], "batchNorm: \(name) shape \(t.shape), expected [\(c)]") }
        }
        if training {
            return try batchNormTraining(runningMean: runningMean, runningVar: runningVar, weight: weight, bias: bias,
                                         momentum: momentum, eps: eps)
        }
        guard let runningMean, let runningVar else { throw EngineError("batchNorm: evaluation mode needs running statistics") }
        var statShape = [Int](repeating: 1, count: rank); statShape[1] = c
        let mean = try runningMean.reshape(statShape), variance = try runningVar.reshape(statShape)
        var y = try (self - mean) / (variance + eps).sqrt()
        if let weight { y = try y * weight.reshape(statShape) }
        if let bias { y = try y + bias.reshape(statShape) }
        return y
    }

    /// x / max(‖x‖₂, 1e-12) along the last axis (`torch.nn.functional.normalize`, sentence-transformers'
    /// Normalize module): CLAP's embeddings, SSAST's clip-level term.
    public func l2Normalized() throws -> Tensor {
        let norm = try square().sum(axis: rank - 1, keepDim: true).sqrt().clamp(min: 1e-12)
        return try self / norm
    }

    /// Inverted dropout: zeroes elements with probability p and scales the rest by 1 / (1 − p).
    public func dropout(p: Float, training: Bool, generator: inout RandomGenerator) throws -> Tensor {
        try check(p >= 0 && p < 1, "dropout: probability must be in [0, 1), got \(p)")
        guard training, p > 0 else { return self }
        let mask = Tensor.empty(shape)
        let keep = 1 / (1 - p)
        for i in 0..<count { mask.data[i] = generator.nextUniform() < p ? 0 : keep }
        return try self * mask
    }

    public func dropout(p: Float, training: Bool) throws -> Tensor {
        try dropout(p: p, training: training, generator: &Random.global)
    }
}
