import CBLAS
import Foundation

/// Fused scaled dot-product attention, softmax(Q Kᵀ · scale) V, computed block by block with an online
/// softmax (FlashAttention-style): memory is linear in sequence length and no N x N matrix is ever
/// built. The backward pass recomputes each score block from the saved log-sum-exp per query row.
///
/// Heads are addressed through strides, so the same kernel reads [B, H, N, D] tensors and the packed
/// [B, N, 3, H, D] output of a fused qkv projection without any permute copies.
struct HeadView {
    let base: UnsafeMutablePointer<Float>
    let batchStride: Int, headStride: Int, rowStride: Int
    @inline(__always) func at(_ b: Int, _ h: Int) -> UnsafeMutablePointer<Float> { base + b * batchStride + h * headStride }
}

enum AttentionKernel {
    // Block sizes measured on the encoder benchmark's shape (1212 tokens, head dim 64): larger GEMMs
    // amortise OpenBLAS's packing; a score block stays under 1 MiB per thread whatever the length.
    // Variables only so tests can shrink them to exercise the multi-block paths on small inputs.
    nonisolated(unsafe) static var queryBlock = 128
    nonisolated(unsafe) static var keyBlockMax = 1536
    nonisolated(unsafe) static var backwardKeyBlockMax = 512

    /// Splits `n` keys into equal blocks of at most `limit` (no ragged small last block).
    static func keyBlock(_ n: Int, limit: Int) -> Int {
        let blocks = (n + limit - 1) / limit
        return (n + blocks - 1) / blocks
    }

    /// Runs `body` for every (batch, head) pair in parallel; the GEMMs inside are single-threaded.
    static func forEachHead(_ batch: Int, _ heads: Int, _ body: (Int, Int) -> Void) {
        let total = batch * heads
        withoutActuallyEscaping(body) { f in
            let box = UnsafeSendable(value: f)
            let workers = min(Threading.threads, total)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var t = w
                while t < total { box.value(t / heads, t % heads); t += workers }
            }
        }
    }

    /// Forward: writes O and lse (log-sum-exp of the scaled scores per query row, [B, H, Nq]).
    static func forward(q: HeadView, k: HeadView, v: HeadView, o: HeadView, lse: UnsafeMutablePointer<Float>,
                        batch: Int, heads: Int, nq: Int, nk: Int, d: Int, dv: Int, scale: Float) {
        forEachHead(batch, heads) { b, h in
            let qp = q.at(b, h), kp = k.at(b, h), vp = v.at(b, h), op = o.at(b, h)
            let lseRow = lse + (b * heads + h) * nq
            let keyBlock = AttentionKernel.keyBlock(nk, limit: keyBlockMax)
            let s = BufferPool.shared.take(queryBlock * keyBlock)
            let acc = BufferPool.shared.take(queryBlock * dv)
            var rowMax = [Float](repeating: 0, count: queryBlock), rowSum = [Float](repeating: 0, count: queryBlock)
            defer { BufferPool.shared.give(s, count: queryBlock * keyBlock); BufferPool.shared.give(acc, count: queryBlock * dv) }
            var i0 = 0
            while i0 < nq {
                let bq = min(queryBlock, nq - i0)
                for r in 0..<bq { rowMax[r] = -.infinity; rowSum[r] = 0 }
                acc.update(repeating: 0, count: bq * dv)
                var j0 = 0
                while j0 < nk {
                    let bk = min(keyBlock, nk - j0)
                    Kernels.gemmSerial(transA: false, transB: true, m: bq, n: bk, k: d, alpha: scale,
                                 a: qp + i0 * q.rowStride, lda: q.rowStride, b: kp + j0 * k.rowStride, ldb: k.rowStride,
                                 c: s, ldc: bk)
                    for r in 0..<bq {
                        let row = s + r * bk
                        let m = max(rowMax[r], Kernels.rowMax(row, bk))
                        let sum = Kernels.expShiftSum(row, row, bk, m)
                        let correction = rowMax[r] == -.infinity ? 0 : Foundation.exp(rowMax[r] - m)
                        rowSum[r] = rowSum[r] * correction + sum
                        rowMax[r] = m
                        if correction != 1 {
                            let a = acc + r * dv
                            for c in 0..<dv { a[c] *= correction }
                        }
                    }
                    Kernels.gemmSerial(transA: false, transB: false, m: bq, n: dv, k: bk, a: s, lda: bk,
                                 b: vp + j0 * v.rowStride, ldb: v.rowStride, beta: 1, c: acc, ldc: dv)
                    j0 += bk
                }
                for r in 0..<bq {
                    let inv = 1 / rowSum[r]
                    let dst = op + (i0 + r) * o.rowStride, a = acc + r * dv
                    for c in 0..<dv { dst[c] = a[c] * inv }
                    lseRow[i0 + r] = rowMax[r] + Foundation.log(rowSum[r])
                }
                i0 += bq
            }
        }
    }

    /// Backward: given dO, accumulates dQ, dK, dV (which must start zeroed).
    static func backward(q: HeadView, k: HeadView, v: HeadView, o: HeadView, dO: HeadView,
                         dQ: HeadView, dK: HeadView, dV: HeadView, lse: UnsafePointer<Float>,
                         batch: Int, heads: Int, nq: Int, nk: Int, d: Int, dv: Int, scale: Float) {
        forEachHead(batch, heads) { b, h in
            let qp = q.at(b, h), kp = k.at(b, h), vp = v.at(b, h), op = o.at(b, h), gp = dO.at(b, h)
            let dqp = dQ.at(b, h), dkp = dK.at(b, h), dvp = dV.at(b, h)
            let lseRow = lse + (b * heads + h) * nq
            let keyBlock = AttentionKernel.keyBlock(nk, limit: backwardKeyBlockMax)
            let p = BufferPool.shared.take(queryBlock * keyBlock)
            let dp = BufferPool.shared.take(queryBlock * keyBlock)
            var delta = [Float](repeating: 0, count: nq)
            defer { BufferPool.shared.give(p, count: queryBlock * keyBlock); BufferPool.shared.give(dp, count: queryBlock * keyBlock) }
            for r in 0..<nq { delta[r] = Kernels.dot(gp + r * dO.rowStride, op + r * o.rowStride, dv) }
            var i0 = 0
            while i0 < nq {
                let bq = min(queryBlock, nq - i0)
                var j0 = 0
                while j0 < nk {
                    let bk = min(keyBlock, nk - j0)
                    // P = exp(scale Q Kᵀ − lse)
                    Kernels.gemmSerial(transA: false, transB: true, m: bq, n: bk, k: d, alpha: scale,
                                 a: qp + i0 * q.rowStride, lda: q.rowStride, b: kp + j0 * k.rowStride, ldb: k.rowStride,
                                 c: p, ldc: bk)
                    for r in 0..<bq {
                        let row = p + r * bk
                        _ = Kernels.expShiftSum(row, row, bk, lseRow[i0 + r])
                    }
                    // dV_j += Pᵀ dO_i
                    Kernels.gemmSerial(transA: true, transB: false, m: bk, n: dv, k: bq, a: p, lda: bk,
                                 b: gp + i0 * dO.rowStride, ldb: dO.rowStride, beta: 1, c: dvp + j0 * dV.rowStride, ldc: dV.rowStride)
                    // dP = dO_i V_jᵀ ; dS = P ⊙ (dP − delta)
                    Kernels.gemmSerial(transA: false, transB: true, m: bq, n: bk, k: dv, a: gp + i0 * dO.rowStride, lda: dO.rowStride,
                                 b: vp + j0 * v.rowStride, ldb: v.rowStride, c: dp, ldc: bk)
                    for r in 0..<bq {
                        let pr = p + r * bk, dr = dp + r * bk, dl = delta[i0 + r]
                        for c in 0..<bk { dr[c] = pr[c] * (dr[c] - dl) }
                    }
                    // dQ_i += scale dS K_j ; dK_j += scale dSᵀ Q_i
                    Kernels.gemmSerial(transA: false, transB: false, m: bq, n: d, k: bk, alpha: scale, a: dp, lda: bk,
                                 b: kp + j0 * k.rowStride, ldb: k.rowStride, beta: 1, c: dqp + i0 * dQ.rowStride, ldc: dQ.rowStride)
                    Kernels.gemmSerial(transA: true, transB: false, m: bk, n: d, k: bq, alpha: scale, a: dp, lda: bk,
                                 b: qp + i0 * q.rowStride, ldb: q.rowStride, beta: 1, c: dkp + j0 * dK.rowStride, ldc: dK.rowStride)
                    j0 += bk
                }
                i0 += bq
            }
        }
    }
}

extension Tensor {
    /// softmax(Q Kᵀ · scale) V for q [B, H, Nq, D], k [B, H, Nk, D], v [B, H, Nk, Dv]; scale defaults
    /// to 1/√D, as `torch.nn.functional.scaled_dot_product_attention`.
    public static func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float? = nil) throws -> Tensor {
        try check(q.rank == 4 && k.rank == 4 && v.rank == 4,
                  "scaledDotProductAttention: q, k, v must be [B, H, N, D], got \(q.shape), \(k.shape), \(v.shape)")
        let (b, h, nq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let nk = k.shape[2], dv = v.shape[3]
        try check(k.shape == [b, h, nk, d], "scaledDotProductAttention: k shape \(k.shape) does not match q \(q.shape)")
        try check(v.shape == [b, h, nk, dv], "scaledDotProductAttention: v shape \(v.shape) does not match k \(k.shape)")
        try check(nk > 0, "scaledDotProductAttention: no keys")
        let sc = scale ?? 1 / Float(d).squareRoot()
        func view(_ t: Tensor, _ n: Int, _ w: Int) -> HeadView {
            HeadView(base: t.data, batchStride: h * n * w, headStride: n * w, rowStride: w)
        }
        let out = Tensor.empty([b, h, nq, dv])
        let lse = Tensor.empty([b, h, nq])
        AttentionKernel.forward(q: view(q, nq, d), k: view(k, nk, d), v: view(v, nk, dv), o: view(out, nq, dv),
                                lse: lse.data, batch: b, heads: h, nq: nq, nk: nk, d: d, dv: dv, scale: sc)
        return out.recording([q, k, v]) { g in
            let dq = Tensor.zeros(q.shape), dk = Tensor.zeros(k.shape), dvv = Tensor.zeros(v.shape)
            AttentionKernel.backward(q: view(q, nq, d), k: view(k, nk, d), v: view(v, nk, dv), o: view(out, nq, dv),
                                     dO: view(g, nq, dv), dQ: view(dq, nq, d), dK: view(dk, nk, d), dV: view(dvv, nk, dv),
                                     lse: lse.data, batch: b, heads: h, nq: nq, nk: nk, d: d, dv: dv, scale: sc)
            return [dq, dk, dvv]
        }
    }

    /// Multi-head self-attention on the packed output of a fused qkv projection, [B, N, 3·H·Dh] laid
    /// out as (3, H, Dh) like timm's `Attention`; returns [B, N, H·Dh] with heads concatenated, ready for
    /// the output projection. No permutes are materialised in either direction.
    public func packedSelfAttention(heads: Int, scale: Float? = nil) throws -> Tensor {
        try check(rank == 3, "packedSelfAttention: input must be [B, N, 3·D], got \(shape)")
        let (b, n, w) = (shape[0], shape[1], shape[2])
        try check(w % (3 * heads) == 0, "packedSelfAttention: width \(w) is not divisible by 3 x \(heads) heads")
        let dim = w / 3, dh = dim / heads
        let sc = scale ?? 1 / Float(dh).squareRoot()
        let qkv = self
        func packed(_ t: Tensor, _ part: Int) -> HeadView {
            HeadView(base: t.data + part * dim, batchStride: n * w, headStride: dh, rowStride: w)
        }
        func merged(_ t: Tensor) -> HeadView { HeadView(base: t.data, batchStride: n * dim, headStride: dh, rowStride: dim) }
        let out = Tensor.empty([b, n, dim])
        let lse = Tensor.empty([b, heads, n])
        AttentionKernel.forward(q: packed(qkv, 0), k: packed(qkv, 1), v: packed(qkv, 2), o: merged(out), lse: lse.data,
                                batch: b, heads: heads, nq: n, nk: n, d: dh, dv: dh, scale: sc)
        return out.recording([qkv]) { g in
            let dqkv = Tensor.zeros(qkv.shape)
            AttentionKernel.backward(q: packed(qkv, 0), k: packed(qkv, 1), v: packed(qkv, 2), o: merged(out), dO: merged(g),
                                     dQ: packed(dqkv, 0), dK: packed(dqkv, 1), dV: packed(dqkv, 2), lse: lse.data,
                                     batch: b, heads: heads, nq: n, nk: n, d: dh, dv: dh, scale: sc)
            return [dqkv]
        }
    }
}
