import Foundation
import XCTest
@testable import Engine
@testable import NN

/// Without autograd the mixer streams in pieces (`mixStreaming`: the scans carry their states and the
/// convs their edge inputs, in_proj and out_proj run once per token, the backward branch's pass first):
/// it must equal the whole-sequence mixer in both directions, with pieces shorter than the conv
/// kernel's reach, lengths that are not a multiple of the piece, batch 2, one branch or two, and the
/// block's norm applied per piece.
final class MambaPiecesTests: XCTestCase {
    func perturbedMixer(bidirectional: Bool = true, seed: UInt64) -> MambaMixer {
        Random.global = RandomGenerator(seed: seed)
        let m = MambaMixer(MambaConfig(dim: 20, stateSize: 4), bidirectional: bidirectional, layers: 4)
        var g = RandomGenerator(seed: seed + 1)
        for t in [m.aLog, m.d, m.aBLog, m.dB, m.dtProj.bias, m.dtProjB?.bias].compactMap({ $0 }) {
            for i in 0..<t.count { t.data[i] += 0.3 * g.nextNormal() }
        }
        return m
    }

    func worst(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        return zip(a.toArray(), b.toArray()).reduce(0) { Swift.max($0, Swift.abs($1.0 - $1.1)) }
    }

    func withPieces<T>(_ piece: Int, above: Int? = nil, _ body: () throws -> T) rethrows -> T {
        let saved = (MambaMixer.pieceTokens, MambaMixer.piecesAbove)
        defer { (MambaMixer.pieceTokens, MambaMixer.piecesAbove) = saved }
        (MambaMixer.pieceTokens, MambaMixer.piecesAbove) = (piece, above ?? 0)
        return try GradMode.noGrad { try body() }
    }

    func testPiecesEqualTheWholeSequence() throws {
        for bidirectional in [true, false] {
            let m = perturbedMixer(bidirectional: bidirectional, seed: 41)
            var g = RandomGenerator(seed: 42)
            let u = Tensor.randn([2, 37, 20], generator: &g)
            for flipped in [false, true] {
                // With autograd on, the whole-sequence path (pieces only run without it).
                let whole = try m(u, flipped: flipped)
                for piece in [1, 2, 3, 8, 36, 37, 64] {
                    let pieces = try withPieces(piece) { try m(u, flipped: flipped) }
                    XCTAssertLessThan(worst(whole, pieces), 2e-5, "bidirectional \(bidirectional), flipped \(flipped), pieces of \(piece)")
                }
                // Below the threshold, inference runs the whole sequence: the same again.
                let unstreamed = try withPieces(8, above: 37) { try m(u, flipped: flipped) }
                XCTAssertLessThan(worst(whole, unstreamed), 2e-5)
            }
        }
    }

    /// The block's inference path: norm applied per piece, the result added into a given output.
    func testBlockInferenceMixNormalisesPerPieceAndAdds() throws {
        Random.global = RandomGenerator(seed: 44)
        let block = VimBlock(MambaConfig(dim: 20, stateSize: 4), layers: 4)
        var g = RandomGenerator(seed: 45)
        for t in [block.norm.weight!, block.norm.bias!, block.mixer.aLog, block.mixer.dtProj.bias!] {
            for i in 0..<t.count { t.data[i] += 0.3 * g.nextNormal() }
        }
        let r = Tensor.randn([2, 29, 20], generator: &g), base = Tensor.randn([2, 29, 20], generator: &g)
        for flipped in [false, true] {
            let whole = try block.mixer(block.norm(r), flipped: flipped)
            for piece in [3, 10, 29] {
                let fresh = try withPieces(piece) { try block.inferenceMix(r, flipped: flipped, addingTo: nil) }
                XCTAssertLessThan(worst(whole, fresh), 2e-5, "flipped \(flipped), pieces of \(piece)")
                let sum = base.copy()
                let added = try withPieces(piece) { try block.inferenceMix(r, flipped: flipped, addingTo: sum) }
                XCTAssertTrue(added === sum, "adds in place")
                XCTAssertLessThan(worst(try whole + base, added), 2e-5)
            }
        }
    }

    /// A scan with `gatingTheSum` gates what it adds to: (sum + y)·SiLU(z), y ungated.
    func testScanGatesTheSum() throws {
        var g = RandomGenerator(seed: 46)
        let (x, delta, z) = (Tensor.randn([2, 13, 11], generator: &g), Tensor.randn([2, 13, 11], generator: &g), Tensor.randn([2, 13, 11], generator: &g))
        let a = Tensor.randn([11, 3], generator: &g).abs() * -1, d = Tensor.randn([11], generator: &g)
        let (b, c) = (Tensor.randn([2, 13, 3], generator: &g), Tensor.randn([2, 13, 3], generator: &g))
        let other = Tensor.randn([2, 13, 11], generator: &g)
        for reverse in [false, true] {
            let y = try GradMode.noGrad { try Tensor.selectiveScan(x, delta: delta, a: a, b: b, c: c, d: d, reverse: reverse) }
            let expected = try (other + y) * z.silu()
            let sum = other.copy()
            let got = try GradMode.noGrad {
                try Tensor.selectiveScan(x, delta: delta, a: a, b: b, c: c, d: d, z: z, reverse: reverse, addingTo: sum, gatingTheSum: true)
            }
            XCTAssertTrue(got === sum)
            XCTAssertLessThan(worst(expected, got), 1e-5)
        }
        XCTAssertThrowsError(try GradMode.noGrad { try Tensor.selectiveScan(x, delta: delta, a: a, b: b, c: c, gatingTheSum: true) }) {
            XCTAssertTrue("\($0)".contains("gatingTheSum needs addingTo"), "\($0)")
        }
    }

    /// A conv run piece by piece, each given the k − 1 inputs next to it in scan order, is the conv of
    /// the whole; a context of the wrong shape or under autograd is refused.
    func testConvContextContinuesTheSequence() throws {
        var g = RandomGenerator(seed: 47)
        let x = Tensor.randn([2, 17, 9], generator: &g), w = Tensor.randn([9, 1, 4], generator: &g), bias = Tensor.randn([9], generator: &g)
        for reverse in [false, true] {
            let whole = try GradMode.noGrad { try x.causalDepthwiseConv1d(weight: w, bias: bias, reverse: reverse, silu: true) }
            for cut in [[0, 2, 7, 17], [0, 1, 2, 3, 10, 17], [0, 16, 17]] {
                var parts: [Tensor] = []
                for (s, e) in zip(cut, cut.dropFirst()) {
                    // The context is cut from x itself here (zeros past its ends); the mixer carries it.
                    let context = Tensor.zeros([2, 3, 9])
                    for item in 0..<2 { for i in 0..<3 {
                        let t = reverse ? e + i : s - 3 + i
                        guard t >= 0 && t < 17 else { continue }
                        for ch in 0..<9 { context.data[(item * 3 + i) * 9 + ch] = x.data[(item * 17 + t) * 9 + ch] }
                    } }
                    parts.append(try GradMode.noGrad {
                        try x.slice(axis: 1, start: s, end: e).causalDepthwiseConv1d(weight: w, bias: bias, reverse: reverse, silu: true,
                                                                                      context: context)
                    })
                }
                XCTAssertLessThan(worst(whole, try Tensor.concat(parts, axis: 1)), 1e-6, "reverse \(reverse), cut \(cut)")
            }
        }
        XCTAssertThrowsError(try x.causalDepthwiseConv1d(weight: w, context: Tensor.zeros([2, 2, 9]))) {
            XCTAssertTrue("\($0)".contains("context must be [B, k − 1, C] = [2, 3, 9]"), "\($0)")
        }
        XCTAssertThrowsError(try x.causalDepthwiseConv1d(weight: w.copy().requiringGrad(), context: Tensor.zeros([2, 3, 9]))) {
            XCTAssertTrue("\($0)".contains("context is for inference"), "\($0)")
        }
    }

    /// A piece-edge helper that loses a token shows up only where pieces are shorter than k − 1:
    /// carried edges across single-token pieces, both directions.
    func testEdgesCarryAcrossPiecesShorterThanTheKernel() throws {
        let m = perturbedMixer(seed: 48)
        let run = BranchRun(m, conv: m.conv1d, xProj: m.xProj, dtProj: m.dtProj, aLog: m.aLog, d: m.d, batch: 1, reverse: false, branch: "f")
        var g = RandomGenerator(seed: 49)
        let x = Tensor.randn([1, 5, 40], generator: &g)
        for t in 0..<5 { run.context = run.edge(after: try x.slice(axis: 1, start: t, end: t + 1)) }
        XCTAssertEqual(run.context.toArray(), try x.slice(axis: 1, start: 2, end: 5).toArray())
        let back = BranchRun(m, conv: m.conv1d, xProj: m.xProj, dtProj: m.dtProj, aLog: m.aLog, d: m.d, batch: 1, reverse: true, branch: "b")
        for t in stride(from: 4, through: 0, by: -1) { back.context = back.edge(after: try x.slice(axis: 1, start: t, end: t + 1)) }
        XCTAssertEqual(back.context.toArray(), try x.slice(axis: 1, start: 0, end: 3).toArray())
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
