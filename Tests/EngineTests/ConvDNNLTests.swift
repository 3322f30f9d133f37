import XCTest
@testable import Engine

/// The oneDNN convolution (ConvDNNL.swift, ConvChain.swift) against the im2col + GEMM path it replaces,
/// forward and backward, on geometries where oneDNN's right padding differs from the left.
final class ConvDNNLTests: XCTestCase {
    let geometries: [(input: [Int], weight: [Int], Conv2dGeometry)] = [
        ([2, 3, 9, 8], [5, 3, 3, 3], Conv2dGeometry(padding: (1, 1))),
        ([1, 4, 10, 7], [6, 4, 3, 2], Conv2dGeometry(stride: (2, 1), padding: (1, 1), dilation: (1, 2))),
        ([2, 2, 11, 12], [3, 2, 5, 5], Conv2dGeometry(stride: (3, 2), padding: (2, 2))),
        ([3, 1, 16, 16], [8, 1, 3, 3], Conv2dGeometry(padding: (1, 1))),
        ([1, 5, 1, 13], [4, 5, 1, 3], Conv2dGeometry(stride: (1, 2))),
    ]

    func testOneDNNIsUsedForUngroupedConvolutions() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["EARSHOT_CONV"] == "im2col", "oneDNN turned off by EARSHOT_CONV")
        for (i, w, g) in geometries {
            let s = try Tensor.empty(i).convShape(weight: Tensor.empty(w), bias: nil, g)
            XCTAssertNotNil(DNNLConvPlan.plan(s, bias: true, training: true), "oneDNN rejected \(i) * \(w)")
        }
    }

    func testForwardAndBackwardMatchIm2col() throws {
        for (k, (i, w, g)) in geometries.enumerated() {
            let x = rnd(i, seed: UInt64(10 + k)).requiringGrad(), weight = rnd(w, seed: UInt64(20 + k)).requiringGrad()
            let bias = rnd([w[0]], seed: UInt64(30 + k)).requiringGrad()
            let y = try x.conv2d(weight: weight, bias: bias, g)
            let r = rnd(y.shape, seed: 99)
            try (y * r).sum().backward()

            let s = try x.convShape(weight: weight, bias: bias, g)
            let reference = Tensor.empty(y.shape)
            Tensor.conv2dIm2col(s, x, weight, bias, reference)
            assertClose(y, reference)
            let grads = Tensor.conv2dBackwardIm2col(s, r, x, weight, bias)
            assertClose(try XCTUnwrap(x.grad), try XCTUnwrap(grads[0]))
            assertClose(try XCTUnwrap(weight.grad), try XCTUnwrap(grads[1]), atol: 1e-3)
            assertClose(try XCTUnwrap(bias.grad), try XCTUnwrap(grads[2]), atol: 1e-3)
        }
    }

    func testGradientsByFiniteDifferences() throws {
        try gradCheck([rnd([2, 3, 6, 5], seed: 41), rnd([4, 3, 3, 3], seed: 42), rnd([4], seed: 43)]) {
            try $0[0].conv2d(weight: $0[1], bias: $0[2], Conv2dGeometry(stride: (2, 1), padding: (1, 1), dilation: (1, 2)))
        }
        try gradCheck([rnd([1, 2, 5, 5], seed: 44), rnd([3, 2, 2, 2], seed: 45)]) { try $0[0].conv2d(weight: $0[1], bias: nil) }
    }

    func testFusedReLUAndChainMatchLayerByLayer() throws {
        let x = rnd([2, 1, 21, 16], seed: 50)
        let w1 = rnd([8, 1, 3, 3], seed: 51), b1 = rnd([8], seed: 52)
        let w2 = rnd([16, 8, 3, 3], seed: 53), b2 = rnd([16], seed: 54)
        let w3 = rnd([16, 16, 5, 5], seed: 55), b3 = rnd([16], seed: 56)
        let p1 = Conv2dGeometry(padding: (1, 1)), p2 = Conv2dGeometry(padding: (2, 2))
        let expected = try GradMode.noGrad {
            var y = try x.conv2d(weight: w1, bias: b1, p1).relu()
            y = try y.conv2d(weight: w2, bias: b2, p1).relu().avgPool2d(kernel: (2, 2))
            return try y.conv2d(weight: w3, bias: b3, p2).relu().avgPool2d(kernel: (2, 2))
        }
        let chained = try x.convChainInference([.convReLU(weight: w1, bias: b1, geometry: p1), .convReLU(weight: w2, bias: b2, geometry: p1),
                                                .avgPool(2), .lazyConvReLU(weightShape: w3.shape, bias: true, geometry: p2) { (w3, b3 as Tensor?) },
                                                .avgPool(2), .avgPool(1)])
        assertClose(chained, expected)
        assertClose(try x.conv2dReLUInference(weight: w1, bias: b1, p1), try GradMode.noGrad { try x.conv2d(weight: w1, bias: b1, p1).relu() })
    }

    func testChainNamesBadShapes() throws {
        let x = rnd([1, 2, 4, 4], seed: 60)
        XCTAssertThrowsError(try x.convChainInference([.convReLU(weight: rnd([3, 5, 3, 3], seed: 61), bias: nil, geometry: .init())])) {
            XCTAssertTrue("\($0)".contains("input channels"), "\($0)")
        }
        XCTAssertThrowsError(try x.convChainInference([.avgPool(8)])) { XCTAssertTrue("\($0)".contains("pooling"), "\($0)") }
        // A lazy stage that makes other weights than it declared is named.
        XCTAssertThrowsError(try x.convChainInference([.lazyConvReLU(weightShape: [3, 2, 3, 3], bias: false, geometry: .init()) {
            (rnd([3, 2, 1, 1], seed: 62), nil)
        }])) { XCTAssertTrue("\($0)".contains("declared"), "\($0)") }
    }
}
