import XCTest
import Engine
@testable import NN

/// Shape errors are thrown with the op and shapes named, never a crash.
final class BadInputTests: XCTestCase {
    func expect(_ fragment: String, line: UInt = #line, _ body: () throws -> Any) {
        XCTAssertThrowsError(try body(), line: line) { error in
            XCTAssertTrue("\(error)".contains(fragment), "expected '\(fragment)' in '\(error)'", line: line)
        }
    }

    func testMismatchedShapes() {
        let a = Tensor.zeros([2, 3]), b = Tensor.zeros([4])
        expect("cannot be broadcast") { try a + b }
        expect("inner dimensions differ") { try a.matmul(Tensor.zeros([4, 2])) }
        expect("does not end in 5") { try Linear(5, 2)(a) }
        expect("cannot reshape") { try a.reshape([4, 2]) }
        expect("axis 3 is out of range") { try a.sum(axis: 3) }
        expect("not a permutation") { try a.permute([0, 0]) }
        expect("concat") { try Tensor.concat([a, b], axis: 0) }
        expect("index 7 out of range") { try a.indexSelect(axis: 1, indices: [7]) }
        expect("needs 6 values") { try Tensor([1, 2], shape: [2, 3]) }
        expect("smaller than the kernel") { try Tensor.zeros([1, 1, 2, 2]).conv2d(weight: Tensor.zeros([1, 1, 3, 3]), bias: nil) }
        expect("[B, N, D]") { try MultiHeadAttention(dim: 4, heads: 2)(a) }
        expect("target 9") { try a.crossEntropy(targets: [9, 0]) }
        expect("2 targets for") { try Tensor.zeros([3, 2]).crossEntropy(targets: [0, 1]) }
    }

    func testNaNLossIsReportedNotPropagated() throws {
        let w = Tensor([1]).requiringGrad()
        let loss = try (w * Tensor([.nan])).sum()
        expect("NaN") { try loss.backward() }
    }
}
