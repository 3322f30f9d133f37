import XCTest
@testable import Engine

/// Exact top-k inner-product search against a full stable sort. Small-integer vectors make every dot
/// product exact in float32 (the GEMM and the streaming kernel then agree to the bit) and produce many
/// ties, so the tie order (earlier row first) is checked too.
final class InnerProductSearchTests: XCTestCase {
    func integers(_ n: Int, _ g: inout RandomGenerator) -> [Float] {
        (0..<n).map { _ in Float(Int(g.nextUniform() * 5) - 2) }
    }

    func bruteForce(_ q: [Float], _ x: [Float], nq: Int, n: Int, d: Int, k: Int) -> [[InnerProductSearch.Hit]] {
        (0..<nq).map { qi in
            let all = (0..<n).map { r in
                InnerProductSearch.Hit(index: r, score: (0..<d).reduce(Float(0)) { $0 + q[qi * d + $1] * x[r * d + $1] })
            }
            let sorted = all.enumerated().sorted { a, b in
                a.element.score > b.element.score || (a.element.score == b.element.score && a.offset < b.offset)
            }.map(\.element)
            return Array(sorted.prefix(k))
        }
    }

    func testEqualsAFullStableSortForBothKernelsAndThreadCounts() throws {
        var g = RandomGenerator(seed: 7)
        // n not a multiple of the block or of 4 rows, d not a multiple of the vector width.
        let n = 2 * InnerProductSearch.blockRows + 13, d = 37   // 8 GEMM blocks of 256 rows and 13 more
        let x = integers(n * d, &g)
        let saved = (Threading.threads, InnerProductSearch.gemmMinQueries, InnerProductSearch.scoreChunkFloats)
        defer { Threading.setThreads(saved.0); InnerProductSearch.gemmMinQueries = saved.1; InnerProductSearch.scoreChunkFloats = saved.2 }
        // 40 and 70 queries: more than one 32-query panel, and with 32-query chunks more than one chunk.
        for nq in [1, 3, 8, 21, 40, 70] {
            let q = integers(nq * d, &g)
            for k in [1, 10, 300] {
                let expected = bruteForce(q, x, nq: nq, n: n, d: d, k: k)
                for threads in [1, 2] {
                    // Every query count through GEMM (in one chunk, then in chunks of one 32-query panel), then through the streaming kernel.
                    for (gemmFrom, chunkFloats) in [(1, 262_144), (1, 32 * InnerProductSearch.gemmBlockRows), (1000, 262_144)] {
                        Threading.setThreads(threads); InnerProductSearch.gemmMinQueries = gemmFrom
                        InnerProductSearch.scoreChunkFloats = chunkFloats
                        let got = q.withUnsafeBufferPointer { qp in
                            x.withUnsafeBufferPointer { xp in
                                InnerProductSearch.search(queries: qp.baseAddress!, queryCount: nq, database: xp.baseAddress!, rows: n, dim: d, k: k)
                            }
                        }
                        XCTAssertEqual(got, expected, "nq \(nq), k \(k), threads \(threads), GEMM from \(gemmFrom), chunk \(chunkFloats)")
                    }
                }
            }
        }
    }

    func testMoreResultsThanRowsNaNAndBadShapes() throws {
        let x = try Tensor([1, 0, 0, 1, Float.nan, 0, -1, 0], shape: [4, 2])
        let hits = try InnerProductSearch.search(queries: Tensor([1, 0.5]), database: x, k: 10)
        XCTAssertEqual(hits.count, 1)
        XCTAssertEqual(hits[0].map(\.index), [0, 1, 3], "k above n gives every row; the NaN row is never returned")
        XCTAssertEqual(hits[0].map(\.score), [1, 0.5, -1])
        XCTAssertThrowsError(try InnerProductSearch.search(queries: Tensor([1, 2, 3]), database: x, k: 1)) {
            XCTAssertTrue("\($0)".contains("[3]"), "\($0)")
        }
        XCTAssertThrowsError(try InnerProductSearch.search(queries: Tensor([1, 2]), database: x, k: 0))
        XCTAssertEqual(try InnerProductSearch.search(queries: Tensor([1, 2]), database: Tensor.zeros([0, 2]), k: 3), [[]])
    }
}
