import XCTest
import Foundation
@testable import Engine

/// The fused bf16 forms (LowPrecisionFused.swift and the epilogues of PrecisionDNNL.swift) against the
/// same arithmetic done step by step in Double: LayerNorm applied while rows are converted, the residual
/// added by a sum post-op, and the MLP pass with GELU as a post-op and bf16 hidden activations.
final class LowPrecisionFusedTests: XCTestCase {
    override func setUpWithError() throws {
        let cpu = CPUFeatures.host
        try XCTSkipUnless(cpu.hasAVX512BF16 || cpu.hasAMX, "no avx512_bf16 or AMX on this CPU: a bf16 kernel cannot run")
    }

    /// bf16 by round-to-nearest-even of the top 16 bits.
    func bf16(_ x: Float) -> Float { Float(bitPattern: (x.bitPattern &+ 0x7FFF &+ ((x.bitPattern >> 16) & 1)) & 0xFFFF_0000) }

    func testNormAndResidualEpiloguesEqualTheUnfusedCalls() throws {
        Random.seed(11)
        let (m, k, n) = (130, 64, 96)
        let x = Tensor.randn([m, k]), w = Tensor.randn([n, k], std: 0.1), b = Tensor.randn([n])
        let g = Tensor.randn([k]), beta = Tensor.randn([k]), residual = Tensor.randn([m, n])
        let mm = try LowPrecisionMatmul(weight: w, bias: b, precision: .bf16)
        // LN(x) then the product, against the product with the norm applied as rows are converted.
        let normed = try x.layerNorm(weight: g, bias: beta, eps: 1e-6)
        let unfused = Tensor.empty([m, n]), fused = Tensor.empty([m, n])
        try mm.apply(rows: m, x: normed.data, out: unfused.data)
        try mm.apply(rows: m, x: x.data, out: fused.data, norm: .init(weight: g.data, bias: beta.data, eps: 1e-6))
        for i in 0..<m * n { XCTAssertEqual(fused.data[i], unfused.data[i], accuracy: 1e-5 * (abs(unfused.data[i]) + 1), "norm, element \(i)") }
        // residual + product, the residual added by the sum post-op.
        let summed = residual.copy()
        try mm.apply(rows: m, x: x.data, out: summed.data, accumulate: true)
        let plain = Tensor.empty([m, n])
        try mm.apply(rows: m, x: x.data, out: plain.data)
        for i in 0..<m * n {
            XCTAssertEqual(summed.data[i], plain.data[i] + residual.data[i], accuracy: 1e-5 * (abs(summed.data[i]) + 1), "sum, element \(i)")
        }
        XCTAssertThrowsError(try LowPrecisionMatmul(weight: w, bias: b, precision: .int8).apply(rows: m, x: x.data, out: summed.data, accumulate: true))
    }

    func testFusedMLPIsItsBF16ArithmeticStepByStep() throws {
        for approximate in [false, true] {
            Random.seed(approximate ? 13 : 12)
            // 150 rows: two full blocks of 64 and a tail of 22.
            let (rows, d, hidden) = (150, 64, 256)
            let x = Tensor.randn([1, rows, d])
            let g = Tensor.randn([d]), beta = Tensor.randn([d], std: 0.1)
            let w1 = Tensor.randn([hidden, d], std: 0.1), b1 = Tensor.randn([hidden], std: 0.1)
            let w2 = Tensor.randn([d, hidden], std: 0.05), b2 = Tensor.randn([d], std: 0.1)
            let fc1 = try LowPrecisionMatmul(weight: w1, bias: b1, precision: .bf16)
            let fc2 = try LowPrecisionMatmul(weight: w2, bias: b2, precision: .bf16)
            let y = try LowPrecisionMatmul.fusedResidualMLP(x, norm: .init(weight: g.data, bias: beta.data, eps: 1e-6),
                                                            fc1: fc1, fc2: fc2, approximateGELU: approximate)
            XCTAssertEqual(y.shape, x.shape)
            let normed = try x.layerNorm(weight: g, bias: beta, eps: 1e-6)
            func gelu(_ v: Double) -> Double {
                approximate ? 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))) : 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
            }
            var worstBF16 = 0.0, worstFP32 = 0.0
            for r in 0..<rows {
                // Step by step: LN, bf16, fc1 + bias, GELU, bf16 (the hidden activations' format), fc2 + bias + x.
                var h16 = [Double](repeating: 0, count: hidden), h32 = h16
                for j in 0..<hidden {
                    var a16 = Double(b1.data[j]), a32 = a16
                    for i in 0..<d {
                        let (xi, wi) = (normed.data[r * d + i], w1.data[j * d + i])
                        a16 += Double(bf16(xi)) * Double(bf16(wi)); a32 += Double(xi) * Double(wi)
                    }
                    h16[j] = Double(bf16(Float(gelu(a16)))); h32[j] = gelu(a32)
                }
                for o in 0..<d {
                    var e16 = Double(x.data[r * d + o] + b2.data[o]), e32 = e16, magnitude = abs(e16)
                    for j in 0..<hidden {
                        let wj = w2.data[o * hidden + j]
                        e16 += h16[j] * Double(bf16(wj)); e32 += h32[j] * Double(wj); magnitude += abs(h32[j] * Double(wj))
                    }
                    let got = Double(y.data[r * d + o])
                    worstBF16 = max(worstBF16, abs(got - e16) / magnitude)
                    worstFP32 = max(worstFP32, abs(got - e32) / magnitude)
                }
            }
            // Against the same roundings: fp32 accumulation, and a hidden value that lands on the other side
            // of a bf16 rounding boundary (one ulp, 2⁻⁸ of it) where oneDNN's sum differs in the last bits.
            XCTAssertLessThanOrEqual(worstBF16, 1.0 / 1024, "approximate \(approximate): against the step-by-step bf16 arithmetic")
            // Against fp32: three roundings of 2⁻⁹ each on the way (input, weights, hidden), the stated 2⁻⁷ bound.
            XCTAssertLessThanOrEqual(worstFP32, 1.0 / 128, "approximate \(approximate): against fp32")
            XCTAssertGreaterThan(worstFP32, 1e-6, "bf16 should differ from fp32 somewhere")
        }
    }
}
