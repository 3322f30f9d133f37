import Foundation

/// y = x · Wᵀ (+ bias) on the engine's own micro-kernel (6 x 16, 6 x 32 on AVX-512), for the linear layers of a transformer.
///
/// OpenBLAS called on 64-row blocks ran these shapes at ~70 GFLOP/s per core here (it re-packs the
/// whole weight for every call); packing the weight once per call into `cols`-wide panels measured
/// 80-90, and reading the rows of x where they lie instead of copying them into 6-row tiles 2% more
/// end to end (docs/BENCHMARKS.md). Only built with FMA code generation
/// (scripts/build-flags.sh); elsewhere, and for widths that are not a multiple of `MicroKernel.cols`, OpenBLAS runs.
struct PackedWeight: @unchecked Sendable {  // an immutable pointer to packed floats
    let panels: UnsafeMutablePointer<Float>
    let outFeatures: Int, inFeatures: Int

    static func isUsable(outFeatures: Int) -> Bool {
        MicroKernel.isFast && outFeatures % MicroKernel.cols == 0
    }

    /// Packs W [out, in] (row-major) as Wᵀ panels; `release()` returns the memory to the pool.
    init(_ w: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int) {
        self.outFeatures = outFeatures; self.inFeatures = inFeatures
        panels = BufferPool.shared.take(outFeatures * inFeatures)
        let pw = UnsafeSendable(value: w), pp = UnsafeSendable(value: panels)
        let panelCount = outFeatures / MicroKernel.cols, panelSize = inFeatures * MicroKernel.cols
        parallelFor(panelCount, costPerItem: panelSize) { range in
            for p in range {
                MicroKernel.packTransposedPanels(pw.value + p * panelSize, ld: inFeatures, n: MicroKernel.cols, d: inFeatures,
                                                 into: pp.value + p * panelSize)
            }
        }
    }

    func release() { BufferPool.shared.give(panels, count: outFeatures * inFeatures) }

    /// out = x · Wᵀ + bias (+ residual) for a [out, in] weight tensor: packs, runs on all threads, frees.
    static func linear(rows: Int, x: UnsafePointer<Float>, weight: Tensor, bias: Tensor?,
                       residual: UnsafePointer<Float>? = nil, out: UnsafeMutablePointer<Float>) {
        EngineChecks.once
        let packed = PackedWeight(weight.data, outFeatures: weight.shape[0], inFeatures: weight.shape[1])
        packed.applyParallel(rows: rows, x: x, bias: bias?.data, residual: residual, out: out)
        packed.release()
    }

    /// c[rows, out] (=|+=) x[rows, in] · Wᵀ (+ bias + residual), single-threaded (callers split rows
    /// across threads). `residual` is a [rows, out] matrix with row stride `out`.
    func apply(rows: Int, x: UnsafePointer<Float>, ldx: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
               accumulate: Bool, bias: UnsafePointer<Float>? = nil, residual: UnsafePointer<Float>? = nil) {
        MicroKernel.gemm(m: rows, n: outFeatures, k: inFeatures, alpha: 1, a: x, rowStride: ldx,
                         b: panels, ldb: MicroKernel.cols, panelStride: inFeatures * MicroKernel.cols, c: c, ldc: ldc,
                         accumulate: accumulate, kBlock: MicroKernel.linearKBlock,
                         bias: bias, residual: residual, residualStride: outFeatures)
    }

    /// A LayerNorm applied to each row of x before the product (see `applyParallel`).
    struct RowNorm {
        let weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, eps: Float
    }

    /// out[rows, out] = x · Wᵀ + bias (+ residual) over all threads, in blocks of rows handed out
    /// dynamically; bias and residual join in the micro-kernel's store, so `out` is written once.
    /// With `norm`, each block of x is layer-normalised into a cached buffer first, so LN(x) · Wᵀ never
    /// writes the normalised tensor out.
    func applyParallel(rows: Int, x: UnsafePointer<Float>, bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil,
                       norm: RowNorm? = nil, out: UnsafeMutablePointer<Float>) {
        let blockRows = 96
        let blocks = (rows + blockRows - 1) / blockRows
        let px = UnsafeSendable(value: x), po = UnsafeSendable(value: out)
        let pb = UnsafeSendable(value: bias), pr = UnsafeSendable(value: residual)
        let pn = UnsafeSendable(value: norm)
        let next = TaskCounter()
        let normedSize = norm == nil ? 0 : blockRows * inFeatures
        let (n, k) = (outFeatures, inFeatures)
        DispatchQueue.concurrentPerform(iterations: max(1, min(Threading.threads, blocks))) { _ in
            // Only a normalising call needs the row buffer; a plain linear takes nothing extra per call.
            let normed = normedSize > 0 ? BufferPool.shared.take(normedSize) : nil
            defer { if let normed { BufferPool.shared.give(normed, count: normedSize) } }
            while let blk = next.take(below: blocks) {
                let r0 = blk * blockRows, m = min(blockRows, rows - r0)
                var a = UnsafePointer(px.value + r0 * k)
                if let ln = pn.value, let normed {
                    for r in 0..<m { _ = Kernels.layerNormRow(a + r * k, normed + r * k, k, weight: ln.weight, bias: ln.bias, eps: ln.eps) }
                    a = UnsafePointer(normed)
                }
                apply(rows: m, x: a, ldx: k, c: po.value + r0 * n, ldc: n, accumulate: false,
                      bias: pb.value, residual: pr.value.map { $0 + r0 * n })
            }
        }
    }
}
