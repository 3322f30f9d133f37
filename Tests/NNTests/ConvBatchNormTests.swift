import XCTest
@testable import Engine
@testable import NN

final class ConvBatchNormTests: XCTestCase {
    /// BN(conv(x)) in eval mode equals the convolution with the batch norm folded in, with and without a conv bias.
    func testFoldingMatchesConvThenBatchNorm() throws {
        for withBias in [false, true] {
            let conv = Conv2d(3, 4, kernel: (3, 3), padding: (1, 1), bias: withBias)
            let bn = BatchNorm(4)
            for c in 0..<4 {
                bn.weight.data[c] = 0.5 + Float(c); bn.bias.data[c] = Float(c) - 1.5
                bn.runningMean.data[c] = 0.1 * Float(c) - 0.2; bn.runningVar.data[c] = 0.3 + 0.4 * Float(c)
            }
            bn.eval()
            var g = RandomGenerator(seed: 7)
            let x = Tensor.randn([2, 3, 6, 5], generator: &g)
            let expected = try GradMode.noGrad { try bn(conv(x)) }
            let (w, b) = try bn.folded(into: conv)
            let folded = try GradMode.noGrad { try x.conv2d(weight: w, bias: b, conv.geometry) }
            XCTAssertEqual(folded.shape, expected.shape)
            for i in 0..<folded.count { XCTAssertEqual(folded.data[i], expected.data[i], accuracy: 1e-4) }
        }
    }

    func testFoldingNamesAMismatch() {
        XCTAssertThrowsError(try BatchNorm(5).folded(into: Conv2d(3, 4, kernel: (1, 1)))) { XCTAssertTrue("\($0)".contains("cannot fold"), "\($0)") }
    }
}
