import Foundation
import XCTest
@testable import Engine

/// The SIMD transcendental kernels against Double-precision libm over the ranges their callers use.
final class VectorMathTests: XCTestCase {
    /// Attention's softmax runs on 2^(s - max): arguments from 0 down to far below the float range.
    func testExp2IsAccurateFromZeroToUnderflow() {
        var worst = 0.0, at: Float = 0
        var x: Float = 8
        while x > -126 {
            let got = Double(VMath.exp2(V8(repeating: x))[3]), want = Foundation.exp2(Double(x))
            let rel = abs(got - want) / want
            if rel > worst { worst = rel; at = x }
            x -= 0.0137
        }
        XCTAssertLessThan(worst, 3e-7, "relative error \(worst) at \(at)")
        // The row's maximum itself maps to exactly 1.
        XCTAssertEqual(VMath.exp2(V8(repeating: 0))[0], 1)
        // Below 2^-126 the result stays tiny and positive (a stand-in for 0 that no softmax sum notices).
        let tiny = VMath.exp2(V8(repeating: -300))[0]
        XCTAssertTrue(tiny >= 0 && tiny < 1e-37, "\(tiny)")
        XCTAssertEqual(VMath.exp2(V8(repeating: -.infinity))[0], tiny)
        XCTAssertTrue(VMath.exp2(V8(repeating: .nan))[0].isNaN)
    }

    /// Exact GELU's rational erf against Double-precision libm erf, across the clamp at |x| = 4√2 and
    /// far past it, where GELU(x) is x or 0 to float precision.
    func testExactGELUMatchesDoublePrecision() {
        var worst = 0.0, at: Float = 0
        var x: Float = -12
        while x < 12 {
            let got = Double(VMath.geluErf(V8(repeating: x))[5])
            let want = 0.5 * Double(x) * (1 + Foundation.erf(Double(x) / 2.0.squareRoot()))
            // A few float32 ulps of x: the output's own rounding is ~6e-8 |x|.
            let err = abs(got - want) / max(1, abs(Double(x)))
            if err > worst { worst = err; at = x }
            x += 0.00731
        }
        XCTAssertLessThan(worst, 5e-7, "error \(worst) (relative to max(1, |x|)) at \(at)")
        XCTAssertEqual(VMath.geluErf(V8(repeating: 0))[0], 0)
        XCTAssertEqual(VMath.geluErf(V8(repeating: 100))[0], 100, accuracy: 1e-4)
        XCTAssertEqual(VMath.geluErf(V8(repeating: -100))[0], 0, accuracy: 1e-4)
        XCTAssertTrue(VMath.geluErf(V8(repeating: .nan))[0].isNaN)
    }

    /// The 4-way row maximum agrees with a plain scan for every length around its 32- and 8-wide steps.
    func testRowMaxMatchesAPlainScan() {
        var g = RandomGenerator(seed: 5)
        for n in [1, 7, 8, 9, 31, 32, 33, 40, 71, 1216] {
            let x = (0..<n).map { _ in g.nextNormal() }
            x.withUnsafeBufferPointer { XCTAssertEqual(Kernels.rowMax($0.baseAddress!, n), x.max()!, "n = \(n)") }
        }
    }

    /// Binary ops on every broadcasting fast path (equal shapes, a one-element operand on either side,
    /// a broadcast last axis on either side), with non-commutative ops and lengths that leave a tail.
    func testBinaryFastPathsKeepOperandOrder() throws {
        var g = RandomGenerator(seed: 9)
        func rand(_ shape: [Int]) throws -> Tensor {
            try Tensor((0..<shape.reduce(1, *)).map { _ in g.nextNormal() + 3 }, shape: shape)
        }
        func check(_ a: Tensor, _ b: Tensor, _ op: (Tensor, Tensor) throws -> Tensor, _ f: (Float, Float) -> Float,
                   _ what: String) throws {
            let out = try op(a, b)
            let rows = out.shape.dropLast().reduce(1, *), n = out.shape.last!
            for r in 0..<rows {
                for c in 0..<n {
                    // Index each operand as broadcasting does: a size-1 axis repeats.
                    func at(_ t: Tensor) -> Float {
                        if t.count == 1 { return t.data[0] }
                        let tn = t.shape.last!, trows = t.count / tn
                        return t.data[(trows == 1 ? 0 : r) * tn + (tn == 1 ? 0 : c)]
                    }
                    XCTAssertEqual(out.data[r * n + c], f(at(a), at(b)), accuracy: 1e-6, "\(what) at [\(r), \(c)]")
                }
            }
        }
        for (a, b, what) in [(try rand([3, 13]), try rand([3, 13]), "same shape"),
                             (try rand([3, 13]), try rand([1]), "scalar right"),
                             (try rand([1]), try rand([3, 13]), "scalar left"),
                             (try rand([3, 13]), try rand([3, 1]), "column right"),
                             (try rand([3, 1]), try rand([3, 13]), "column left")] {
            try check(a, b, { try $0 - $1 }, { $0 - $1 }, "sub, \(what)")
            try check(a, b, { try $0 / $1 }, { $0 / $1 }, "div, \(what)")
        }
    }

    /// One row of layer norm against a Double computation, for widths around the 16- and 8-wide steps
    /// and every weight/bias combination.
    func testLayerNormRowMatchesDoublePrecision() {
        var g = RandomGenerator(seed: 11)
        for d in [1, 5, 8, 13, 16, 24, 29, 37, 192, 197] {
            let x = (0..<d).map { _ in g.nextNormal() * 3 + 1 }
            let w = (0..<d).map { _ in g.nextNormal() }, b = (0..<d).map { _ in g.nextNormal() }
            let mean = x.reduce(0.0) { $0 + Double($1) } / Double(d)
            let variance = x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(d)
            let rstd = 1 / (variance + 1e-5).squareRoot()
            for (useW, useB) in [(true, true), (true, false), (false, true), (false, false)] {
                var y = [Float](repeating: 0, count: d)
                let stats = w.withUnsafeBufferPointer { pw in b.withUnsafeBufferPointer { pb in
                    Kernels.layerNormRow(x, &y, d, weight: useW ? pw.baseAddress : nil, bias: useB ? pb.baseAddress : nil, eps: 1e-5)
                } }
                XCTAssertEqual(Double(stats.0), mean, accuracy: 1e-5, "mean, d = \(d)")
                XCTAssertEqual(Double(stats.1), rstd, accuracy: 1e-5 * rstd, "rstd, d = \(d)")
                for j in 0..<d {
                    let want = (Double(x[j]) - mean) * rstd * (useW ? Double(w[j]) : 1) + (useB ? Double(b[j]) : 0)
                    XCTAssertEqual(Double(y[j]), want, accuracy: 2e-5, "d = \(d), j = \(j), weight \(useW), bias \(useB)")
                }
            }
        }
    }
}
