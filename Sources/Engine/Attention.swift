import CBLAS
import Foundation

/// Fused scaled dot-product attention, softmax(Q Kᵀ · scale + bias) V, computed block by block with an
/// online softmax (FlashAttention-style): memory is linear in sequence length and no N x N matrix is ever
/// built. The backward pass recomputes each score block from the saved log-sum-exp per query row.
///
/// Two optional extras, both applied per block so the plain path pays one branch per block: an additive
/// bias read through strides (0 along the dims it broadcasts over, so a Swin [H, N, N] table is never
/// expanded), and a valid key count per batch item (right-padded sequences): keys past it are skipped,
/// not masked, so they cost nothing and get exactly zero probability. A query row left with no key
/// (length 0, or a bias of -inf throughout) outputs zeros, as PyTorch's scaled_dot_product_attention
/// does since 2.5 (a plain softmax over all -inf gives NaN).
///
/// Heads are addressed through strides, so the same kernel reads [B, H, N, D] tensors and the packed
/// [B, N, 3, H, D] output of a fused qkv projection without any permute copies.
struct HeadView {
    let base: UnsafeMutablePointer<Float>
    let batchStride: Int, headStride: Int, rowStride: Int
    @inline(always) func at(_ b: Int, _ h: Int) -> UnsafeMutablePointer<Float> { base + b * batchStride + h * headStride }
}

enum AttentionKernel {
    // Block sizes measured on the encoder benchmark's shape (1212 tokens, head dim 64). Forward: a
    // 12-query strip's scores (12 x 1216 floats, 58 KB) stay near L1 through max, exp and the P·V
    // product, while K and V panels stream from L2 (12 x 1216 beat 128 x 768 by ~5% on two threads).
    // Backward: larger blocks amortise the transposed products (128 x 128 to 256 x 256 measured within
    // noise of 128 x 512 on Zen 3, whose 512 KB L2 does not hold the two 256 KB blocks). Variables only
    // so tests can shrink them to exercise the multi-block paths on small inputs.
    nonisolated(unsafe) static var queryBlock = 12
    nonisolated(unsafe) static var keyBlockMax = 1216
    nonisolated(unsafe) static var backwardQueryBlock = 128
    nonisolated(unsafe) static var backwardKeyBlockMax = 512
    /// Whether the blocks' products run on the micro-kernel (FMA builds) or on OpenBLAS, whose kernels are
    /// chosen at run time: a baseline build's micro-kernel splits each vector into SSE registers without
    /// fused multiply-adds. A variable so tests exercise both paths in one build.
    nonisolated(unsafe) static var onMicroKernel = MicroKernel.isFast
    /// Query rows per forward task on the OpenBLAS path: OpenBLAS packs its operands on every call, so
    /// strips of 12 rows would repack each key block for every 12 queries.
    nonisolated(unsafe) static var blasQueryBlock = 96

    /// Splits `n` keys into equal blocks of at most `limit` (no ragged small last block).
    @inline(always) static func roundUp(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m * m }

    static func keyBlock(_ n: Int, limit: Int) -> Int {
        let blocks = (n + limit - 1) / limit
        return (n + blocks - 1) / blocks
    }

    static let log2e: Float = 1.4426950408889634, ln2: Float = 0.6931471805599453

    /// Runs `body(task)` for `0..<total` on the engine's threads, handing out tasks dynamically so
    /// uneven tasks still balance; the GEMMs inside are single-threaded.
    static func parallelTasks(_ total: Int, _ body: (Int) -> Void) {
        parallelTasks(total, scratch: 0) { t, _ in body(t) }
    }

    /// `parallelTasks` with `scratch` floats per worker, taken once rather than once per task (the
    /// forward runs ~100 query-block tasks per head; their pool round trips were ~0.6% of AST inference).
    static func parallelTasks(_ total: Int, scratch: Int, _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let next = TaskCounter()
        withoutActuallyEscaping(body) { f in
            let box = UnsafeSendable(value: f)
            DispatchQueue.concurrentPerform(iterations: min(Threading.threads, total)) { _ in
                let buffer = BufferPool.shared.take(scratch)
                defer { BufferPool.shared.give(buffer, count: scratch) }
                while let t = next.take(below: total) { box.value(t, buffer) }
            }
        }
    }

    static func workers(_ total: Int) -> Int { min(Threading.threads, total) }

    /// `parallelTasks` that also passes the worker's index (below `workers(total)`), for per-worker
    /// accumulators.
    static func parallelTasks(_ total: Int, byWorker body: (_ worker: Int, _ task: Int) -> Void) {
        let next = TaskCounter()
        withoutActuallyEscaping(body) { f in
            let box = UnsafeSendable(value: f)
            DispatchQueue.concurrentPerform(iterations: workers(total)) { w in
                while let t = next.take(below: total) { box.value(w, t) }
            }
        }
    }

    /// dst += a · src over n floats.
    @inline(always) static func addRow(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int, times a: Float) {
        let av = V8(repeating: a)
        var j = 0
        while j + 8 <= n {
            let x = UnsafeRawPointer(src + j).loadUnaligned(as: V8.self), y = UnsafeRawPointer(dst + j).loadUnaligned(as: V8.self)
            UnsafeMutableRawPointer(dst + j).storeBytes(of: x * av + y, as: V8.self)
            j += 8
        }
        while j < n { dst[j] += a * src[j]; j += 1 }
    }

    static func forEachHead(_ batch: Int, _ heads: Int, _ body: (Int, Int) -> Void) {
        parallelTasks(batch * heads) { t in body(t / heads, t % heads) }
    }

    /// Forward: writes O and lse (log-sum-exp of the scaled scores per query row, [B, H, Nq]).
    /// Tasks are (batch, head, query block), so even one head with a long sequence uses every core.
    /// Scores are kept in base 2: the QKᵀ product is scaled by scale·log2(e), so the softmax needs
    /// 2^(s - max), cheaper than eˣ, and lse converts back with ln 2; a bias block is added times log2(e).
    /// `bias` is addressed as [B, H, Nq, Nk] (rows of Nk contiguous floats); `keyLengths[b]` keys of
    /// item b are valid. A row with no valid key gets lse = +inf, so the backward's exp(s − lse) is 0.
    static func forward(q: HeadView, k: HeadView, v: HeadView, o: HeadView, lse: UnsafeMutablePointer<Float>,
                        batch: Int, heads: Int, nq: Int, nk: Int, d: Int, dv: Int, scale: Float,
                        bias: HeadView? = nil, keyLengths: [Int]? = nil) {
        let micro = onMicroKernel
        let tiled = micro && dv % MicroKernel.cols == 0
        let nkPadded = roundUp(nk, MicroKernel.cols)
        let keyBlock = roundUp(AttentionKernel.keyBlock(nk, limit: keyBlockMax), MicroKernel.cols)
        let queryBlock = micro ? self.queryBlock : blasQueryBlock
        let pool = BufferPool.shared
        // K (as Kᵀ) and V packed once per head, panel-major: each `cols`-wide panel of a B operand is
        // contiguous, so it sits in L1 without the cache-set conflicts of the packed qkv's long rows.
        // (OpenBLAS packs for itself: nothing here on its path.)
        let kPack = micro ? d * nkPadded : 0, vPack = tiled ? dv * nkPadded : 0
        let headPack = kPack + vPack
        let packs = pool.take(batch * heads * headPack)
        defer { pool.give(packs, count: batch * heads * headPack) }
        if micro {
            forEachHead(batch, heads) { b, h in
                let base = packs + (b * heads + h) * headPack
                MicroKernel.packTransposedPanels(k.at(b, h), ld: k.rowStride, n: nk, d: d, into: base)
                if tiled { MicroKernel.packPanels(v.at(b, h), ld: v.rowStride, n: nk, w: dv, rows: nkPadded, into: base + kPack) }
            }
        }
        let queryBlocks = (nq + queryBlock - 1) / queryBlock
        // Per worker: a strip's scores, its output accumulator, and its running row maxima and sums.
        let sCount = queryBlock * keyBlock, accCount = queryBlock * dv
        parallelTasks(batch * heads * queryBlocks, scratch: sCount + accCount + 2 * queryBlock) { task, scratch in
            let head = task / queryBlocks, b = head / heads, h = head % heads
            let i0 = (task % queryBlocks) * queryBlock, bq = min(queryBlock, nq - i0)
            let qi = q.at(b, h) + i0 * q.rowStride, kp = k.at(b, h), vp = v.at(b, h), oi = o.at(b, h) + i0 * o.rowStride
            let kP = packs + head * headPack, vP = kP + kPack
            let lseRow = lse + head * nq + i0
            let alpha = scale * log2e
            let s = scratch, acc = scratch + sCount
            let rowMax = acc + accCount, rowSum = rowMax + queryBlock
            rowMax.update(repeating: -.infinity, count: bq)
            rowSum.update(repeating: 0, count: bq)
            acc.update(repeating: 0, count: bq * dv)
            let keys = keyLengths?[b] ?? nk
            var j0 = 0
            while j0 < keys {
                let bk = min(keyBlock, keys - j0), bkp = roundUp(bk, MicroKernel.cols)
                if micro {
                    MicroKernel.gemm(m: bq, n: bkp, k: d, alpha: alpha, a: qi, rowStride: q.rowStride,
                                     b: kP + (j0 / MicroKernel.cols) * d * MicroKernel.cols, ldb: MicroKernel.cols,
                                     panelStride: d * MicroKernel.cols, c: s, ldc: bkp, accumulate: false)
                } else {
                    Kernels.gemmSerial(transA: false, transB: true, m: bq, n: bk, k: d, alpha: alpha, a: qi, lda: q.rowStride,
                                       b: kp + j0 * k.rowStride, ldb: k.rowStride, c: s, ldc: bkp)
                }
                if let bias {
                    let br = bias.at(b, h) + (i0 * bias.rowStride + j0)
                    for r in 0..<bq { addRow(s + r * bkp, br + r * bias.rowStride, bk, times: log2e) }
                }
                for r in 0..<bq {
                    let row = s + r * bkp
                    let m = max(rowMax[r], Kernels.rowMax(row, bk))
                    // Every key so far has a -inf bias: the block adds nothing (and -inf − -inf is NaN).
                    if m == -.infinity { row.update(repeating: 0, count: bk); continue }
                    let sum = Kernels.exp2ShiftSum(row, bk, m)
                    let correction = rowMax[r] == -.infinity ? 0 : Foundation.exp2(rowMax[r] - m)
                    rowSum[r] = rowSum[r] * correction + sum
                    rowMax[r] = m
                    if correction != 1 {
                        let a = acc + r * dv
                        for c in 0..<dv { a[c] *= correction }
                    }
                }
                if tiled {
                    MicroKernel.gemm(m: bq, n: dv, k: bk, alpha: 1, a: s, rowStride: bkp, b: vP + j0 * MicroKernel.cols,
                                     ldb: MicroKernel.cols, panelStride: nkPadded * MicroKernel.cols, c: acc, ldc: dv, accumulate: true)
                } else {
                    Kernels.gemmSerial(transA: false, transB: false, m: bq, n: dv, k: bk, a: s, lda: bkp,
                                       b: vp + j0 * v.rowStride, ldb: v.rowStride, beta: 1, c: acc, ldc: dv)
                }
                j0 += bk
            }
            for r in 0..<bq {
                let empty = rowSum[r] == 0  // no valid key: zeros out (acc is still 0)
                let inv = empty ? 0 : 1 / rowSum[r]
                let dst = oi + r * o.rowStride, a = acc + r * dv
                for c in 0..<dv { dst[c] = a[c] * inv }
                lseRow[r] = empty ? .infinity : (rowMax[r] + Foundation.log2(rowSum[r])) * ln2
            }
        }
    }

    /// Backward: given dO, accumulates dQ, dK, dV (which must start zeroed). Recomputes each score
    /// block as P = exp(scale Q Kᵀ − lse), then dV += Pᵀ dO, dS = P ⊙ (dO Vᵀ − δ) with δ = rowsum(dO ⊙ O),
    /// dQ += scale dS K, dK += scale dSᵀ Q, and dBias += dS (the bias enters the scores unscaled).
    ///
    /// Tasks are heads, so where several heads share a bias slice (a bias broadcast over batch or
    /// heads) each worker sums its dS into its own copy of dBias, added up at the end: threads x bias
    /// floats, never B·H·Nq·Nk. `bias`, `dBias` and `keyLengths` as in `forward`; dBias starts zeroed.
    static func backward(q: HeadView, k: HeadView, v: HeadView, o: HeadView, dO: HeadView,
                         dQ: HeadView, dK: HeadView, dV: HeadView, lse: UnsafePointer<Float>,
                         batch: Int, heads: Int, nq: Int, nk: Int, d: Int, dv: Int, scale: Float,
                         bias: HeadView? = nil, dBias: HeadView? = nil, keyLengths: [Int]? = nil) {
        let tiled = onMicroKernel && d % MicroKernel.cols == 0 && dv % MicroKernel.cols == 0
        let nkPadded = roundUp(nk, MicroKernel.cols)
        let keyBlock = roundUp(AttentionKernel.keyBlock(nk, limit: backwardKeyBlockMax), MicroKernel.cols)
        let workers = workers(batch * heads)
        let partials: (base: UnsafeMutablePointer<Float>, span: Int)? = dBias.flatMap { g in
            guard workers > 1, (g.batchStride == 0 && batch > 1) || (g.headStride == 0 && heads > 1) else { return nil }
            let span = (batch - 1) * g.batchStride + (heads - 1) * g.headStride + (nq - 1) * g.rowStride + nk
            let base = BufferPool.shared.take(workers * span)
            base.update(repeating: 0, count: workers * span)
            return (base, span)
        }
        parallelTasks(batch * heads, byWorker: { worker, task in
            let b = task / heads, h = task % heads
            let dBiasHead = dBias.map { g in
                let base = partials.map { $0.base + worker * $0.span } ?? g.base
                return HeadView(base: base, batchStride: g.batchStride, headStride: g.headStride, rowStride: g.rowStride).at(b, h)
            }
            let qp = q.at(b, h), kp = k.at(b, h), vp = v.at(b, h), op = o.at(b, h), gp = dO.at(b, h)
            let dqp = dQ.at(b, h), dkp = dK.at(b, h), dvp = dV.at(b, h)
            let lseRow = lse + (b * heads + h) * nq
            let pool = BufferPool.shared
            // On the micro-kernel every B operand is packed panel-major (`cols`-wide panels, contiguous), as
            // the forward's are: Kᵀ and Vᵀ for the score products and K for dQ once per head, Q and dO once
            // per query block (reused by every key block). Read in place, their rows sit 3·H·Dh floats apart
            // in the packed qkv; Kᵀ and Vᵀ were [D, N] row-major. Panel-major, the tiny encoder's attention
            // layer (fwd + bwd, `earshot bench attention --train`) ran 206-277 ms against 272-285 ms and its
            // training step 1.16x → 1.26x PyTorch on Zen 3 (medians of rounds; docs/BENCHMARKS.md, session 24).
            let blockCount = backwardQueryBlock * keyBlock, kCount = d * nkPadded, vCount = dv * nkPadded
            let packCount = tiled ? 2 * kCount + vCount + backwardQueryBlock * (d + dv) : 0
            let p = pool.take(blockCount), dp = pool.take(blockCount), packs = pool.take(packCount)
            let kT = packs, vT = kT + kCount, kPanels = vT + vCount
            let qPanels = kPanels + kCount, gPanels = qPanels + backwardQueryBlock * d
            var delta = [Float](repeating: 0, count: nq)
            defer {
                pool.give(p, count: blockCount); pool.give(dp, count: blockCount); pool.give(packs, count: packCount)
            }
            for r in 0..<nq { delta[r] = Kernels.dot(gp + r * dO.rowStride, op + r * o.rowStride, dv) }
            let cols = MicroKernel.cols
            if tiled {
                MicroKernel.packTransposedPanels(kp, ld: k.rowStride, n: nk, d: d, into: kT)
                MicroKernel.packTransposedPanels(vp, ld: v.rowStride, n: nk, d: dv, into: vT)
                MicroKernel.packPanels(kp, ld: k.rowStride, n: nk, w: d, rows: nkPadded, into: kPanels)
            }
            let keys = keyLengths?[b] ?? nk
            var i0 = 0
            while i0 < nq {
                let bq = min(backwardQueryBlock, nq - i0)
                let qi = qp + i0 * q.rowStride, gi = gp + i0 * dO.rowStride, dqi = dqp + i0 * dQ.rowStride
                if tiled {
                    MicroKernel.packPanels(qi, ld: q.rowStride, n: bq, w: d, rows: bq, into: qPanels)
                    MicroKernel.packPanels(gi, ld: dO.rowStride, n: bq, w: dv, rows: bq, into: gPanels)
                }
                var j0 = 0
                while j0 < keys {
                    let bk = min(keyBlock, keys - j0), bkp = tiled ? roundUp(bk, MicroKernel.cols) : bk
                    let kj = kp + j0 * k.rowStride, vj = vp + j0 * v.rowStride
                    let dkj = dkp + j0 * dK.rowStride, dvj = dvp + j0 * dV.rowStride
                    if tiled {
                        MicroKernel.gemm(m: bq, n: bkp, k: d, alpha: scale, a: qi, rowStride: q.rowStride,
                                         b: kT + (j0 / cols) * d * cols, ldb: cols, panelStride: d * cols,
                                         c: p, ldc: bkp, accumulate: false)
                    } else {
                        Kernels.gemmSerial(transA: false, transB: true, m: bq, n: bk, k: d, alpha: scale, a: qi, lda: q.rowStride,
                                           b: kj, ldb: k.rowStride, c: p, ldc: bkp)
                    }
                    if let bias {
                        let br = bias.at(b, h) + (i0 * bias.rowStride + j0)
                        for r in 0..<bq {
                            let row = p + r * bkp
                            addRow(row, br + r * bias.rowStride, bk, times: 1)
                            // A row without any valid key (lse = +inf) has P = 0 exactly, not exp(-87).
                            if lseRow[i0 + r] == .infinity { row.update(repeating: 0, count: bk); continue }
                            _ = Kernels.expShiftSum(row, row, bk, lseRow[i0 + r])
                        }
                    } else {
                        for r in 0..<bq {
                            let row = p + r * bkp
                            _ = Kernels.expShiftSum(row, row, bk, lseRow[i0 + r])
                        }
                    }
                    if tiled {
                        MicroKernel.gemm(m: bk, n: dv, k: bq, alpha: 1, a: p, rowStride: 1, kStride: bkp,
                                         b: gPanels, ldb: cols, panelStride: bq * cols, c: dvj, ldc: dV.rowStride, accumulate: true)
                        MicroKernel.gemm(m: bq, n: bkp, k: dv, alpha: 1, a: gi, rowStride: dO.rowStride,
                                         b: vT + (j0 / cols) * dv * cols, ldb: cols, panelStride: dv * cols,
                                         c: dp, ldc: bkp, accumulate: false)
                    } else {
                        Kernels.gemmSerial(transA: true, transB: false, m: bk, n: dv, k: bq, a: p, lda: bkp,
                                           b: gi, ldb: dO.rowStride, beta: 1, c: dvj, ldc: dV.rowStride)
                        Kernels.gemmSerial(transA: false, transB: true, m: bq, n: bk, k: dv, a: gi, lda: dO.rowStride,
                                           b: vj, ldb: v.rowStride, c: dp, ldc: bkp)
                    }
                    for r in 0..<bq {
                        let pr = p + r * bkp, dr = dp + r * bkp, dl = delta[i0 + r]
                        for c in 0..<bk { dr[c] = pr[c] * (dr[c] - dl) }
                    }
                    if let dBiasHead, let rs = dBias?.rowStride {
                        let gb = dBiasHead + (i0 * rs + j0)
                        for r in 0..<bq { addRow(gb + r * rs, dp + r * bkp, bk, times: 1) }
                    }
                    if tiled {
                        MicroKernel.gemm(m: bq, n: d, k: bk, alpha: scale, a: dp, rowStride: bkp,
                                         b: kPanels + j0 * cols, ldb: cols, panelStride: nkPadded * cols,
                                         c: dqi, ldc: dQ.rowStride, accumulate: true)
                        MicroKernel.gemm(m: bk, n: d, k: bq, alpha: scale, a: dp, rowStride: 1, kStride: bkp,
                                         b: qPanels, ldb: cols, panelStride: bq * cols, c: dkj, ldc: dK.rowStride, accumulate: true)
                    } else {
                        Kernels.gemmSerial(transA: false, transB: false, m: bq, n: d, k: bk, alpha: scale, a: dp, lda: bkp,
                                           b: kj, ldb: k.rowStride, beta: 1, c: dqi, ldc: dQ.rowStride)
                        Kernels.gemmSerial(transA: true, transB: false, m: bk, n: d, k: bq, alpha: scale, a: dp, lda: bkp,
                                           b: qi, ldb: q.rowStride, beta: 1, c: dkj, ldc: dK.rowStride)
                    }
                    j0 += bk
                }
                i0 += bq
            }
        })
        if let partials, let g = dBias {
            for w in 0..<workers { addRow(g.base, partials.base + w * partials.span, partials.span, times: 1) }
            BufferPool.shared.give(partials.base, count: workers * partials.span)
        }
    }
}

/// Checked, broadcastable extras of an attention call, as the kernel reads them.
struct AttentionExtras {
    let bias: Tensor?
    let keyLengths: [Int]?
    /// Strides addressing `bias` as [B, H, Nq, Nk]: 0 along the dims it broadcasts over.
    let batchStride: Int, headStride: Int, rowStride: Int

    init(bias: Tensor?, keyLengths: [Int]?, batch: Int, heads: Int, nq: Int, nk: Int, op: String) throws {
        self.bias = bias
        self.keyLengths = keyLengths
        if let keyLengths {
            try check(keyLengths.count == batch, "\(op): \(keyLengths.count) key lengths for a batch of \(batch)")
            try check(keyLengths.allSatisfy { (0...nk).contains($0) }, "\(op): key lengths \(keyLengths) outside 0...\(nk)")
        }
        guard let bias else { (batchStride, headStride, rowStride) = (0, 0, 0); return }
        let s = Array(repeating: 1, count: max(0, 4 - bias.rank)) + bias.shape
        try check((2...4).contains(bias.rank) && [1, batch].contains(s[0]) && [1, heads].contains(s[1])
                  && [1, nq].contains(s[2]) && s[3] == nk,
                  "\(op): bias \(bias.shape) does not broadcast to [B, H, Nq, Nk] = \([batch, heads, nq, nk])")
        rowStride = s[2] == 1 ? 0 : nk
        headStride = s[1] == 1 ? 0 : s[2] * nk
        batchStride = s[0] == 1 ? 0 : s[1] * s[2] * nk
    }

    func view(_ t: Tensor) -> HeadView { HeadView(base: t.data, batchStride: batchStride, headStride: headStride, rowStride: rowStride) }
    var biasView: HeadView? { bias.map(view) }
    var inputs: [Tensor] { bias.map { [$0] } ?? [] }
    /// dBias, zeroed, when the bias needs a gradient.
    func biasGradient() -> Tensor? { bias.flatMap { $0.requiresGrad ? Tensor.zeros($0.shape) : nil } }
}

extension Tensor {
    /// softmax(Q Kᵀ · scale + bias) V for q [B, H, Nq, D], k [B, H, Nk, D], v [B, H, Nk, Dv]; scale
    /// defaults to 1/√D, as `torch.nn.functional.scaled_dot_product_attention`.
    ///
    /// - `bias`: added to the scaled scores, shaped [Nq, Nk], [H, Nq, Nk] or [B|1, H|1, Nq|1, Nk]
    ///   (PyTorch's float `attn_mask`); -inf entries mask (probability 2^-126, the exponentials' floor).
    ///   When it requires a gradient it gets dS = P ⊙ (dP − rowsum(dO ⊙ O)) summed over the dims it
    ///   broadcasts over (without building [B, H, Nq, Nk] unless it has that shape).
    /// - `keyLengths`: per batch item, how many keys (from the start) are valid; the rest get zero
    ///   probability, as a boolean `attn_mask` that is false for keys `j >= keyLengths[b]`.
    /// A query row with no valid key outputs zeros (PyTorch ≥ 2.5 does the same; softmax alone gives NaN).
    public static func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, bias: Tensor? = nil,
                                                 keyLengths: [Int]? = nil, scale: Float? = nil) throws -> Tensor {
        try check(q.rank == 4 && k.rank == 4 && v.rank == 4,
                  "scaledDotProductAttention: q, k, v must be [B, H, N, D], got \(q.shape), \(k.shape), \(v.shape)")
        let (b, h, nq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let nk = k.shape[2], dv = v.shape[3]
        try check(k.shape == [b, h, nk, d], "scaledDotProductAttention: k shape \(k.shape) does not match q \(q.shape)")
        try check(v.shape == [b, h, nk, dv], "scaledDotProductAttention: v shape \(v.shape) does not match k \(k.shape)")
        try check(nk > 0, "scaledDotProductAttention: no keys")
        let extras = try AttentionExtras(bias: bias, keyLengths: keyLengths, batch: b, heads: h, nq: nq, nk: nk,
                                         op: "scaledDotProductAttention")
        let sc = scale ?? 1 / Float(d).squareRoot()
        func view(_ t: Tensor, _ n: Int, _ w: Int) -> HeadView {
            HeadView(base: t.data, batchStride: h * n * w, headStride: n * w, rowStride: w)
        }
        let out = Tensor.empty([b, h, nq, dv])
        let lse = Tensor.empty([b, h, nq])
        AttentionKernel.forward(q: view(q, nq, d), k: view(k, nk, d), v: view(v, nk, dv), o: view(out, nq, dv),
                                lse: lse.data, batch: b, heads: h, nq: nq, nk: nk, d: d, dv: dv, scale: sc,
                                bias: extras.biasView, keyLengths: keyLengths)
        return out.recording([q, k, v] + extras.inputs) { g in
            let dq = Tensor.zeros(q.shape), dk = Tensor.zeros(k.shape), dvv = Tensor.zeros(v.shape)
            let dBias = extras.biasGradient()
            AttentionKernel.backward(q: view(q, nq, d), k: view(k, nk, d), v: view(v, nk, dv), o: view(out, nq, dv),
                                     dO: view(g, nq, dv), dQ: view(dq, nq, d), dK: view(dk, nk, d), dV: view(dvv, nk, dv),
                                     lse: lse.data, batch: b, heads: h, nq: nq, nk: nk, d: d, dv: dv, scale: sc,
                                     bias: extras.biasView, dBias: dBias.map(extras.view), keyLengths: keyLengths)
            return [dq, dk, dvv, dBias]
        }
    }

    /// Multi-head self-attention on the packed output of a fused qkv projection, [B, N, 3·H·Dh] laid
    /// out as (3, H, Dh) like timm's `Attention`; returns [B, N, H·Dh] with heads concatenated, ready for
    /// the output projection. No permutes are materialised in either direction. Per head,
    /// softmax(Q Kᵀ · scale + bias) V with `bias` and `keyLengths` as in `scaledDotProductAttention`
    /// (Nq = Nk = N): e.g. a Swin relative-position bias [H, N, N], or a shifted-window mask [B, 1, N, N].
    public func packedSelfAttention(heads: Int, bias: Tensor? = nil, keyLengths: [Int]? = nil,
                                    scale: Float? = nil) throws -> Tensor {
        try check(rank == 3, "packedSelfAttention: input must be [B, N, 3·D], got \(shape)")
        let (b, n, w) = (shape[0], shape[1], shape[2])
        try check(w % (3 * heads) == 0, "packedSelfAttention: width \(w) is not divisible by 3 x \(heads) heads")
        let extras = try AttentionExtras(bias: bias, keyLengths: keyLengths, batch: b, heads: heads, nq: n, nk: n,
                                         op: "packedSelfAttention")
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
                                batch: b, heads: heads, nq: n, nk: n, d: dh, dv: dh, scale: sc,
                                bias: extras.biasView, keyLengths: keyLengths)
        return out.recording([qkv] + extras.inputs) { g in
            let dqkv = Tensor.zeros(qkv.shape)
            let dBias = extras.biasGradient()
            AttentionKernel.backward(q: packed(qkv, 0), k: packed(qkv, 1), v: packed(qkv, 2), o: merged(out), dO: merged(g),
                                     dQ: packed(dqkv, 0), dK: packed(dqkv, 1), dV: packed(dqkv, 2), lse: lse.data,
                                     batch: b, heads: heads, nq: n, nk: n, d: dh, dv: dh, scale: sc,
                                     bias: extras.biasView, dBias: dBias.map(extras.view), keyLengths: keyLengths)
            return [dqkv, dBias]
        }
    }
}
