import XCTest
@testable import Engine

/// The weight-packed micro-kernel path (PackedLinear.swift) against plain loops in Double: ragged row
/// blocks (not multiples of 6 or 96), reductions shorter than and longer than one k-block, with and
/// without bias, and the fused inference MLP against its unfused composition.
final class PackedKernelTests: XCTestCase {
    /// Whether this build has the micro-kernel paths at all (they need FMA code generation).
    var fmaBuild: Bool {
        #if EARSHOT_FMA
        return true
        #else
        return false
        #endif
    }

    /// y[r, o] = Σ_i x[r, i] W[o, i] + b[o], accumulated in Double.
    func naiveLinear(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Tensor {
        let (rows, inF, outF) = (x.count / w.shape[1], w.shape[1], w.shape[0])
        let y = Tensor.zeros([rows, outF])
        for r in 0..<rows {
            for o in 0..<outF {
                var s = Double(b?.data[o] ?? 0)
                for i in 0..<inF { s += Double(x.data[r * inF + i]) * Double(w.data[o * inF + i]) }
                y.data[r * outF + o] = Float(s)
            }
        }
        return y
    }

    /// Attention's Kᵀ panels: panel p, row kk, lane t holds x[cols·p + t, kk], zero past n. Key counts and
    /// widths around the 4 x 4 transpose blocks and the panel width, in a strided source.
    func testTransposedPanelsHoldEveryKeyOnce() {
        let cols = MicroKernel.cols
        for (n, d) in [(1, 1), (3, 5), (4, 4), (7, 3), (16, 64), (21, 9), (37, 64), (40, 66)] {
            let ld = d + 3
            let x = (0..<(n * ld)).map { Float($0) + 0.5 }
            let panels = (n + cols - 1) / cols
            var out = [Float](repeating: .nan, count: panels * d * cols)
            x.withUnsafeBufferPointer { px in out.withUnsafeMutableBufferPointer { po in
                MicroKernel.packTransposedPanels(px.baseAddress!, ld: ld, n: n, d: d, into: po.baseAddress!)
            } }
            for p in 0..<panels {
                for kk in 0..<d {
                    for t in 0..<cols {
                        let j = p * cols + t
                        XCTAssertEqual(out[p * d * cols + kk * cols + t], j < n ? x[j * ld + kk] : 0, "n \(n), d \(d), key \(j), feature \(kk)")
                    }
                }
            }
        }
    }

    func testLinearOnThePackedPathMatchesPlainLoops() throws {
        // Output widths that are multiples of 32 take the packed path with either kernel width (16 or 32).
        for (rows, inF, outF, seed) in [(203, 37, 32, 1), (197, 800, 64, 2), (400, 16, 16, 3)] as [(Int, Int, Int, UInt64)] {
            XCTAssertTrue(rows >= 192, "the packed path starts at 192 rows")
            if outF % 32 == 0 { XCTAssertTrue(PackedWeight.isUsable(outFeatures: outF) || !fmaBuild) }
            let x = rnd([rows, inF], seed: seed), w = rnd([outF, inF], seed: seed + 10), b = rnd([outF], seed: seed + 20)
            for bias in [b, nil] {
                let y = try GradMode.noGrad { try x.linear(weight: w, bias: bias) }
                assertClose(y, naiveLinear(x, w, bias), atol: 1e-4, rtol: 1e-4)
            }
        }
    }

    func testLinearGradientsStillFlowThroughThePackedForward() throws {
        let x = rnd([200, 5], seed: 4), w = rnd([16, 5], seed: 5), b = rnd([16], seed: 6)
        try gradCheck([x, w, b]) { try $0[0].linear(weight: $0[1], bias: $0[2]) }
    }

    func testLinearAddingResidualMatchesLinearThenAdd() throws {
        let x = rnd([2, 125, 24], seed: 14), w = rnd([32, 24], seed: 15), b = rnd([32], seed: 16), res = rnd([2, 125, 32], seed: 17)
        let fused = try GradMode.noGrad { try x.linear(weight: w, bias: b, adding: res) }
        assertClose(fused, try naiveLinear(x, w, b).reshape([2, 125, 32]) + res, atol: 1e-4, rtol: 1e-4)
        // Recording a graph takes the composed path, so gradients reach the residual too.
        try gradCheck([rnd([200, 3], seed: 18), rnd([16, 3], seed: 19), rnd([200, 16], seed: 20)]) {
            try $0[0].linear(weight: $0[1], bias: nil, adding: $0[2])
        }
    }

    func testFusedMLPMatchesTheUnfusedBlock() throws {
        let (rows, d, hidden) = (131, 32, 64)
        let x = rnd([rows, d], seed: 7)
        let lnW = rnd([d], seed: 8), lnB = rnd([d], seed: 9)
        let w1 = rnd([hidden, d], seed: 10) * 0.3, b1 = rnd([hidden], seed: 11)
        let w2 = rnd([d, hidden], seed: 12) * 0.3, b2 = rnd([d], seed: 13)
        for approximate in [false, true] {
            let fused = try Tensor.fusedResidualMLP(x, lnWeight: lnW, lnBias: lnB, eps: 1e-6, fc1Weight: w1, fc1Bias: b1,
                                                    fc2Weight: w2, fc2Bias: b2, approximateGELU: approximate)
            let normed = try x.layerNorm(weight: lnW, bias: lnB, eps: 1e-6)
            let h = naiveLinear(normed, w1, b1).gelu(approximate: approximate)
            let reference = try x + naiveLinear(h, w2, b2)
            assertClose(fused, reference, atol: 2e-4, rtol: 1e-4)
        }
    }

    /// LN(x) · Wᵀ + b in row blocks against the two ops composed: on the micro-kernel (rows ≥ 192, width a
    /// multiple of 32, with a ragged last block of rows) and on the fallback (a width the kernel skips).
    func testFusedLayerNormLinearMatchesTheComposedOps() throws {
        for (rows, d, outF) in [(2 * 131, 24, 96), (7, 24, 96), (200, 16, 40)] {
            let x = try rnd([2, rows / 2, d], seed: 21) * 3 + 1
            let lnW = rnd([d], seed: 22), lnB = rnd([d], seed: 23), w = rnd([outF, d], seed: 24), b = rnd([outF], seed: 25)
            let fused = try Tensor.fusedLayerNormLinear(x, lnWeight: lnW, lnBias: lnB, eps: 1e-6, weight: w, bias: b)
            XCTAssertEqual(fused.shape, [2, rows / 2, outF])
            let reference = try naiveLinear(x.layerNorm(weight: lnW, bias: lnB, eps: 1e-6), w, b).reshape([2, rows / 2, outF])
            assertClose(fused, reference, atol: 2e-4, rtol: 1e-4)
        }
        XCTAssertThrowsError(try Tensor.fusedLayerNormLinear(rnd([4, 8], seed: 1), lnWeight: nil, lnBias: nil, eps: 1e-6,
                                                             weight: rnd([16, 9], seed: 2), bias: nil))
    }
}
