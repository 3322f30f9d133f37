import Foundation
import XCTest
@testable import Engine
@testable import NN

/// A long sequence without autograd runs the mixer in pieces (scan state carried, conv context
/// recomputed, out_proj per piece): it must equal the whole-sequence mixer in both directions, with
/// pieces shorter than the conv kernel's reach and a partial last piece.
final class MambaPiecesTests: XCTestCase {
    func testPiecesEqualTheWholeSequence() throws {
        Random.global = RandomGenerator(seed: 41)
        let m = MambaMixer(MambaConfig(dim: 20, stateSize: 4), layers: 4)
        var g = RandomGenerator(seed: 42)
        for t in [m.aLog, m.d, m.aBLog!, m.dB!, m.dtProj.bias!, m.dtProjB!.bias!] {
            for i in 0..<t.count { t.data[i] += 0.3 * g.nextNormal() }
        }
        let u = Tensor.randn([2, 37, 20], generator: &g)
        let saved = (MambaMixer.pieceTokens, MambaMixer.piecesAbove)
        defer { (MambaMixer.pieceTokens, MambaMixer.piecesAbove) = saved }
        for flipped in [false, true] {
            // With autograd on, the whole-sequence path (pieces only run without it).
            let whole = try m(u, flipped: flipped).toArray()
            for piece in [2, 8, 36] {
                (MambaMixer.pieceTokens, MambaMixer.piecesAbove) = (piece, piece)
                let pieces = try GradMode.noGrad { try m(u, flipped: flipped) }.toArray()
                var worst: Float = 0
                for (a, b) in zip(whole, pieces) { worst = Swift.max(worst, Swift.abs(a - b)) }
                XCTAssertLessThan(worst, 2e-5, "flipped \(flipped), pieces of \(piece)")
            }
        }
    }

    func testCarriedStateContinuesTheScan() throws {
        var g = RandomGenerator(seed: 43)
        let (x, delta, z) = (Tensor.randn([2, 19, 11], generator: &g), Tensor.randn([2, 19, 11], generator: &g), Tensor.randn([2, 19, 11], generator: &g))
        let a = Tensor.randn([11, 3], generator: &g).abs() * -1
        let (b, c) = (Tensor.randn([2, 19, 3], generator: &g), Tensor.randn([2, 19, 3], generator: &g))
        for reverse in [false, true] {
            let whole = try Tensor.selectiveScan(x, delta: delta, a: a, b: b, c: c, z: z, reverse: reverse)
            let state = Tensor.zeros([Tensor.selectiveScanStateCount(batch: 2, channels: 11, states: 3)])
            var parts: [Int: Tensor] = [:]
            for (s, e) in reverse ? [(12, 19), (5, 12), (0, 5)] : [(0, 5), (5, 12), (12, 19)] {
                func cut(_ t: Tensor) throws -> Tensor { try t.slice(axis: 1, start: s, end: e) }
                parts[s] = try Tensor.selectiveScan(cut(x), delta: cut(delta), a: a, b: cut(b), c: cut(c), z: cut(z),
                                                    reverse: reverse, carrying: state)
            }
            let joined = try Tensor.concat([parts[0]!, parts[5]!, parts[12]!], axis: 1)
            for (p, q) in zip(joined.toArray(), whole.toArray()) { XCTAssertEqual(p, q, accuracy: 1e-5) }
        }
        XCTAssertThrowsError(try Tensor.selectiveScan(x, delta: delta, a: a, b: b, c: c, carrying: Tensor.zeros([5]))) {
            XCTAssertTrue("\($0)".contains("carried state holds 5 floats"), "\($0)")
        }
    }
}
