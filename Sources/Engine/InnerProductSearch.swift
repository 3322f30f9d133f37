import Foundation

/// Exact maximum-inner-product search: for each query q, the k database rows x with the largest q·x
/// (faiss's `IndexFlatIP`), without ever holding the full [queries, rows] score matrix.
///
/// The database is cut into blocks of rows handed to the engine's threads one at a time (dynamic, so a
/// loaded core takes fewer). With `gemmMinQueries` queries or more, a block's scores come from the engine's
/// packed micro-kernel (`MicroKernel.gemm`, 6 × 32 register tiles on AVX-512) as Sᵀ = X_block Qᵀ: the
/// queries are packed once per search into 32-query panels (the B operand), the database rows are read
/// where they lie as the broadcast A operand, so the database is never copied or packed, and a block of
/// `gemmBlockRows` rows (256 × 512 floats = 512 KB) stays in L2 while every query panel passes over it.
/// With fewer queries a block's scores come from a streaming dot-product kernel (one query is one pass
/// over the database, bound by memory bandwidth). Each thread keeps, per query, a min-heap of its k best
/// rows; scores are screened a vector at a time against the heaps' roots (the k-th best so far: one
/// compare per 16 scores once the heaps are full). The threads' heaps are merged at the end: selection,
/// never a sort of the n scores, and no [queries, n] matrix.
///
/// Order: score descending, ties by row index ascending (what a stable sort would give). NaN scores
/// are never returned.
public enum InnerProductSearch {
    public struct Hit: Equatable, Sendable {
        public var index: Int
        public var score: Float
        public init(index: Int, score: Float) { self.index = index; self.score = score }
    }

    /// Database rows per task of the streaming kernel: 1024 × 512 floats is 2 MB.
    static let blockRows = 1024
    /// Database rows per task of the GEMM path: 256 × 512 floats (512 KB) stay in a core's L2 while the
    /// query panels pass over them, with a 256 × 256 score tile (256 KB) beside them.
    static let gemmBlockRows = 256
    /// From this many queries the scores of a block come from GEMM (a round guess, not tuned: one query is a
    /// memory-bound pass either way, and by 8 the streaming kernel's two loads per FMA become the limit).
    nonisolated(unsafe) public static var gemmMinQueries = 8
    /// Scores held per thread at once (1 MB): the streaming kernel's [queries, blockRows], and the GEMM
    /// path's [gemmBlockRows, query chunk] with chunks of whole 32-query panels, at most 256 queries.
    nonisolated(unsafe) static var scoreChunkFloats = 262_144
    /// K-block of the GEMM path: a 32-query panel of 128 features (16 KB) stays in L1 beside the six rows.
    static let gemmKBlock = 128

    /// The k best rows of `database` [n, dim] (row-major) for each of `queryCount` queries [dim].
    public static func search(queries: UnsafePointer<Float>, queryCount nq: Int, database: UnsafePointer<Float>,
                              rows n: Int, dim d: Int, k: Int) -> [[Hit]] {
        guard nq > 0 else { return [] }
        let kk = min(k, n)
        guard kk > 0, d > 0 else { return Array(repeating: [], count: nq) }
        let useGemm = nq >= gemmMinQueries
        let rowsPerBlock = useGemm ? gemmBlockRows : blockRows
        let blocks = (n + rowsPerBlock - 1) / rowsPerBlock
        let workers = max(1, min(Threading.threads, blocks))
        let heaps = (0..<workers).map { _ in TopKHeaps(queries: nq, k: kk) }
        if useGemm {
            searchGemm(queries: queries, nq, database: database, n, dim: d, blocks: blocks, heaps: heaps)
        } else {
            searchStreaming(queries: queries, nq, database: database, n, dim: d, blocks: blocks, heaps: heaps)
        }
        return (0..<nq).map { qi in
            var all: [Hit] = []
            all.reserveCapacity(workers * kk)
            for heap in heaps { all += heap.hits(query: qi) }
            all.sort { $0.score > $1.score || ($0.score == $1.score && $0.index < $1.index) }
            return Array(all.prefix(kk))
        }
    }

    /// Few queries: each block's [queries, rows] scores from `dotProducts`, offered row-wise per query.
    static func searchStreaming(queries: UnsafePointer<Float>, _ nq: Int, database: UnsafePointer<Float>, _ n: Int, dim d: Int,
                                blocks: Int, heaps: [TopKHeaps]) {
        let counter = TaskCounter()
        let q = UnsafeSendable(value: queries), x = UnsafeSendable(value: database), h = UnsafeSendable(value: heaps)
        DispatchQueue.concurrentPerform(iterations: heaps.count) { w in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: nq * blockRows)
            defer { scores.deallocate() }
            let heap = h.value[w]
            while let b = counter.take(below: blocks) {
                let lo = b * blockRows, rows = min(blockRows, n - lo)
                dotProducts(queries: q.value, nq, rows: x.value + lo * d, rows, dim: d, into: scores)
                for qi in 0..<nq { heap.offer(query: qi, scores: scores + qi * rows, count: rows, firstIndex: lo) }
            }
        }
    }

    /// Many queries: Sᵀ = X_block Qᵀ on the micro-kernel, query chunk by query chunk, each [rows, chunk]
    /// tile of scores offered row by row to all the chunk's heaps at once (`TopKHeaps.offerRows`).
    static func searchGemm(queries: UnsafePointer<Float>, _ nq: Int, database: UnsafePointer<Float>, _ n: Int, dim d: Int,
                           blocks: Int, heaps: [TopKHeaps]) {
        let cols = MicroKernel.cols
        let padded = (nq + cols - 1) / cols * cols
        // Panel p: queries cols·p..<cols·(p+1) as d rows of cols floats (zero past nq), panels cols·d apart.
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: padded * d)
        defer { packed.deallocate() }
        MicroKernel.packTransposedPanels(queries, ld: d, n: nq, d: d, into: packed)
        let chunk = min(padded, max(cols, min(256, scoreChunkFloats / gemmBlockRows) / cols * cols))
        let counter = TaskCounter()
        let p = UnsafeSendable(value: UnsafePointer(packed)), x = UnsafeSendable(value: database), h = UnsafeSendable(value: heaps)
        DispatchQueue.concurrentPerform(iterations: heaps.count) { w in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: gemmBlockRows * chunk)
            defer { scores.deallocate() }
            let heap = h.value[w]
            while let b = counter.take(below: blocks) {
                let lo = b * gemmBlockRows, rows = min(gemmBlockRows, n - lo)
                var q0 = 0
                while q0 < nq {
                    let width = min(chunk, padded - q0)
                    MicroKernel.gemm(m: rows, n: width, k: d, alpha: 1, a: x.value + lo * d, rowStride: d, kStride: 1,
                                     b: p.value + q0 * d, ldb: cols, panelStride: cols * d, c: scores, ldc: width,
                                     accumulate: false, kBlock: gemmKBlock)
                    heap.offerRows(scores: scores, rows: rows, ld: width, queries: q0..<min(q0 + width, nq), firstIndex: lo)
                    q0 += width
                }
            }
        }
    }

    /// `search` on tensors: queries [q, dim] (or [dim]) against database [n, dim].
    public static func search(queries: Tensor, database: Tensor, k: Int) throws -> [[Hit]] {
        let q = queries.rank == 1 ? try queries.unsqueeze(0) : queries
        try check(q.rank == 2 && database.rank == 2 && q.shape[1] == database.shape[1],
                  "inner-product search: queries \(queries.shape) and database \(database.shape) must be [q, d] and [n, d]")
        try check(k > 0, "inner-product search: k \(k) must be positive")
        return search(queries: q.data, queryCount: q.shape[0], database: database.data, rows: database.shape[0],
                      dim: database.shape[1], k: k)
    }

    /// out[qi · n + r] = q_qi · x_r for n rows: four rows at a time share each query vector load, four
    /// accumulators hide the FMA latency; the tail of d beyond a whole vector is scalar.
    static func dotProducts(queries: UnsafePointer<Float>, _ nq: Int, rows x: UnsafePointer<Float>, _ n: Int,
                            dim d: Int, into out: UnsafeMutablePointer<Float>) {
        let lanes = MicroKernel.lanes, whole = d / lanes * lanes
        var r = 0
        while r + 4 <= n {
            let x0 = x + r * d, x1 = x0 + d, x2 = x1 + d, x3 = x2 + d
            for qi in 0..<nq {
                let qp = queries + qi * d
                var a0 = KV(), a1 = KV(), a2 = KV(), a3 = KV()
                var j = 0
                while j < whole {
                    let qv = MicroKernel.load(qp + j)
                    a0 = MicroKernel.fma(a0, MicroKernel.load(x0 + j), qv)
                    a1 = MicroKernel.fma(a1, MicroKernel.load(x1 + j), qv)
                    a2 = MicroKernel.fma(a2, MicroKernel.load(x2 + j), qv)
                    a3 = MicroKernel.fma(a3, MicroKernel.load(x3 + j), qv)
                    j += lanes
                }
                var s0 = a0.sum(), s1 = a1.sum(), s2 = a2.sum(), s3 = a3.sum()
                for t in whole..<d { s0 += x0[t] * qp[t]; s1 += x1[t] * qp[t]; s2 += x2[t] * qp[t]; s3 += x3[t] * qp[t] }
                let o = out + qi * n + r
                o[0] = s0; o[1] = s1; o[2] = s2; o[3] = s3
            }
            r += 4
        }
        while r < n {
            let xr = x + r * d
            for qi in 0..<nq {
                let qp = queries + qi * d
                var a = KV(), j = 0
                while j < whole { a = MicroKernel.fma(a, MicroKernel.load(xr + j), MicroKernel.load(qp + j)); j += lanes }
                var s = a.sum()
                for t in whole..<d { s += xr[t] * qp[t] }
                out[qi * n + r] = s
            }
            r += 1
        }
    }
}

/// Per query, a binary min-heap of the k best (score, index) pairs seen, the worst at the root.
/// "Worse" is a lower score, or an equal score with a larger index, so ties keep the earlier row.
final class TopKHeaps: @unchecked Sendable {
    let k: Int
    let scores: UnsafeMutablePointer<Float>
    let indices: UnsafeMutablePointer<Int>
    var counts: [Int]

    /// Per query, the score a row must beat to enter: the root once the heap is full, −∞ before
    /// (so while filling, every score but NaN and −∞ enters).
    let thresholds: UnsafeMutablePointer<Float>

    init(queries: Int, k: Int) {
        self.k = k
        scores = .allocate(capacity: queries * k)
        indices = .allocate(capacity: queries * k)
        counts = Array(repeating: 0, count: queries)
        // Padded to whole vectors so `offerRows` can load them a vector at a time.
        let lanes = MicroKernel.lanes
        thresholds = .allocate(capacity: (queries + lanes - 1) / lanes * lanes)
        thresholds.initialize(repeating: -.infinity, count: (queries + lanes - 1) / lanes * lanes)
    }

    deinit { scores.deallocate(); indices.deallocate(); thresholds.deallocate() }

    /// Offers a tile of scores [rows, ld] whose column c scores query `queries.lowerBound + c` (columns
    /// past the queries are padding) and whose row r is database row `firstIndex + r`: per row, one
    /// vector compare against 16 queries' thresholds, and only the queries it beats look further.
    func offerRows(scores tile: UnsafePointer<Float>, rows: Int, ld: Int, queries: Range<Int>, firstIndex: Int) {
        let lanes = MicroKernel.lanes, q0 = queries.lowerBound, m = queries.count
        for r in 0..<rows {
            let row = tile + r * ld
            var c = 0
            while c < m {
                let v = MicroKernel.load(row + c), t = MicroKernel.load(thresholds + q0 + c)
                let hit = v .> t
                if any(hit) {
                    for lane in 0..<min(lanes, m - c) where hit[lane] { insert(query: q0 + c + lane, row[c + lane], firstIndex + r) }
                }
                c += lanes
            }
        }
    }

    /// Puts (s, i) into query qi's heap, which it beats (s above the threshold), and moves the threshold.
    @inline(__always)
    func insert(query qi: Int, _ s: Float, _ i: Int) {
        let hs = scores + qi * k, hi = indices + qi * k
        if counts[qi] < k {
            Self.push(s, i, hs, hi, &counts[qi])
            if counts[qi] == k { thresholds[qi] = hs[0] }
        } else {
            Self.replaceRoot(s, i, hs, hi, k)
            thresholds[qi] = hs[0]
        }
    }

    @inline(always)
    static func worse(_ s1: Float, _ i1: Int, than s2: Float, _ i2: Int) -> Bool { s1 < s2 || (s1 == s2 && i1 > i2) }

    /// Offers `count` consecutive rows' scores (row `firstIndex + j` scored `scores[j]`).
    func offer(query qi: Int, scores row: UnsafePointer<Float>, count n: Int, firstIndex: Int) {
        let hs = scores + qi * k, hi = indices + qi * k
        var size = counts[qi], j = 0
        // Filling: every non-NaN score goes in.
        while size < k && j < n {
            let s = row[j]
            if s == s { Self.push(s, firstIndex + j, hs, hi, &size) }
            j += 1
        }
        guard size == k else { counts[qi] = size; return }
        // Full: only a score above the root can enter (an equal one has a larger index, so is worse).
        let lanes = MicroKernel.lanes
        var threshold = hs[0]
        while j + lanes <= n {
            let v = MicroKernel.load(row + j)
            if any(v .> KV(repeating: threshold)) {
                for t in j..<(j + lanes) where row[t] > threshold {
                    Self.replaceRoot(row[t], firstIndex + t, hs, hi, k)
                    threshold = hs[0]
                }
            }
            j += lanes
        }
        while j < n {
            if row[j] > threshold { Self.replaceRoot(row[j], firstIndex + j, hs, hi, k); threshold = hs[0] }
            j += 1
        }
        counts[qi] = size
    }

    static func push(_ s: Float, _ i: Int, _ hs: UnsafeMutablePointer<Float>, _ hi: UnsafeMutablePointer<Int>, _ size: inout Int) {
        var c = size
        size += 1
        while c > 0 {
            let p = (c - 1) / 2
            guard worse(s, i, than: hs[p], hi[p]) else { break }
            hs[c] = hs[p]; hi[c] = hi[p]; c = p
        }
        hs[c] = s; hi[c] = i
    }

    static func replaceRoot(_ s: Float, _ i: Int, _ hs: UnsafeMutablePointer<Float>, _ hi: UnsafeMutablePointer<Int>, _ size: Int) {
        var p = 0
        while true {
            let l = 2 * p + 1
            guard l < size else { break }
            var c = l
            let r = l + 1
            if r < size && worse(hs[r], hi[r], than: hs[l], hi[l]) { c = r }
            guard worse(hs[c], hi[c], than: s, i) else { break }
            hs[p] = hs[c]; hi[p] = hi[c]; p = c
        }
        hs[p] = s; hi[p] = i
    }

    func hits(query qi: Int) -> [InnerProductSearch.Hit] {
        (0..<counts[qi]).map { InnerProductSearch.Hit(index: indices[qi * k + $0], score: scores[qi * k + $0]) }
    }
}
