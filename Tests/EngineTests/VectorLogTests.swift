import Foundation
import XCTest
@testable import Engine

final class VectorLogTests: XCTestCase {
    /// The SIMD log against double-precision ln over 2^-30 ... 2^30 (every binade, both sides of √½ where
    /// the mantissa reduction switches), and at Kaldi fbank's floor.
    func testVectorLogMatchesDoubleLog() throws {
        var values: [Float] = []
        var g = RandomGenerator(seed: 3)
        for e in -30...30 {
            for m: Float in [0.5, 0.70710677, 0.7071068, 0.75, 0.999_999_94, 1] { values.append(Float(m) * Foundation.pow(2, Float(e))) }
            for _ in 0..<20 { values.append(Float(0.5 + 0.5 * g.nextUniform()) * Foundation.pow(2, Float(e))) }
        }
        values += [Float.ulpOfOne, 1, 2, Float(M_E), 1e-7, 3e38]
        var out = values
        out.withUnsafeMutableBufferPointer { VectorLog.logFloored($0.baseAddress!, $0.count, floor: Float.ulpOfOne) }
        var worst: Double = 0
        for (x, y) in zip(values, out) {
            let exact = Foundation.log(Double(max(x, Float.ulpOfOne)))
            worst = max(worst, abs(Double(y) - exact) / max(1, abs(exact)))
        }
        XCTAssertLessThan(worst, 3e-7)
    }

    func testFloorInfinityAndTail() throws {
        var x: [Float] = [0, -1, .nan, 1e-30, .infinity, 1, 4, 9, 16, 25]   // ten: one vector and a tail of two
        x.withUnsafeMutableBufferPointer { VectorLog.logFloored($0.baseAddress!, $0.count, floor: Float.ulpOfOne) }
        let floorLog = Float(Foundation.log(Double(Float.ulpOfOne)))
        for i in 0..<4 { XCTAssertEqual(x[i], floorLog, accuracy: 1e-5, "element \(i) takes the floor") }
        XCTAssertEqual(x[4], .infinity)
        for (i, v) in [1, 4, 9, 16, 25].enumerated() { XCTAssertEqual(x[5 + i], Float(Foundation.log(Double(v))), accuracy: 1e-6) }
    }
}
