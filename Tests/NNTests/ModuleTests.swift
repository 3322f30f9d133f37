import XCTest
import Engine
@testable import NN

final class ModuleTests: XCTestCase {
    func testKeysFollowPyTorchNaming() {
        let block = ViTBlock(dim: 8, heads: 2)
        let keys = block.namedParameters().map(\.0)
        XCTAssertEqual(keys, ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                              "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"])
        let seq = Sequential([LayerNorm(4), Linear(4, 2)])
        XCTAssertEqual(seq.namedParameters().map(\.0), ["0.weight", "0.bias", "1.weight", "1.bias"])
        let bn = BatchNorm(3)
        XCTAssertEqual(Set(bn.stateDict().keys), ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])
        XCTAssertEqual(bn.namedParameters().map(\.0), ["weight", "bias"])
    }

    func testTimmInitialisationOfLinearLayers() throws {
        let block = ViTBlock(dim: 64, heads: 2)
        let before = block.norm1.weight!.toArray()
        Init.timmLinear(block)
        for (key, p) in block.namedParameters() where key.hasSuffix("bias") && !key.hasPrefix("norm") {
            XCTAssertEqual(p.toArray().map(abs).max(), 0, "\(key) is zeroed")
        }
        let w = block.mlp.fc1.weight.toArray()
        let std = (w.map { $0 * $0 }.reduce(0, +) / Float(w.count)).squareRoot()
        XCTAssertEqual(std, 0.02 * 0.88, accuracy: 0.002, "truncated at 2σ, the std is 0.88σ")
        XCTAssertLessThanOrEqual(w.map(abs).max()!, 0.04)
        XCTAssertEqual(block.norm1.weight!.toArray(), before, "LayerNorm is left alone")
    }

    /// A model built to be loaded draws nothing: its random weights are zeros, the global generator does
    /// not move, and outside the scope initialisation is random again.
    func testWithoutInitialisationDrawsNothing() throws {
        Random.seed(5)
        let expected = Random.global
        let skipped = Random.withoutInitialisation { ViTBlock(dim: 16, heads: 2) }
        XCTAssertEqual(Random.global.next(), { var g = expected; return g.next() }(), "the generator did not move")
        for (key, p) in skipped.namedParameters() where !key.hasPrefix("norm") {
            XCTAssertEqual(p.toArray().map(abs).max(), 0, key)
        }
        let drawn = ViTBlock(dim: 16, heads: 2)
        XCTAssertGreaterThan(drawn.mlp.fc1.weight.toArray().map(abs).max()!, 0)
    }

    func testFreezingStopsGradientsAndCounts() throws {
        let model = Sequential([Linear(4, 8), Linear(8, 2)])
        XCTAssertEqual(model.parameterCount(), 4 * 8 + 8 + 8 * 2 + 2)
        model.freeze(prefix: "0.")
        XCTAssertEqual(model.parameterCount(trainableOnly: true), 8 * 2 + 2)
        let y = try model(Tensor.randn([3, 4]))
        try y.sum().backward()
        let layer0 = model.layers[0] as! Linear, layer1 = model.layers[1] as! Linear
        XCTAssertNil(layer0.weight.grad, "frozen parameters must not receive gradient memory")
        XCTAssertNotNil(layer1.weight.grad)
    }

    func testTrainEvalPropagates() throws {
        let model = Sequential([Dropout(0.5), Linear(4, 4)])
        model.eval()
        XCTAssertFalse(model.layers[0].training)
        let x = Tensor.randn([2, 4])
        XCTAssertEqual(try model(x).toArray(), try model(x).toArray(), "eval mode is deterministic")
        model.train()
        XCTAssertTrue(model.layers[0].training)
    }

    func testGradientAccumulatesAcrossBackwardCalls() throws {
        let lin = Linear(3, 1)
        let x = Tensor.randn([2, 3])
        try lin(x).sum().backward()
        let once = lin.weight.grad!.toArray()
        try lin(x).sum().backward()
        XCTAssertEqual(lin.weight.grad!.toArray(), once.map { 2 * $0 })
        lin.zeroGrad()
        XCTAssertNil(lin.weight.grad)
    }

    func testNoGradRecordsNothing() throws {
        let lin = Linear(3, 2)
        let y = try GradMode.noGrad { try lin(Tensor.randn([1, 3])) }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertThrowsError(try y.sum().backward())
        let d = try lin(Tensor.randn([1, 3])).detach()
        XCTAssertFalse(d.requiresGrad)
    }

    func testBatchNormUpdatesRunningStatsOnlyInTraining() throws {
        let bn = BatchNorm(2)
        _ = try bn(Tensor.randn([8, 2, 3], mean: 3, std: 1))
        XCTAssertGreaterThan(bn.runningMean.data[0], 0.1)
        XCTAssertEqual(bn.numBatchesTracked.data[0], 1)
        bn.eval()
        let before = bn.runningMean.toArray()
        _ = try bn(Tensor.randn([8, 2, 3]))
        XCTAssertEqual(bn.runningMean.toArray(), before)
    }

    /// A pre-LN block at inference (no grad: LayerNorm fused into qkv, the MLP half fused) gives what the
    /// recording path gives, on a size where the fused kernels run (200 rows, widths multiples of 32).
    func testViTBlockInferenceMatchesTheRecordingPath() throws {
        Random.seed(4)
        let block = ViTBlock(dim: 32, heads: 2)
        for (_, p) in block.namedParameters() {  // biases and norm parameters away from 0 and 1, so they all count
            let r = Tensor.randn(p.shape)
            p.data.update(from: r.data, count: p.count)
            withExtendedLifetime(r) {}
        }
        XCTAssertTrue(block.attn.qkv!.weight.requiresGrad, "the recording path must record")
        let x = Tensor.randn([2, 100, 32])
        let recorded = try block(x)
        let fused = try GradMode.noGrad { try block(x) }
        assertClose(fused, recorded, atol: 2e-4, rtol: 1e-4, "block output")
    }
}
