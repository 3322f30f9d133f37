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
        let s3 = rnd([16], seed: 57), s1 = rnd([8], seed: 58)
        let expected = try GradMode.noGrad {
            var y = try x.conv2d(weight: w1, bias: b1, p1).relu()
            y = try y.conv2d(weight: w2, bias: b2, p1).relu().avgPool2d(kernel: (2, 2))
            return try y.conv2d(weight: w3 * s3.reshape([16, 1, 1, 1]), bias: b3, p2).relu().avgPool2d(kernel: (2, 2))
        }
        let chained = try x.convChainInference([.convReLU(weight: w1, bias: b1, geometry: p1), .convReLU(weight: w2, bias: b2, geometry: p1),
                                                .avgPool(2), .scaledConvReLU(weight: w3, scale: s3, bias: b3, geometry: p2),
                                                .avgPool(2), .avgPool(1)])
        assertClose(chained, expected)
        // A scaled first stage (one input channel: oneDNN may keep the plain weight layout, and still has to scale).
        assertClose(try x.convChainInference([.scaledConvReLU(weight: w1, scale: s1, bias: nil, geometry: p1)]),
                    try GradMode.noGrad { try x.conv2d(weight: w1 * s1.reshape([8, 1, 1, 1]), bias: nil, p1).relu() })
        assertClose(try x.conv2dReLUInference(weight: w1, bias: b1, p1), try GradMode.noGrad { try x.conv2d(weight: w1, bias: b1, p1).relu() })
    }

    /// With `.winograd`, 3x3 stride-1 stages of 16 channels or more run as Winograd (oneDNN's F(4x4, 3x3)
    /// or, on small shapes, F(2x2, 3x3)) where the CPU has it (AVX-512); the result is the direct chain's to
    /// fp32 rounding (Winograd's transforms add a little: the bound is relative to the output's scale),
    /// and the stages it does not take (one channel, 5x5) stay direct in the same chain, with the layout
    /// reorders between them.
    func testWinogradChainMatchesTheDirectOne() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["EARSHOT_CONV"] == "im2col", "oneDNN turned off by EARSHOT_CONV")
        let x = rnd([2, 1, 40, 24], seed: 70)
        let p1 = Conv2dGeometry(padding: (1, 1)), p2 = Conv2dGeometry(padding: (2, 2))
        let w = [rnd([16, 1, 3, 3], seed: 71), rnd([32, 16, 3, 3], seed: 72), rnd([32, 32, 3, 3], seed: 73), rnd([16, 32, 5, 5], seed: 74)]
        let b = (0..<4).map { rnd([w[$0].shape[0]], seed: UInt64(80 + $0)) }
        let stages: [ConvChainStage] = [.convReLU(weight: w[0], bias: b[0], geometry: p1), .convReLU(weight: w[1], bias: b[1], geometry: p1),
                                        .avgPool(2), .convReLU(weight: w[2], bias: b[2], geometry: p1), .convReLU(weight: w[3], bias: b[3], geometry: p2)]
        let direct = try x.convChainInference(stages, algorithm: .direct)
        let winograd = try x.convChainInference(stages, algorithm: .winograd)
        let scale = direct.toArray().map(abs).max() ?? 1
        let worst = zip(direct.toArray(), winograd.toArray()).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThan(worst, 1e-5 * scale, "Winograd against direct, relative to the output's largest value \(scale)")
        guard CPUFeatures.host.hasAVX512 else { return }   // oneDNN 2.6's Winograd is AVX-512 only
        let shapes: [DNNLConvChain.StageShape] = try {
            var out: [DNNLConvChain.StageShape] = [], shape = x.shape
            for stage in stages {
                switch stage {
                case .convReLU(let weight, _, let g):
                    let s = try Tensor.empty(shape).convShape(weight: weight, bias: nil, g)
                    out.append(.init(conv: s, pool: 1, inShape: shape, outShape: [s.n, s.o, s.oh, s.ow], bias: true))
                    shape = [s.n, s.o, s.oh, s.ow]
                case .avgPool(let k):
                    let next = [shape[0], shape[1], shape[2] / k, shape[3] / k]
                    out.append(.init(conv: nil, pool: k, inShape: shape, outShape: next, bias: false)); shape = next
                default: break
                }
            }
            return out
        }()
        let used = try XCTUnwrap(DNNLConvChain.chain(shapes, algorithm: .winograd)).convImplementations
        XCTAssertEqual(used.map { $0.contains("wino") }, [false, true, true, false], "\(used)")   // 1 channel and 5x5 stay direct
        XCTAssertFalse(try XCTUnwrap(DNNLConvChain.chain(shapes, algorithm: .direct)).convImplementations.contains { $0.contains("wino") })
    }

    /// The Winograd stages keep their transformed weights between calls; a call with other weights (or another
    /// scale) in the same tensors transforms them again, so the result always follows the weights as they are.
    func testWinogradKeptWeightsFollowChanges() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["EARSHOT_CONV"] == "im2col", "oneDNN turned off by EARSHOT_CONV")
        let x = rnd([2, 16, 20, 12], seed: 90), g = Conv2dGeometry(padding: (1, 1))
        let w = rnd([32, 16, 3, 3], seed: 91), scale = rnd([32], seed: 92), b = rnd([32], seed: 93)
        let stages: [ConvChainStage] = [.scaledConvReLU(weight: w, scale: scale, bias: b, geometry: g)]
        func expected() throws -> Tensor { try GradMode.noGrad { try x.conv2d(weight: w * scale.reshape([32, 1, 1, 1]), bias: b, g).relu() } }
        func check(_ what: String) throws {
            let y = try x.convChainInference(stages, algorithm: .winograd), e = try expected()
            let worst = zip(y.toArray(), e.toArray()).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 1e-5 * (e.toArray().map(abs).max() ?? 1), what)
        }
        try check("first call")
        try check("second call, weights kept")
        w.data[5] += 0.5                       // one weight changed in place
        try check("after a weight changed")
        scale.data[3] *= -2                    // the scale changed
        try check("after the scale changed")
        XCTAssertLessThanOrEqual(WinogradWeights.kept, WinogradWeights.capBytes)
    }

    /// A Winograd stage whose scratchpad would pass `winogradScratchpadLimit` runs on slices of the batch
    /// (one clip at a time with a limit of 0), with the same result as the whole batch at once.
    func testWinogradRunsOnSlicesOfTheBatch() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["EARSHOT_CONV"] == "im2col", "oneDNN turned off by EARSHOT_CONV")
        let x = rnd([3, 16, 24, 20], seed: 94), g = Conv2dGeometry(padding: (1, 1))
        let w1 = rnd([32, 16, 3, 3], seed: 95), w2 = rnd([32, 32, 3, 3], seed: 96), b = rnd([32], seed: 97)
        let stages: [ConvChainStage] = [.convReLU(weight: w1, bias: b, geometry: g), .avgPool(2), .convReLU(weight: w2, bias: b, geometry: g)]
        let whole = try x.convChainInference(stages, algorithm: .winograd)
        let saved = DNNLConvChain.winogradScratchpadLimit
        DNNLConvChain.winogradScratchpadLimit = 0
        defer { DNNLConvChain.winogradScratchpadLimit = saved }
        let sliced = try x.convChainInference(stages, algorithm: .winograd)
        let direct = try x.convChainInference(stages, algorithm: .direct)
        let scale = direct.toArray().map(abs).max() ?? 1
        XCTAssertLessThan(zip(sliced.toArray(), direct.toArray()).map { abs($0 - $1) }.max() ?? .infinity, 1e-5 * scale)
        XCTAssertLessThan(zip(sliced.toArray(), whole.toArray()).map { abs($0 - $1) }.max() ?? .infinity, 1e-5 * scale)
        guard CPUFeatures.host.hasAVX512 else { return }   // oneDNN 2.6's Winograd is AVX-512 only
        let shapes: [DNNLConvChain.StageShape] = [
            .init(conv: try x.convShape(weight: w1, bias: b, g), pool: 1, inShape: [3, 16, 24, 20], outShape: [3, 32, 24, 20], bias: true),
            .init(conv: nil, pool: 2, inShape: [3, 32, 24, 20], outShape: [3, 32, 12, 10], bias: false),
            .init(conv: try Tensor.empty([3, 32, 12, 10]).convShape(weight: w2, bias: b, g), pool: 1, inShape: [3, 32, 12, 10],
                  outShape: [3, 32, 12, 10], bias: true)]
        let chain = try XCTUnwrap(DNNLConvChain.chain(shapes, algorithm: .winograd))
        XCTAssertEqual(chain.convChunks, [3, 3], "\(chain.convImplementations)")   // one clip at a time
    }

    /// `precision: .bf16` runs the direct stages in bf16 where oneDNN has a bf16 kernel for this CPU (and the
    /// Winograd ones fp32): the result is the fp32 chain's to bf16 rounding (8 bits of mantissa in the weights
    /// and activations, fp32 accumulation), and without bf16 units the chain is the fp32 one.
    func testBF16ChainMatchesFP32WithinBF16Rounding() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["EARSHOT_CONV"] == "im2col", "oneDNN turned off by EARSHOT_CONV")
        let x = rnd([2, 1, 32, 24], seed: 100), p1 = Conv2dGeometry(padding: (1, 1)), p2 = Conv2dGeometry(padding: (2, 2))
        let w = [rnd([16, 1, 3, 3], seed: 101), rnd([32, 16, 5, 5], seed: 102), rnd([32, 32, 3, 3], seed: 103)]
        let scale = rnd([32], seed: 104), b = (0..<3).map { rnd([w[$0].shape[0]], seed: UInt64(105 + $0)) }
        let stages: [ConvChainStage] = [.convReLU(weight: w[0], bias: b[0], geometry: p1), .avgPool(2),
                                        .scaledConvReLU(weight: w[1], scale: scale, bias: b[1], geometry: p2), .avgPool(2),
                                        .convReLU(weight: w[2], bias: b[2], geometry: p1)]
        for algorithm in [ConvChainAlgorithm.direct, .winograd] {
            let fp32 = try x.convChainInference(stages, algorithm: algorithm)
            let bf16 = try x.convChainInference(stages, algorithm: algorithm, precision: .bf16)
            let top = fp32.toArray().map(abs).max() ?? 1
            let worst = zip(fp32.toArray(), bf16.toArray()).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 0.03 * top, "\(algorithm): bf16 against fp32, relative to the output's largest value \(top)")
        }
        let shapes: [DNNLConvChain.StageShape] = [
            .init(conv: try x.convShape(weight: w[0], bias: b[0], p1), pool: 1, inShape: [2, 1, 32, 24], outShape: [2, 16, 32, 24], bias: true),
            .init(conv: nil, pool: 2, inShape: [2, 16, 32, 24], outShape: [2, 16, 16, 12], bias: false),
            .init(conv: try Tensor.empty([2, 16, 16, 12]).convShape(weight: w[1], bias: b[1], p2), pool: 1, inShape: [2, 16, 16, 12],
                  outShape: [2, 32, 16, 12], bias: true, scaled: true)]
        let used = try XCTUnwrap(DNNLConvChain.chain(shapes, algorithm: .direct, precision: .bf16)).convImplementations
        XCTAssertEqual(used.allSatisfy { $0.contains("bf16") }, CPUFeatures.host.hasAVX512BF16, "\(used)")
    }

    func testChainNamesBadShapes() throws {
        let x = rnd([1, 2, 4, 4], seed: 60)
        XCTAssertThrowsError(try x.convChainInference([.convReLU(weight: rnd([3, 5, 3, 3], seed: 61), bias: nil, geometry: .init())])) {
            XCTAssertTrue("\($0)".contains("input channels"), "\($0)")
        }
        XCTAssertThrowsError(try x.convChainInference([.avgPool(8)])) { XCTAssertTrue("\($0)".contains("pooling"), "\($0)") }
        // A per-channel scale of the wrong length is named.
        XCTAssertThrowsError(try x.convChainInference([.scaledConvReLU(weight: rnd([3, 2, 3, 3], seed: 62), scale: rnd([2], seed: 63),
                                                                       bias: nil, geometry: .init())])) {
            XCTAssertTrue("\($0)".contains("a scale of [2]"), "\($0)")
        }
    }
}
