import XCTest
@testable import Engine

/// One finite-difference check per differentiable op.
final class GradientTests: XCTestCase {
    func testBroadcastArithmetic() throws {
        try gradCheck([rnd([2, 3, 4], seed: 1), rnd([3, 1], seed: 2)]) { try $0[0] + $0[1] }
        try gradCheck([rnd([2, 3, 4], seed: 1), rnd([4], seed: 2)]) { try $0[0] - $0[1] }
        try gradCheck([rnd([2, 1, 4], seed: 1), rnd([3, 4], seed: 2)]) { try $0[0] * $0[1] }
        try gradCheck([rnd([2, 3], seed: 1), rnd([2, 3], seed: 2, awayFromZero: true)]) { try $0[0] / $0[1] }
        try gradCheck([rnd([5], seed: 3)]) { $0[0] * 3 - 2 }
        try gradCheck([rnd([5], seed: 3)]) { 1 - $0[0] / 4 }
        try gradCheck([rnd([2, 3], seed: 1), rnd([3], seed: 5)]) { try $0[0].maximum($0[1]) }
    }

    func testUnary() throws {
        let x = rnd([3, 7], seed: 4, awayFromZero: true)
        try gradCheck([x]) { $0[0].exp() }
        try gradCheck([x.abs() + 0.5]) { $0[0].log() }
        try gradCheck([x.abs() + 0.5]) { $0[0].sqrt() }
        try gradCheck([x.abs() + 0.5]) { $0[0].pow(1.7) }
        try gradCheck([x]) { $0[0].square() }
        try gradCheck([x]) { $0[0].abs() }
        try gradCheck([x]) { $0[0].clamp(min: -0.5, max: 0.7) }
    }

    func testActivations() throws {
        let x = rnd([4, 9], seed: 5, awayFromZero: true)
        try gradCheck([x]) { $0[0].relu() }
        try gradCheck([x]) { $0[0].gelu() }
        try gradCheck([x]) { $0[0].gelu(approximate: true) }
        try gradCheck([x]) { $0[0].sigmoid() }
        try gradCheck([x]) { $0[0].tanh() }
        try gradCheck([x]) { $0[0].silu() }
        try gradCheck([x]) { $0[0].softplus() }
        try gradCheck([x * 10]) { $0[0].softplus(beta: 2, threshold: 5) }
    }

    func testReductions() throws {
        let x = rnd([2, 3, 4], seed: 6)
        try gradCheck([x]) { try $0[0].sum() }
        try gradCheck([x]) { try $0[0].sum(axes: [0, 2], keepDim: true) }
        try gradCheck([x]) { try $0[0].mean(axis: 1) }
        try gradCheck([x]) { try $0[0].variance(axes: [2]) }
        try gradCheck([x]) { try $0[0].variance(axes: [0, 1], unbiased: false, keepDim: true) }
        try gradCheck([x]) { try $0[0].max(axis: -1) }
        try gradCheck([x]) { try $0[0].max(axis: 0, keepDim: true) }
    }

    func testShapeOps() throws {
        let x = rnd([2, 3, 4], seed: 7)
        try gradCheck([x]) { try $0[0].reshape([4, -1]) }
        try gradCheck([x]) { try $0[0].permute([2, 0, 1]) }
        try gradCheck([x]) { try $0[0].transpose(0, 2) }
        try gradCheck([x]) { try $0[0].slice(axis: 2, start: 1, end: 4, step: 2) }
        try gradCheck([x]) { try $0[0].slice(axis: 1, start: -2) }
        try gradCheck([x, rnd([2, 2, 4], seed: 8)]) { try Tensor.concat([$0[0], $0[1]], axis: 1) }
        try gradCheck([x, rnd([2, 3, 4], seed: 8)]) { try Tensor.stack([$0[0], $0[1]], axis: 1) }
        try gradCheck([x]) { try $0[0].pad([(0, 0), (1, 2), (2, 0)], value: 0.5) }
        try gradCheck([x]) { try $0[0].flip([0, 2]) }
        try gradCheck([x]) { try $0[0].indexSelect(axis: 1, indices: [2, 0, 2]) }
        try gradCheck([x]) { try $0[0].gather(axis: 2, index: [0, 3, 1, 1, 2, 0, 3, 3, 0, 1, 2, 2], indexShape: [2, 3, 2]) }
        try gradCheck([x]) { try $0[0].expand([3, 2, 3, 4]) }
        let mask = try Tensor([1, 0, 0, 1], shape: [4])
        try gradCheck([x]) { try $0[0].maskedFill(mask, -1) }
        let cond = try Tensor([1, 0, 1], shape: [3, 1])
        try gradCheck([x, rnd([4], seed: 9)]) { try Tensor.where(cond, $0[0], $0[1]) }
    }

    func testLowRankLinearEqualsComposedUpdatesAndHasGradients() throws {
        var gen = RandomGenerator(seed: 5)
        let x = Tensor.randn([2, 3, 6], generator: &gen), w = Tensor.randn([9, 6], generator: &gen), b = Tensor.randn([9], generator: &gen)
        let d1 = Tensor.randn([2, 6], generator: &gen), u1 = Tensor.randn([3, 2], generator: &gen)
        let d2 = Tensor.randn([1, 6], generator: &gen), u2 = Tensor.randn([2, 1], generator: &gen)
        func fused(_ t: [Tensor]) throws -> Tensor {
            try t[0].linear(weight: t[1], bias: t[2], lowRank: [LowRankUpdate(down: t[3], up: t[4], columns: 0..<3),
                                                                 LowRankUpdate(down: t[5], up: t[6], columns: 6..<8)], scale: 0.7)
        }
        // The same as the product plus each padded, scaled up(down x).
        let composed = try x.linear(weight: w, bias: b)
            + (x.linear(weight: d1, bias: nil).linear(weight: u1, bias: nil) * 0.7).pad([(0, 0), (0, 0), (0, 6)])
            + (x.linear(weight: d2, bias: nil).linear(weight: u2, bias: nil) * 0.7).pad([(0, 0), (0, 0), (6, 1)])
        let out = try fused([x, w, b, d1, u1, d2, u2])
        XCTAssertEqual(out.shape, [2, 3, 9])
        for (a, c) in zip(out.toArray(), composed.toArray()) { XCTAssertEqual(a, c, accuracy: 1e-5) }
        try gradCheck([x, w, b, d1, u1, d2, u2]) { try fused($0) }
        // Overlapping columns add up; a frozen input and weight (LoRA's case) still give the factors their gradients.
        try gradCheck([x, d1, u1]) { try $0[0].linear(weight: w, bias: nil, lowRank: [LowRankUpdate(down: $0[1], up: $0[2], columns: 3..<6),
                                                                                       LowRankUpdate(down: $0[1], up: $0[2], columns: 5..<8)], scale: 1.3) }
        try gradCheck([d1, u1]) { try x.linear(weight: w, bias: b, lowRank: [LowRankUpdate(down: $0[0], up: $0[1], columns: 6..<9)], scale: 0.5) }
        XCTAssertThrowsError(try x.linear(weight: w, bias: b, lowRank: [LowRankUpdate(down: d1, up: u1, columns: 7..<10)], scale: 1))
        XCTAssertThrowsError(try x.linear(weight: w, bias: b, lowRank: [LowRankUpdate(down: d1, up: u2, columns: 0..<3)], scale: 1))
        XCTAssertThrowsError(try x.linear(weight: w, bias: b, lowRank: [LowRankUpdate(down: w, up: u1, columns: 0..<3)], scale: 1))
    }

    /// At a size where the frozen product takes the packed micro-kernel and the GEMMs split across threads,
    /// the op's output and gradients match the composed layers' (whose gradients are FD-tested).
    func testLowRankLinearMatchesComposedLayersAtSize() throws {
        var gen = RandomGenerator(seed: 6)
        let x = Tensor.randn([4, 75, 64], generator: &gen), w = Tensor.randn([192, 64], generator: &gen)
        let b = Tensor.randn([192], generator: &gen)
        let d = [Tensor.randn([4, 64], generator: &gen), Tensor.randn([4, 64], generator: &gen)]
        let u = [Tensor.randn([64, 4], generator: &gen), Tensor.randn([64, 4], generator: &gen)]
        let cols = [0..<64, 128..<192]
        func leaves() -> [Tensor] { ([x] + d + u).map { $0.copy().requiringGrad() } }
        let (a, c) = (leaves(), leaves())
        let fused = try a[0].linear(weight: w, bias: b, lowRank: (0..<2).map { LowRankUpdate(down: a[1 + $0], up: a[3 + $0], columns: cols[$0]) },
                                    scale: 0.125)
        let q = try c[0].linear(weight: c[1], bias: nil).linear(weight: c[3], bias: nil) * 0.125
        let v = try c[0].linear(weight: c[2], bias: nil).linear(weight: c[4], bias: nil) * 0.125
        let composed = try c[0].linear(weight: w, bias: b) + q.pad([(0, 0), (0, 0), (0, 128)]) + v.pad([(0, 0), (0, 0), (128, 0)])
        for (p, r) in zip(fused.toArray(), composed.toArray()) { XCTAssertEqual(p, r, accuracy: 1e-4) }
        let probe = Tensor.randn(fused.shape, generator: &gen)
        try (fused * probe).sum().backward()
        try (composed * probe).sum().backward()
        for (p, r) in zip(a, c) {
            let (gp, gr) = (try XCTUnwrap(p.grad).toArray(), try XCTUnwrap(r.grad).toArray())
            for (i, j) in zip(gp, gr) { XCTAssertEqual(i, j, accuracy: 1e-3 * max(1, abs(j))) }
        }
    }

    func testMatmulAndLinear() throws {
        try gradCheck([rnd([3, 4], seed: 10), rnd([4, 5], seed: 11)]) { try $0[0].matmul($0[1]) }
        try gradCheck([rnd([2, 3, 4], seed: 10), rnd([4, 5], seed: 11)]) { try $0[0].matmul($0[1]) }
        try gradCheck([rnd([2, 1, 3, 4], seed: 10), rnd([3, 4, 2], seed: 11)]) { try $0[0].matmul($0[1]) }
        try gradCheck([rnd([4], seed: 10), rnd([4, 2], seed: 11)]) { try $0[0].matmul($0[1]) }
        try gradCheck([rnd([2, 3, 4], seed: 12), rnd([5, 4], seed: 13), rnd([5], seed: 14)]) {
            try $0[0].linear(weight: $0[1], bias: $0[2])
        }
        try gradCheck([rnd([3, 4], seed: 12), rnd([2, 4], seed: 13)]) { try $0[0].linear(weight: $0[1], bias: nil) }
    }

    func testSoftmaxAndNorms() throws {
        let x = rnd([3, 6], seed: 15)
        try gradCheck([x]) { try $0[0].softmax(axis: -1) }
        try gradCheck([x]) { try $0[0].softmax(axis: 0) }
        try gradCheck([x]) { try $0[0].logSoftmax(axis: 1) }
        try gradCheck([rnd([2, 3, 8], seed: 16), rnd([8], seed: 17), rnd([8], seed: 18)]) {
            try $0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-5)
        }
        try gradCheck([rnd([4, 5], seed: 16)]) { try $0[0].layerNorm(weight: nil, bias: nil, eps: 1e-6) }
        // Rows wider than a vector, with a ragged tail (the backward's vector loops and scalar tails).
        try gradCheck([rnd([3, 19], seed: 22), rnd([19], seed: 23), rnd([19], seed: 24)]) {
            try $0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-5)
        }
        try gradCheck([rnd([2, 21], seed: 25), rnd([21], seed: 26)]) { try $0[0].layerNorm(weight: nil, bias: $0[1], eps: 1e-5) }
        try gradCheck([rnd([4, 3, 2, 2], seed: 19), rnd([3], seed: 20), rnd([3], seed: 21)]) {
            try $0[0].batchNorm(runningMean: nil, runningVar: nil, weight: $0[1], bias: $0[2], training: true)
        }
        let rm = rnd([3], seed: 22), rv = rnd([3], seed: 23).abs() + 0.5
        try gradCheck([rnd([2, 3, 5], seed: 19), rnd([3], seed: 20)]) {
            try $0[0].batchNorm(runningMean: rm, runningVar: rv, weight: $0[1], bias: nil, training: false)
        }
    }

    func testDropoutScalesKeptElements() throws {
        var gen = RandomGenerator(seed: 1)
        let x = rnd([50], seed: 24)
        x.requiresGrad = true
        let y = try x.dropout(p: 0.3, training: true, generator: &gen)
        try y.sum().backward()
        for i in 0..<50 {
            let g = x.grad!.data[i]
            XCTAssertTrue(g == 0 || abs(g - 1 / 0.7) < 1e-5)
            XCTAssertEqual(y.data[i], x.data[i] * g, accuracy: 1e-5)
        }
    }

    func testConvolutions() throws {
        try gradCheck([rnd([2, 4, 5, 6], seed: 25), rnd([6, 2, 3, 2], seed: 26), rnd([6], seed: 27)]) {
            try $0[0].conv2d(weight: $0[1], bias: $0[2], Conv2dGeometry(stride: (2, 1), padding: (1, 1), dilation: (1, 2), groups: 2))
        }
        try gradCheck([rnd([1, 3, 7], seed: 28), rnd([3, 1, 3], seed: 29)]) {
            try $0[0].conv1d(weight: $0[1], bias: nil, stride: 2, padding: 1, groups: 3)
        }
    }

    func testPooling() throws {
        let x = rnd([2, 2, 5, 6], seed: 30)
        try gradCheck([x]) { try $0[0].maxPool2d(kernel: (2, 3), stride: (2, 2), padding: (1, 1)) }
        try gradCheck([x]) { try $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        try gradCheck([x]) { try $0[0].adaptivePool2d(3, 4) }
        try gradCheck([x]) { try $0[0].adaptivePool2d(2, 4, max: true) }
        let s = rnd([2, 3, 9], seed: 31)
        try gradCheck([s]) { try $0[0].maxPool1d(kernel: 3, stride: 2) }
        try gradCheck([s]) { try $0[0].avgPool1d(kernel: 2) }
        try gradCheck([s]) { try $0[0].adaptivePool1d(4) }
    }

    func testInterpolation() throws {
        let x = rnd([1, 2, 3, 4], seed: 32)
        for mode in [InterpolationMode.bilinear, .bicubic] {
            for align in [false, true] {
                try gradCheck([x]) { try $0[0].interpolate(size: (5, 3), mode: mode, alignCorners: align) }
            }
        }
    }

    func testAttention() throws {
        try gradCheck([rnd([2, 2, 5, 3], seed: 33), rnd([2, 2, 7, 3], seed: 34), rnd([2, 2, 7, 4], seed: 35)]) {
            try Tensor.scaledDotProductAttention($0[0], $0[1], $0[2])
        }
        try gradCheck([rnd([2, 6, 3 * 2 * 4], seed: 36)]) { try $0[0].packedSelfAttention(heads: 2) }
        // Several query and key blocks: the online softmax and blocked backward accumulate correctly.
        try withAttentionBlocks(query: 2, key: 3) {
            try gradCheck([rnd([1, 2, 7, 3], seed: 43), rnd([1, 2, 8, 3], seed: 44), rnd([1, 2, 8, 2], seed: 45)]) {
                try Tensor.scaledDotProductAttention($0[0], $0[1], $0[2])
            }
            try gradCheck([rnd([2, 9, 3 * 2 * 4], seed: 46)]) { try $0[0].packedSelfAttention(heads: 2) }
        }
        // Head dim 32 (a multiple of the micro-kernel's width, 16 or 32): the register-tiled kernels, with
        // ragged row tiles and several key blocks.
        try withAttentionBlocks(query: 5, key: 16) {
            try gradCheck([rnd([1, 1, 11, 32], seed: 47), rnd([1, 1, 37, 32], seed: 48), rnd([1, 1, 37, 32], seed: 49)],
                          eps: 5e-3) {
                try Tensor.scaledDotProductAttention($0[0], $0[1], $0[2])
            }
        }
    }

    func testLosses() throws {
        try gradCheck([rnd([4, 5], seed: 37)]) { try $0[0].crossEntropy(targets: [0, 4, 2, 2]) }
        try gradCheck([rnd([4, 5], seed: 37)]) { try $0[0].crossEntropy(targets: [1, 3, -100, 0], labelSmoothing: 0.1, ignoreIndex: -100) }
        let soft = try rnd([3, 4], seed: 38).softmax()
        try gradCheck([rnd([3, 4], seed: 39)]) { try $0[0].crossEntropy(softTargets: soft) }
        let y = try Tensor([1, 0, 1, 0, 0, 1], shape: [2, 3])
        try gradCheck([rnd([2, 3], seed: 40)]) { try $0[0].binaryCrossEntropyWithLogits(targets: y) }
        try gradCheck([rnd([2, 3], seed: 41), rnd([2, 3], seed: 42)]) { try $0[0].mseLoss($0[1]) }
    }
}
