import CBLAS
import Foundation

/// Matrix products through OpenBLAS's sgemm, always called single-threaded: the engine splits large
/// products across its own threads instead. OpenBLAS's idle pool threads spin on sched_yield for a
/// long time after each call and steal the cores from the engine's own kernels (seen as 9% of an
/// encoder profile in __schedule / sched_yield), so one thread pool does all the work.
extension Kernels {
    /// C = alpha * op(A) * op(B) + beta * C, row-major; op(X) = X or Xᵀ. Splits the larger output
    /// dimension across threads when the product is big enough to pay for it.
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let threads = Threading.threads
        if threads <= 1 || m * n * k < 1 << 21 || (m < 64 && n < 64) {
            gemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: c, ldc: ldc)
            return
        }
        let ua = UnsafeSendable(value: a), ub = UnsafeSendable(value: b), uc = UnsafeSendable(value: c)
        let splitRows = m >= n
        let extent = splitRows ? m : n
        // Chunk boundaries on multiples of 16 keep the micro-kernel's tiles whole.
        let chunks = threads
        DispatchQueue.concurrentPerform(iterations: chunks) { t in
            let lo = (extent * t / chunks) & ~15, hi = t == chunks - 1 ? extent : (extent * (t + 1) / chunks) & ~15
            guard hi > lo else { return }
            if splitRows {
                gemmSerial(transA: transA, transB: transB, m: hi - lo, n: n, k: k, alpha: alpha,
                           a: transA ? ua.value + lo : ua.value + lo * lda, lda: lda, b: ub.value, ldb: ldb,
                           beta: beta, c: uc.value + lo * ldc, ldc: ldc)
            } else {
                gemmSerial(transA: transA, transB: transB, m: m, n: hi - lo, k: k, alpha: alpha, a: ua.value, lda: lda,
                           b: transB ? ub.value + lo * ldb : ub.value + lo, ldb: ldb,
                           beta: beta, c: uc.value + lo, ldc: ldc)
            }
        }
    }

    /// Single-threaded sgemm (for callers that are already parallel, like attention).
    @inline(always)
    static func gemmSerial(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                           beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        BLASSetup.once
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

enum BLASSetup {
    /// OpenBLAS runs single-threaded; parallelism comes from the engine (see `Kernels.gemm`). The first
    /// product also checks the build and OpenBLAS's kernels against the CPU (`EngineChecks`).
    static let once: Void = {
        openblas_set_num_threads(1)
        EngineChecks.once
    }()
}

extension Threading {
    /// Sets the thread count of the engine's kernels (BLAS calls are split across the same threads).
    public static func setThreads(_ n: Int) { threads = max(1, n) }
}

extension Tensor {
    /// Matrix product with batch broadcasting, like `torch.matmul` for operands of rank >= 2
    /// (a rank-1 operand is treated as a row or column vector and the dimension dropped).
    public func matmul(_ other: Tensor) throws -> Tensor {
        if rank == 1 { return try unsqueeze(0).matmul(other).squeeze(-2) }
        if other.rank == 1 { return try matmul(other.unsqueeze(1)).squeeze(-1) }
        let a = self, b = other
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1]
        let k2 = b.shape[b.rank - 2], n = b.shape[b.rank - 1]
        try check(k == k2, "matmul: inner dimensions differ: \(a.shape) x \(b.shape) (\(k) vs \(k2))")
        let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        let batch = try broadcastShape(batchA, batchB, op: "matmul (batch dimensions)")
        let out = Tensor.empty(batch + [m, n])
        if batchB.reduce(1, *) == 1 && batch == batchA {
            // One big GEMM: fold A's batch into its rows.
            let rows = batch.reduce(1, *) * m
            Kernels.gemm(transA: false, transB: false, m: rows, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: n, c: out.data, ldc: n)
        } else {
            Kernels.batchedGemm(batch: batch, batchA: batchA, batchB: batchB, m: m, n: n, k: k) { oa, ob, oc in
                Kernels.gemm(transA: false, transB: false, m: m, n: n, k: k,
                             a: a.data + oa * m * k, lda: k, b: b.data + ob * k * n, ldb: n, c: out.data + oc * m * n, ldc: n)
            }
        }
        // Each operand's gradient reads only the other: keep an operand only if the other needs it.
        // (The closure names neither operand directly, or it would capture both.)
        let keptA: Tensor? = b.requiresGrad ? a : nil, keptB: Tensor? = a.requiresGrad ? b : nil
        let shapeA = a.shape, shapeB = b.shape
        return out.recording([a, b]) { g in
            var ga: Tensor?, gb: Tensor?
            if let b = keptB {
                let full = Tensor.zeros(shapeA)  // accumulates over B's broadcast batch
                Kernels.batchedGemm(batch: batch, batchA: batchA, batchB: batchB, m: m, n: n, k: k) { oa, ob, oc in
                    Kernels.gemm(transA: false, transB: true, m: m, n: k, k: n, a: g.data + oc * m * n, lda: n,
                                 b: b.data + ob * k * n, ldb: n, beta: 1, c: full.data + oa * m * k, ldc: k)
                }
                ga = full
            }
            if let a = keptA {
                let full = Tensor.zeros(shapeB)
                if batchB.reduce(1, *) == 1 && batch == batchA {
                    let rows = batch.reduce(1, *) * m
                    Kernels.gemm(transA: true, transB: false, m: k, n: n, k: rows, a: a.data, lda: k,
                                 b: g.data, ldb: n, c: full.data, ldc: n)
                } else {
                    Kernels.batchedGemm(batch: batch, batchA: batchA, batchB: batchB, m: m, n: n, k: k) { oa, ob, oc in
                        Kernels.gemm(transA: true, transB: false, m: k, n: n, k: m, a: a.data + oa * m * k, lda: k,
                                     b: g.data + oc * m * n, ldb: n, beta: 1, c: full.data + ob * k * n, ldc: n)
                    }
                }
                gb = full
            }
            return [ga, gb]
        }
    }

    /// y = x Wᵀ + b + residual. Under no-grad, on the micro-kernel path, the residual joins in the
    /// product's store (one pass over the output instead of three); otherwise it is `linear` then `+`.
    public func linear(weight: Tensor, bias: Tensor?, adding residual: Tensor) throws -> Tensor {
        try check(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
        let (outF, inF) = (weight.shape[0], weight.shape[1])
        try check(rank >= 1 && shape[rank - 1] == inF, "linear: input shape \(shape) does not end in \(inF) (weight \(weight.shape))")
        if let bias { try check(bias.shape == [outF], "linear: bias shape \(bias.shape), expected [\(outF)]") }
        let recording = GradMode.isEnabled && (requiresGrad || weight.requiresGrad || bias?.requiresGrad == true || residual.requiresGrad)
        let rows = count / Swift.max(inF, 1)
        guard !recording, rows >= 192, PackedWeight.isUsable(outFeatures: outF),
              residual.shape == Array(shape.dropLast()) + [outF] else {
            return try linear(weight: weight, bias: bias) + residual
        }
        let out = Tensor.empty(residual.shape)
        PackedWeight.linear(rows: rows, x: data, weight: weight, bias: bias, residual: residual.data, out: out.data)
        return out
    }

    /// y = x Wᵀ + b over the last axis, with `weight` shaped [out, in] like `torch.nn.Linear`.
    public func linear(weight: Tensor, bias: Tensor?) throws -> Tensor {
        try check(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
        let inF = weight.shape[1], outF = weight.shape[0]
        try check(rank >= 1 && shape[rank - 1] == inF, "linear: input shape \(shape) does not end in \(inF) (weight \(weight.shape))")
        if let bias { try check(bias.shape == [outF], "linear: bias shape \(bias.shape), expected [\(outF)]") }
        let x = self
        let rows = count / inF
        let out = Tensor.empty(Array(shape.dropLast()) + [outF])
        if rows >= 192 && PackedWeight.isUsable(outFeatures: outF) {
            PackedWeight.linear(rows: rows, x: x.data, weight: weight, bias: bias, out: out.data)
        } else {
            if let bias {
                for r in 0..<rows { (out.data + r * outF).update(from: bias.data, count: outF) }
            }
            Kernels.gemm(transA: false, transB: true, m: rows, n: outF, k: inF, a: x.data, lda: inF,
                         b: weight.data, ldb: inF, beta: bias == nil ? 0 : 1, c: out.data, ldc: outF)
        }
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        // Only the weight gradient reads the input: a frozen layer does not keep its input alive (at
        // AST-base with adapters, the frozen layers' inputs were a fifth of the training peak).
        let savedX: Tensor? = weight.requiresGrad ? x : nil
        let needsInputGrad = x.requiresGrad, xShape = x.shape   // (naming x in the closure would keep it)
        return out.recording(inputs) { g in
            var gx: Tensor?, gw: Tensor?, gbias: Tensor?
            if needsInputGrad {
                gx = Tensor.empty(xShape)
                BackwardGemm.inputGradient(rows: rows, outFeatures: outF, inFeatures: inF, g: g.data, weight: weight.data, into: gx!.data,
                                           route: BackwardGemm.route(.inputGradient, outFeatures: outF, inFeatures: inF))
            }
            if let savedX {
                gw = Tensor.empty(weight.shape)
                BackwardGemm.weightGradient(rows: rows, outFeatures: outF, inFeatures: inF, g: g.data, x: savedX.data, into: gw!.data,
                                            route: BackwardGemm.route(.weightGradient, outFeatures: outF, inFeatures: inF))
            }
            if let bias, bias.requiresGrad {
                gbias = Kernels.sumAxis(Tensor(shape: [rows, outF], storage: g.storage), 0)
                gbias = Tensor(shape: [outF], storage: gbias!.storage)
            }
            return bias == nil ? [gx, gw] : [gx, gw, gbias]
        }
    }
}

extension Kernels {
    /// Calls `body(offsetA, offsetB, offsetOut)` (in matrices) for every batch index of `batch`.
    static func batchedGemm(batch: [Int], batchA: [Int], batchB: [Int], m: Int, n: Int, k: Int,
                            _ body: (Int, Int, Int) -> Void) {
        let total = batch.reduce(1, *)
        if batch.isEmpty { body(0, 0, 0); return }
        let sa = broadcastStrides(batchA, to: batch), sb = broadcastStrides(batchB, to: batch)
        var index = [Int](repeating: 0, count: batch.count)
        for c in 0..<total {
            var oa = 0, ob = 0, rem = c
            for d in stride(from: batch.count - 1, through: 0, by: -1) {
                index[d] = rem % batch[d]; rem /= batch[d]
                oa += index[d] * sa[d]; ob += index[d] * sb[d]
            }
            body(oa, ob, c)
        }
    }
}

/// Raw single-threaded products for callers that manage their own parallelism (feature extraction
/// runs one clip per core).
package enum SerialBLAS {
    /// C[m, n] = A[m, k] · B[n, k]ᵀ, row-major.
    package static func multiplyTransposed(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                          into c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int) {
        Kernels.gemmSerial(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: c, ldc: n)
    }
}
