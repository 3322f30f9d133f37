import Foundation

/// The two products of a linear layer's backward pass, y = x Wᵀ with x [rows, in], W [out, in], g = ∂L/∂y:
///   input gradient  gx[rows, in] = g[rows, out] · W[out, in]   (layout NN)
///   weight gradient gw[out, in]  = gᵀ[out, rows] · x[rows, in] (layout TN, reduction over all rows)
/// each either on OpenBLAS (`Kernels.gemm`, split across the engine's threads) or on the engine's own
/// micro-kernel. `route(for:)` holds which one measured faster (docs/BENCHMARKS.md, session 16).
package enum BackwardGemm {
    package enum Layout: String, CaseIterable, Sendable { case inputGradient = "NN", weightGradient = "TN" }
    package enum Route: String, Sendable { case blas, microKernel = "micro" }

    /// The route a layout takes: the micro-kernel only in builds that have it (FMA code generation) and
    /// for widths it tiles (`in` a multiple of `MicroKernel.cols`); see `routeTable` for the choice.
    package static func route(_ layout: Layout, outFeatures: Int, inFeatures: Int) -> Route {
        guard PackedWeight.isUsable(outFeatures: inFeatures) else { return .blas }
        return routeTable[layout] ?? .blas
    }

    /// Measured per layout (`earshot bench backward-gemm`, docs/BENCHMARKS.md session 16): on the Zen 4 host,
    /// with OpenBLAS on its Cooperlake kernels, neither route won consistently at AST-tiny or AST-base shapes
    /// (micro-kernel 0.74-1.16x OpenBLAS, within the shared host's noise), so OpenBLAS keeps both. Where
    /// OpenBLAS would run a fallback core the CLI now restarts it on the right one (`BLASCore`).
    /// A variable so benchmarks and tests can switch routes.
    nonisolated(unsafe) package static var routeTable: [Layout: Route] = [.inputGradient: .blas, .weightGradient: .blas]

    /// gx[rows, in] = g[rows, out] · W[out, in].
    package static func inputGradient(rows: Int, outFeatures: Int, inFeatures: Int, g: UnsafePointer<Float>,
                                      weight: UnsafePointer<Float>, into gx: UnsafeMutablePointer<Float>, route: Route) {
        switch route {
        case .blas:
            Kernels.gemm(transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures, a: g, lda: outFeatures,
                         b: weight, ldb: inFeatures, c: gx, ldc: inFeatures)
        case .microKernel:
            // W [out, in] is already B's layout (k = out rows of n = in floats); packed into `cols`-wide
            // panels once, then blocks of 96 rows of g stream past them on all threads.
            let cols = MicroKernel.cols
            let panels = BufferPool.shared.take(outFeatures * inFeatures)
            defer { BufferPool.shared.give(panels, count: outFeatures * inFeatures) }
            MicroKernel.packPanels(weight, ld: inFeatures, n: outFeatures, w: inFeatures, rows: outFeatures, into: panels)
            let blockRows = 96, blocks = (rows + blockRows - 1) / blockRows
            let pg = UnsafeSendable(value: g), pp = UnsafeSendable(value: UnsafePointer(panels)), po = UnsafeSendable(value: gx)
            let next = TaskCounter()
            DispatchQueue.concurrentPerform(iterations: max(1, min(Threading.threads, blocks))) { _ in
                while let blk = next.take(below: blocks) {
                    let r0 = blk * blockRows, m = min(blockRows, rows - r0)
                    MicroKernel.gemm(m: m, n: inFeatures, k: outFeatures, alpha: 1, a: pg.value + r0 * outFeatures,
                                     rowStride: outFeatures, b: pp.value, ldb: cols, panelStride: outFeatures * cols,
                                     c: po.value + r0 * inFeatures, ldc: inFeatures, accumulate: false,
                                     kBlock: MicroKernel.linearKBlock)
                }
            }
        }
    }

    /// gw[out, in] = gᵀ · x, with g [rows, out] and x [rows, in].
    package static func weightGradient(rows: Int, outFeatures: Int, inFeatures: Int, g: UnsafePointer<Float>,
                                       x: UnsafePointer<Float>, into gw: UnsafeMutablePointer<Float>, route: Route) {
        switch route {
        case .blas:
            Kernels.gemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows, a: g, lda: outFeatures,
                         b: x, ldb: inFeatures, c: gw, ldc: inFeatures)
        case .microKernel:
            // A = gᵀ read in place (six neighbouring floats of a row of g per step: rowStride 1, kStride out);
            // B = x row-major. One block of output rows per thread (each block streams all of x once, in
            // k-blocks of 256 rows; the block's slice of g for one k-block stays in L2).
            let threads = Threading.threads
            let blockRows = max(48, ((outFeatures + threads - 1) / threads + 5) / 6 * 6), blocks = (outFeatures + blockRows - 1) / blockRows
            let pg = UnsafeSendable(value: g), px = UnsafeSendable(value: x), po = UnsafeSendable(value: gw)
            let next = TaskCounter()
            DispatchQueue.concurrentPerform(iterations: max(1, min(Threading.threads, blocks))) { _ in
                while let blk = next.take(below: blocks) {
                    let i0 = blk * blockRows, m = min(blockRows, outFeatures - i0)
                    MicroKernel.gemm(m: m, n: inFeatures, k: rows, alpha: 1, a: pg.value + i0, rowStride: 1, kStride: outFeatures,
                                     b: px.value, ldb: inFeatures, c: po.value + i0 * inFeatures, ldc: inFeatures,
                                     accumulate: false)
                }
            }
        }
    }
}
