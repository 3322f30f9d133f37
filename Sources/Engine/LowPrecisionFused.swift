import Foundation

extension LowPrecisionMatmul {
    /// Inference-only x + fc2(GELU(fc1(LN(x)))) with both products in bf16: the bf16 twin of
    /// `Tensor.fusedResidualMLP`. Rows go in blocks, one thread per block: each block is layer-normalised
    /// and rounded to bf16 row by row, fc1 runs with GELU as a oneDNN post-op and writes its hidden
    /// activations in bf16 (what fc2 reads, so they are never converted again), and fc2 adds its product
    /// and bias to the residual already copied into `out` (a sum post-op). Neither the normalised input
    /// nor the 4x-wide hidden tensor is ever materialised: per thread, a block of each stays in cache.
    package static func fusedResidualMLP(_ x: Tensor, norm: RowNorm, fc1: LowPrecisionMatmul, fc2: LowPrecisionMatmul,
                                         approximateGELU: Bool) throws -> Tensor {
        let d = x.shape.last ?? 0, hidden = fc1.outFeatures
        guard fc1.precision == .bf16, fc2.precision == .bf16 else { throw EngineError("fusedResidualMLP: bf16 layers only") }
        guard fc1.inFeatures == d, fc2.inFeatures == hidden, fc2.outFeatures == d else {
            throw EngineError("fusedResidualMLP: fc1 [\(fc1.outFeatures), \(fc1.inFeatures)] and fc2 [\(fc2.outFeatures), \(fc2.inFeatures)] do not fit width \(d)")
        }
        let rows = x.count / Swift.max(d, 1)
        let out = Tensor.empty(x.shape)
        // 64 rows: 64 x 768 bf16 hidden values (AST-tiny, 96 KB) or 64 x 3072 (base, 384 KB) stay in L2.
        let blockRows = 64
        let blocks = (rows + blockRows - 1) / blockRows
        let px = UnsafeSendable(value: x.data), po = UnsafeSendable(value: out.data)
        let next = TaskCounter(), failure = FirstErrorBox()
        DispatchQueue.concurrentPerform(iterations: Swift.max(1, Swift.min(Threading.threads, blocks))) { _ in
            let normed = UnsafeMutablePointer<Float>.allocate(capacity: d)
            let src = UnsafeMutablePointer<UInt16>.allocate(capacity: blockRows * d)
            let h = UnsafeMutablePointer<UInt16>.allocate(capacity: blockRows * hidden)
            defer { normed.deallocate(); src.deallocate(); h.deallocate() }
            while let blk = next.take(below: blocks) {
                let r0 = blk * blockRows, n = Swift.min(blockRows, rows - r0)
                let xs = px.value + r0 * d, o = po.value + r0 * d
                for r in 0..<n {
                    _ = Kernels.layerNormRow(xs + r * d, normed, d, weight: norm.weight, bias: norm.bias, eps: norm.eps)
                    toBF16(normed, src + r * d, d)
                }
                o.update(from: xs, count: n * d)   // the residual, which fc2's sum post-op adds to
                do {
                    try fc1.runSerially(rows: n, bf16Source: src, destination: h, epilogue: .geluToBF16(approximate: approximateGELU))
                    try fc2.runSerially(rows: n, bf16Source: h, destination: o, epilogue: .accumulate)
                } catch { failure.record(error); return }
            }
        }
        if let error = failure.error { throw error }
        return out
    }
}

/// The first error thrown by any of several threads.
final class FirstErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var error: Error?
    func record(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
}
