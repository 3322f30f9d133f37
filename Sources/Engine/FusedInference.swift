import Foundation

/// Inference-only fusions. Under no-grad, a transformer's MLP half,
/// x + fc2(GELU(fc1(LayerNorm(x)))), runs in blocks of rows small enough that the 4x-wide hidden
/// activations stay in cache: one pass over memory instead of five round trips of a 30 MB tensor
/// (LayerNorm out, fc1 out with its bias, GELU in and out, fc2 in).
extension Tensor {
    package static func fusedResidualMLP(_ x: Tensor, lnWeight: Tensor?, lnBias: Tensor?, eps: Float,
                                        fc1Weight: Tensor, fc1Bias: Tensor?, fc2Weight: Tensor, fc2Bias: Tensor?,
                                        approximateGELU: Bool) throws -> Tensor {
        let d = x.shape.last ?? 0, hidden = fc1Weight.shape[0]
        try check(fc1Weight.shape == [hidden, d] && fc2Weight.shape == [d, hidden],
                  "fusedResidualMLP: weights \(fc1Weight.shape), \(fc2Weight.shape) do not fit width \(d)")
        let rows = x.count / Swift.max(d, 1)
        let out = Tensor.empty(x.shape)
        // A multiple of the micro-kernel's 6 rows: 64 ran 11 tiles for 64 rows, 3% of the MLP's FMAs on
        // padding rows; 66 x 768 hidden floats (203 KB) still sit in L2.
        let blockRows = 66
        let blocks = (rows + blockRows - 1) / blockRows
        let px = UnsafeSendable(value: x.data), po = UnsafeSendable(value: out.data)
        let lnW = UnsafeSendable(value: lnWeight?.data), lnB = UnsafeSendable(value: lnBias?.data)
        let w1 = UnsafeSendable(value: fc1Weight.data), w2 = UnsafeSendable(value: fc2Weight.data)
        let bias1 = UnsafeSendable(value: fc1Bias?.data), bias2 = UnsafeSendable(value: fc2Bias?.data)
        let next = TaskCounter()
        let workers = Swift.min(Threading.threads, blocks)
        // Both weights packed once per call for the micro-kernel where it applies (PackedLinear.swift).
        let usePacked = PackedWeight.isUsable(outFeatures: hidden) && PackedWeight.isUsable(outFeatures: d)
        let packed1 = usePacked ? PackedWeight(fc1Weight.data, outFeatures: hidden, inFeatures: d) : nil
        let packed2 = usePacked ? PackedWeight(fc2Weight.data, outFeatures: d, inFeatures: hidden) : nil
        defer { packed1?.release(); packed2?.release() }
        DispatchQueue.concurrentPerform(iterations: Swift.max(workers, 1)) { _ in
            let pw = lnW.value, pb = lnB.value, b1 = bias1.value, b2 = bias2.value
            let normed = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * d)
            let h = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * hidden)
            defer { normed.deallocate(); h.deallocate() }
            while let blk = next.take(below: blocks) {
                let r0 = blk * blockRows, n = Swift.min(blockRows, rows - r0)
                for r in 0..<n {
                    _ = Kernels.layerNormRow(px.value + (r0 + r) * d, normed + r * d, d, weight: pw, bias: pb, eps: eps)
                }
                if let packed1 {
                    packed1.apply(rows: n, x: normed, ldx: d, c: h, ldc: hidden, accumulate: false, bias: b1)
                } else {
                    if let b1 { for r in 0..<n { (h + r * hidden).update(from: b1, count: hidden) } }
                    Kernels.gemmSerial(transA: false, transB: true, m: n, n: hidden, k: d, a: normed, lda: d, b: w1.value, ldb: d,
                                       beta: b1 == nil ? 0 : 1, c: h, ldc: hidden)
                }
                VMath.gelu(h, h, n * hidden, approximate: approximateGELU)
                let o = po.value + r0 * d
                if let packed2 {
                    // Residual and bias join in the micro-kernel's store.
                    packed2.apply(rows: n, x: h, ldx: hidden, c: o, ldc: d, accumulate: false, bias: b2,
                                  residual: px.value + r0 * d)
                } else {
                    // Residual and bias first, then accumulate fc2 into them.
                    for r in 0..<n {
                        let xi = px.value + (r0 + r) * d, oi = o + r * d
                        for j in 0..<d { oi[j] = xi[j] + (b2?[j] ?? 0) }
                    }
                    Kernels.gemmSerial(transA: false, transB: true, m: n, n: d, k: hidden, a: h, lda: hidden, b: w2.value, ldb: hidden,
                                       beta: 1, c: o, ldc: d)
                }
            }
        }
        return out
    }

    /// Inference-only LN(x) · Wᵀ + b (a pre-LN block's qkv projection), in blocks of rows whose normalised
    /// copy stays in cache instead of a LayerNorm pass over the whole tensor and a second pass to read it.
    /// Falls back to `layerNorm` then `linear` where the micro-kernel does not apply.
    package static func fusedLayerNormLinear(_ x: Tensor, lnWeight: Tensor?, lnBias: Tensor?, eps: Float,
                                            weight: Tensor, bias: Tensor?) throws -> Tensor {
        let d = x.shape.last ?? 0, outF = weight.shape.first ?? 0
        try check(weight.shape == [outF, d], "fusedLayerNormLinear: weight \(weight.shape) does not fit width \(d)")
        if let bias { try check(bias.shape == [outF], "fusedLayerNormLinear: bias shape \(bias.shape), expected [\(outF)]") }
        if let lnWeight { try check(lnWeight.shape == [d], "fusedLayerNormLinear: norm weight shape \(lnWeight.shape), expected [\(d)]") }
        if let lnBias { try check(lnBias.shape == [d], "fusedLayerNormLinear: norm bias shape \(lnBias.shape), expected [\(d)]") }
        let rows = x.count / Swift.max(d, 1)
        guard rows >= 192, PackedWeight.isUsable(outFeatures: outF) else {
            return try x.layerNorm(weight: lnWeight, bias: lnBias, eps: eps).linear(weight: weight, bias: bias)
        }
        let out = Tensor.empty(Array(x.shape.dropLast()) + [outF])
        let packed = PackedWeight(weight.data, outFeatures: outF, inFeatures: d)
        packed.applyParallel(rows: rows, x: x.data, bias: bias?.data,
                             norm: PackedWeight.RowNorm(weight: lnWeight?.data, bias: lnBias?.data, eps: eps), out: out.data)
        packed.release()
        return out
    }
}
