import XCTest
@testable import Engine

/// bf16 and int8 matmuls (PrecisionDNNL.swift) against exact references of the same arithmetic, and
/// the host checks that send a CPU without the instructions to fp32. The kernel tests skip on a CPU
/// without avx512_bf16 / VNNI (oneDNN would run its reference code there, which `--precision` refuses).
final class LowPrecisionMatmulTests: XCTestCase {
    /// (rows, in, out): an AST-tiny MLP shape, a classifier head of one row, and odd sizes.
    static let shapes = [(200, 192, 768), (1, 7, 10), (37, 64, 192), (13, 768, 192)]

    /// bf16 by round-to-nearest-even of the top 16 bits, as oneDNN's reorder and `vcvtneps2bf16` do.
    func bf16(_ x: Float) -> Double {
        let b = x.bitPattern
        return Double(Float(bitPattern: (b &+ 0x7FFF &+ ((b >> 16) & 1)) & 0xFFFF_0000))
    }

    /// Random inputs, weights and bias of one shape through the oneDNN kernel of `precision` (never the
    /// reference fallback): the operands and the output.
    func run(_ precision: Precision, m: Int, k: Int, n: Int) throws -> (x: Tensor, w: Tensor, b: Tensor, y: Tensor) {
        let x = Tensor.randn([m, k]), w = Tensor.randn([n, k], std: 0.1), b = Tensor.randn([n])
        let mm = try LowPrecisionMatmul(weight: w, bias: b, precision: precision)
        XCTAssertFalse(mm.implementation.hasPrefix("ref"), mm.implementation)
        let y = Tensor.empty([m, n])
        try mm.apply(rows: m, x: x.data, out: y.data)
        return (x, w, b, y)
    }

    func testBF16IsTheExactProductOfRoundedOperandsWithFP32Accumulation() throws {
        let cpu = CPUFeatures.host
        try XCTSkipUnless(cpu.hasAVX512BF16 || cpu.hasAMX, "no avx512_bf16 or AMX on this CPU: a bf16 kernel cannot run")
        Random.seed(7)
        for (m, k, n) in Self.shapes {
            let (x, w, b, y) = try run(.bf16, m: m, k: k, n: n)
            var worstExact = 0.0, worstFP32 = 0.0
            for r in 0..<m {
                for j in 0..<n {
                    var exact = Double(b.data[j]), fp32 = Double(b.data[j]), magnitude = 0.0
                    for i in 0..<k {
                        let (xi, wi) = (x.data[r * k + i], w.data[j * k + i])
                        exact += bf16(xi) * bf16(wi); fp32 += Double(xi) * Double(wi); magnitude += abs(Double(xi) * Double(wi))
                    }
                    let got = Double(y.data[r * n + j])
                    // Against the rounded operands: only fp32 accumulation error (K·2⁻²⁴ of Σ|x w|, with room).
                    worstExact = max(worstExact, abs(got - exact) / (magnitude + 1e-3))
                    // Against fp32: each product carries at most 2·2⁻⁹ (+ 2⁻¹⁸) relative rounding, so
                    // |Δ| ≤ 2⁻⁸·Σ|x w| plus accumulation; the stated bf16 tolerance is 2⁻⁷·Σ|x w|.
                    worstFP32 = max(worstFP32, abs(got - fp32) / (magnitude + 1e-3))
                }
            }
            XCTAssertLessThanOrEqual(worstExact, 1e-5, "[\(m), \(k)] x [\(k), \(n)] against the bf16-rounded product")
            XCTAssertLessThanOrEqual(worstFP32, 1.0 / 128, "[\(m), \(k)] x [\(k), \(n)] against fp32")
            if k > 8 { XCTAssertGreaterThan(worstFP32, 1e-6, "a bf16 product should differ from fp32 somewhere") }
        }
    }

    func testInt8IsTheExactScaledIntegerProduct() throws {
        let cpu = CPUFeatures.host
        try XCTSkipUnless(Precision.int8.unavailability(on: cpu) == nil, "no VNNI on this CPU: an int8 kernel cannot run")
        Random.seed(8)
        for (m, k, n) in Self.shapes {
            let (x, w, b, y) = try run(.int8, m: m, k: k, n: n)
            var qx = [Int8](repeating: 0, count: m * k), qw = [Int8](repeating: 0, count: n * k)
            let sx = qx.withUnsafeMutableBufferPointer { q in
                (0..<m).map { r in LowPrecisionMatmul.quantizeRow(x.data + r * k, k, into: q.baseAddress! + r * k) }
            }
            let sw = qw.withUnsafeMutableBufferPointer { q in
                (0..<n).map { j in LowPrecisionMatmul.quantizeRow(w.data + j * k, k, into: q.baseAddress! + j * k) }
            }
            for r in 0..<m {
                let sumX = (0..<k).reduce(0.0) { $0 + abs(Double(x.data[r * k + $1])) }
                for j in 0..<n {
                    var dot = 0, fp32 = Double(b.data[j]), sumW = 0.0
                    for i in 0..<k {
                        dot += Int(qx[r * k + i]) * Int(qw[j * k + i])
                        fp32 += Double(x.data[r * k + i]) * Double(w.data[j * k + i]); sumW += abs(Double(w.data[j * k + i]))
                    }
                    let exact = Double(sx[r]) * Double(sw[j]) * Double(dot) + Double(b.data[j])
                    let got = Double(y.data[r * n + j])
                    XCTAssertEqual(got, exact, accuracy: 1e-5 * (abs(exact) + 1), "[\(m), \(k), \(n)] row \(r) col \(j)")
                    // Rounding x and w to half a step each: |Δ| ≤ s_x/2·Σ|w| + s_w/2·Σ|x| + K·s_x·s_w/4.
                    let bound = Double(sx[r]) / 2 * sumW + Double(sw[j]) / 2 * sumX + Double(k) * Double(sx[r] * sw[j]) / 4
                    XCTAssertLessThanOrEqual(abs(got - fp32), bound * 1.001 + 1e-5, "[\(m), \(k), \(n)] row \(r) col \(j) against fp32")
                }
            }
        }
    }

    func testRowCountsShareTheConvertedWeightAndZeroRowsDoNothing() throws {
        try XCTSkipUnless(Precision.bf16.unavailability() == nil, "no bf16 kernel on this CPU")
        let w = Tensor.randn([64, 32]), x = Tensor.randn([300, 32])
        let mm = try LowPrecisionMatmul(weight: w, bias: nil, precision: .bf16)
        let all = Tensor.empty([300, 64]), some = Tensor.empty([5, 64])
        try mm.apply(rows: 300, x: x.data, out: all.data)
        try mm.apply(rows: 5, x: x.data, out: some.data)
        for i in 0..<(5 * 64) { XCTAssertEqual(all.data[i], some.data[i], "row-count plans must agree on the same rows") }
        try mm.apply(rows: 0, x: x.data, out: some.data)
    }

    func testCPUsWithoutTheInstructionsRunFP32AndSaySo() {
        let avx2 = CPUFeatures(flags: ["sse4_2", "avx", "avx2", "fma"])
        let sapphireRapids = CPUFeatures(flags: Set("avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8".split(separator: " ").map(String.init)))
        let skylakeX = CPUFeatures(flags: ["avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"])
        for p in Precision.allCases {
            XCTAssertEqual(p.unavailability(on: avx2) == nil, p == .fp32, "\(p) on AVX2")
            XCTAssertEqual(p.unavailability(on: skylakeX) == nil, p == .fp32, "\(p) on Skylake-X (no bf16, no VNNI)")
            if DNNL.context != nil { XCTAssertNil(p.unavailability(on: sapphireRapids), "\(p) on Sapphire Rapids") }
        }
        var notices: [String] = []
        XCTAssertEqual(Precision.bf16.resolved(on: avx2) { notices.append($0) }, .fp32)
        XCTAssertEqual(Precision.int8.resolved(on: skylakeX) { notices.append($0) }, .fp32)
        XCTAssertEqual(Precision.fp32.resolved(on: avx2) { notices.append($0) }, .fp32)
        XCTAssertEqual(notices.count, 2)
        XCTAssertTrue(notices[0].contains("bf16") && notices[0].contains("avx512_bf16") && notices[0].contains("running fp32"), notices[0])
        XCTAssertTrue(notices[1].contains("int8") && notices[1].contains("vnni"), notices[1])
        XCTAssertThrowsError(try LowPrecisionMatmul(weight: Tensor.zeros([4, 4]), bias: nil, precision: .fp32))
        XCTAssertThrowsError(try LowPrecisionMatmul(weight: Tensor.zeros([4, 4]), bias: Tensor.zeros([3]), precision: .bf16)) {
            XCTAssertTrue("\($0)".contains("bias shape"), "\($0)")
        }
    }
}
