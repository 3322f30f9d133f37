import Foundation
import XCTest
@testable import Engine

/// Forward results of single ops against PyTorch (fixtures from tools/make_fixtures.py).
final class TorchParityTests: XCTestCase {
    static let fixtures: [String: Tensor] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/ops.json")
        guard let data = try? Data(contentsOf: url),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else { return [:] }
        var out: [String: Tensor] = [:]
        for (k, v) in json {
            let shape = (v["shape"] as? [NSNumber] ?? []).map(\.intValue)
            let values = (v["data"] as? [NSNumber] ?? []).map(\.floatValue)
            out[k] = try? Tensor(values, shape: shape)
        }
        return out
    }()

    func fx(_ key: String) throws -> Tensor { try XCTUnwrap(Self.fixtures[key], "fixture \(key) missing") }

    func testActivations() throws {
        let x = try fx("act.input")
        assertClose(x.gelu(), try fx("act.gelu"), atol: 2e-6)
        assertClose(x.gelu(approximate: true), try fx("act.gelu_tanh"), atol: 2e-6)
        assertClose(x.sigmoid(), try fx("act.sigmoid"), atol: 1e-6)
        assertClose(x.tanh(), try fx("act.tanh"), atol: 1e-6)
        assertClose(x.silu(), try fx("act.silu"), atol: 2e-6)
        assertClose(x.softplus(), try fx("act.softplus"), atol: 1e-6)
        assertClose(x.exp(), try fx("act.exp"), atol: 1e-6, rtol: 1e-6)
        assertClose(try x.softmax(axis: -1), try fx("act.softmax"), atol: 1e-6)
        assertClose(try x.logSoftmax(axis: 0), try fx("act.log_softmax"), atol: 2e-6)
    }

    func testNormalisation() throws {
        assertClose(try fx("ln.input").layerNorm(weight: fx("ln.weight"), bias: fx("ln.bias"), eps: 1e-6), try fx("ln.output"), atol: 1e-5)
        let rm = Tensor.zeros([3]), rv = Tensor.ones([3])
        let x = try fx("bn.input")
        let y = try x.batchNorm(runningMean: rm, runningVar: rv, weight: fx("bn.weight"), bias: fx("bn.bias"), training: true)
        assertClose(y, try fx("bn.train_output"), atol: 1e-5)
        assertClose(rm, try fx("bn.running_mean"), atol: 1e-6)
        assertClose(rv, try fx("bn.running_var"), atol: 1e-6)
        let e = try x.batchNorm(runningMean: rm, runningVar: rv, weight: fx("bn.weight"), bias: fx("bn.bias"), training: false)
        assertClose(e, try fx("bn.eval_output"), atol: 1e-5)
    }

    func testConvolutionAndPooling() throws {
        let x = try fx("conv2d.input")
        let y = try x.conv2d(weight: fx("conv2d.weight"), bias: fx("conv2d.bias"),
                             Conv2dGeometry(stride: (2, 1), padding: (1, 2), dilation: (2, 1), groups: 2))
        assertClose(y, try fx("conv2d.output"), atol: 1e-4)
        let y1 = try fx("conv1d.input").conv1d(weight: fx("conv1d.weight"), bias: nil, stride: 2, padding: 2, groups: 3)
        assertClose(y1, try fx("conv1d.output"), atol: 1e-5)
        assertClose(try x.maxPool2d(kernel: (3, 2), stride: (2, 2), padding: (1, 1)), try fx("pool.max"))
        assertClose(try x.avgPool2d(kernel: (3, 3), stride: (2, 3), padding: (1, 1)), try fx("pool.avg"), atol: 1e-6)
        assertClose(try x.adaptivePool2d(4, 5), try fx("pool.adaptive_avg"), atol: 1e-6)
        assertClose(try x.adaptivePool2d(3, 7, max: true), try fx("pool.adaptive_max"))
    }

    func testInterpolation() throws {
        let x = try fx("interp.input")
        for mode in [InterpolationMode.bilinear, .bicubic] {
            for align in [false, true] {
                for size in [(9, 4), (3, 13)] {
                    let key = "interp.\(mode.rawValue).\(align ? 1 : 0).\(size.0)x\(size.1)"
                    assertClose(try x.interpolate(size: size, mode: mode, alignCorners: align), try fx(key), atol: 1e-5)
                }
            }
        }
    }

    func testAttentionMatchesTorchAcrossBlockBoundaries() throws {
        // Default blocks (one key block here), then small blocks so the online-softmax rescaling runs.
        // The tiled path (head dims multiples of 16) and the BLAS fallback (value dim 8).
        for (v, out) in [("sdpa.v", "sdpa.output"), ("sdpa.v8", "sdpa.output8")] {
            let y = try Tensor.scaledDotProductAttention(fx("sdpa.q"), fx("sdpa.k"), fx(v))
            assertClose(y, try fx(out), atol: 1e-5)
            try withAttentionBlocks(query: 16, key: 64) {
                let y = try Tensor.scaledDotProductAttention(fx("sdpa.q"), fx("sdpa.k"), fx(v))
                assertClose(y, try fx(out), atol: 1e-5)
            }
        }
    }

    func testLosses() throws {
        let logits = try fx("loss.logits")
        let targets = [0, 4, 2, 1, 3, 3]
        XCTAssertEqual(try logits.crossEntropy(targets: targets).item(), try fx("loss.ce").item(), accuracy: 1e-5)
        XCTAssertEqual(try logits.crossEntropy(targets: targets, labelSmoothing: 0.2).item(), try fx("loss.ce_smooth").item(), accuracy: 1e-5)
        XCTAssertEqual(try logits.binaryCrossEntropyWithLogits(targets: fx("loss.bce_targets")).item(), try fx("loss.bce").item(), accuracy: 1e-5)
    }
}

final class AttentionMemoryTests: XCTestCase {
    /// 8192 tokens: an N x N score matrix alone would be 256 MiB; the blocked kernel must stay linear.
    func testLongSequenceNeverBuildsTheScoreMatrix() throws {
        let n = 8192, d = 16
        let q = Tensor.randn([1, 1, n, d]).requiringGrad(), k = Tensor.randn([1, 1, n, d]).requiringGrad()
        let v = Tensor.randn([1, 1, n, d]).requiringGrad()
        let peak = try Memory.peakEngineBytes {
            let y = try Tensor.scaledDotProductAttention(q, k, v)
            try y.backward(Tensor.ones(y.shape))
        }
        let inputs = 3 * n * d * 4
        XCTAssertLessThan(peak, 12 * inputs + 16 << 20, "peak \(peak >> 20) MiB for inputs of \(inputs >> 20) MiB")
        XCTAssertNotNil(q.grad)
        XCTAssertFalse(q.grad!.hasNonFinite)
    }
}
