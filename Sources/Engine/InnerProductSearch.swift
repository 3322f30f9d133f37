import Foundation

/// Exact maximum-inner-product search: for each query q, the k database rows x with the largest q·x
/// (faiss's `IndexFlatIP`), without ever holding the full [queries, rows] score matrix.
///
/// The database is cut into blocks of `blockRows` rows handed to the engine's threads one at a time
/// (dynamic, so a loaded core takes fewer). A block's scores S = Q X_blockᵀ come from the engine's
/// GEMM when there are `gemmMinQueries` queries or more, else from a streaming dot-product kernel (one
/// or a few queries: the work is one pass over the database, bound by memory bandwidth, and a GEMM
/// would spend its time packing). Each thread keeps, per query, a min-heap of its k best rows; a
/// block's scores are screen-tested a vector at a time against the heap's root (the k-th best so far),
/// so after the first blocks almost every score costs one compare. The threads' heaps are merged at
/// the end: selection, never a sort of the n scores.
///
/// Order: score descending, ties by row index ascending (what a stable sort would give). NaN scores
/// are never returned.
public enum InnerProductSearch {
    public struct Hit: Equatable, Sendable {
        public var index: Int
        public var score: Float
        public init(index: Int, score: Float) { self.index = index; self.score = score }
    }

    /// Database rows per task: 1024 × 512 floats is 2 MB, the scores of 1000 queries 4 MB.
    static let blockRows = 1024
    /// From this many queries the scores of a block come from GEMM (a round guess, not tuned: one query is a
    /// memory-bound pass either way, and by 8 the streaming kernel's two loads per FMA become the limit).
    nonisolated(unsafe) public static var gemmMinQueries = 8
    /// Scores held per thread at once (1 MB).
    nonisolated(unsafe) static var scoreChunkFloats = 262_144

    /// The k best rows of `database` [n, dim] (row-major) for each of `queryCount` queries [dim].
    public static func search(queries: UnsafePointer<Float>, queryCount nq: Int, database: UnsafePointer<Float>,
                              rows n: Int, dim d: Int, k: Int) -> [[Hit]] {
        guard nq > 0 else { return [] }
        let kk = min(k, n)
        guard kk > 0, d > 0 else { return Array(repeating: [], count: nq) }
        let blocks = (n + blockRows - 1) / blockRows
        let workers = max(1, min(Threading.threads, blocks))
        let heaps = (0..<workers).map { _ in TopKHeaps(queries: nq, k: kk) }
        let useGemm = nq >= gemmMinQueries
        let counter = TaskCounter()
        let q = UnsafeSendable(value: queries), x = UnsafeSendable(value: database), h = UnsafeSendable(value: heaps)
        // Queries go through a block in chunks whose scores fit in a core's L2 (256 × 1024 floats = 1 MB),
        // so the selection reads them from cache rather than memory.
        let chunk = useGemm ? min(nq, max(gemmMinQueries, scoreChunkFloats / blockRows)) : nq
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * blockRows)
            defer { scores.deallocate() }
            let heap = h.value[w]
            while let b = counter.take(below: blocks) {
                let lo = b * blockRows, rows = min(blockRows, n - lo)
                var q0 = 0
                while q0 < nq {
                    let m = min(chunk, nq - q0)
                    if useGemm {
                        Kernels.gemmSerial(transA: false, transB: true, m: m, n: rows, k: d, a: q.value + q0 * d, lda: d,
                                           b: x.value + lo * d, ldb: d, c: scores, ldc: rows)
                    } else {
                        dotProducts(queries: q.value + q0 * d, m, rows: x.value + lo * d, rows, dim: d, into: scores)
                    }
                    for qi in 0..<m { heap.offer(query: q0 + qi, scores: scores + qi * rows, count: rows, firstIndex: lo) }
                    q0 += m
                }
            }
        }
        return (0..<nq).map { qi in
            var all: [Hit] = []
            all.reserveCapacity(workers * kk)
            for heap in heaps { all += heap.hits(query: qi) }
            all.sort { $0.score > $1.score || ($0.score == $1.score && $0.index < $1.index) }
            return Array(all.prefix(kk))
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

    init(queries: Int, k: Int) {
        self.k = k
        scores = .allocate(capacity: queries * k)
        indices = .allocate(capacity: queries * k)
        counts = Array(repeating: 0, count: queries)
    }

    deinit { scores.deallocate(); indices.deallocate() }

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
