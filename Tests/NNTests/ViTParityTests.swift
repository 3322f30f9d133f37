import XCTest
import Engine
@testable import NN

/// A small pre-LN ViT against the same model in PyTorch: logits, loss and every parameter's gradient.
final class ViTParityTests: XCTestCase {
    func makeModel() -> ViTClassifier {
        ViTClassifier(config: ViTConfig(dim: 32, depth: 2, heads: 4), channels: 1, imageSize: (8, 12), patch: (4, 4), classes: 5)
    }

    func testKeysMatchTimmStateDict() throws {
        let file = try SafeTensors.read(fixturesDir.appendingPathComponent("vit_small.safetensors"))
        let torchKeys = Set(file.tensors.keys.filter { !$0.hasPrefix("grad.") && !["input", "labels", "logits", "loss"].contains($0) })
        XCTAssertEqual(Set(makeModel().stateDict().keys), torchKeys)
    }

    func testForwardLossAndGradientsMatchPyTorch() throws {
        let file = try SafeTensors.read(fixturesDir.appendingPathComponent("vit_small.safetensors"))
        let model = makeModel()
        try model.load(stateDict: file.tensors.filter { model.stateDict()[$0.key] != nil })
        let x = try XCTUnwrap(file.tensors["input"])
        let labels = try XCTUnwrap(file.tensors["labels"]).toArray().map { Int($0) }
        let logits = try model(x)
        assertClose(logits, try XCTUnwrap(file.tensors["logits"]), atol: 1e-5, "logits")
        let loss = try logits.crossEntropy(targets: labels)
        XCTAssertEqual(try loss.item(), try XCTUnwrap(file.tensors["loss"]).item(), accuracy: 1e-5)
        try loss.backward()
        for (key, p) in model.namedParameters() {
            let expected = try XCTUnwrap(file.tensors["grad." + key], "no reference gradient for \(key)")
            let g = try XCTUnwrap(p.grad, "no gradient for \(key)")
            assertClose(g, expected, atol: 1e-5, rtol: 1e-3, key)
        }
    }

    /// Under no-grad the blocks take the fused, cache-blocked MLP path; logits must not change.
    func testInferencePathMatchesPyTorch() throws {
        let file = try SafeTensors.read(fixturesDir.appendingPathComponent("vit_small.safetensors"))
        let model = makeModel()
        try model.load(stateDict: file.tensors.filter { model.stateDict()[$0.key] != nil })
        model.eval()
        let logits = try GradMode.noGrad { try model(XCTUnwrap(file.tensors["input"])) }
        assertClose(logits, try XCTUnwrap(file.tensors["logits"]), atol: 1e-5, "no-grad logits")
        // Many rows (several 64-row blocks, a ragged last one) against the recorded path.
        let block = ViTBlock(dim: 16, heads: 2)
        let x = Tensor.randn([3, 50, 16])
        let fused = try GradMode.noGrad { try block(x) }
        let plain = try block(x)
        XCTAssertTrue(plain.requiresGrad, "with grad mode on the recorded path runs")
        assertClose(fused, plain, atol: 1e-5, "fused vs recorded")
    }

    func testSplitQKVEqualsFused() throws {
        Random.seed(5)
        let fused = MultiHeadAttention(dim: 16, heads: 2, fusedQKV: true)
        let split = MultiHeadAttention(dim: 16, heads: 2, fusedQKV: false)
        let w = fused.qkv!.weight, b = fused.qkv!.bias!
        try split.query!.weight.assign(from: w.slice(axis: 0, start: 0, end: 16))
        try split.key!.weight.assign(from: w.slice(axis: 0, start: 16, end: 32))
        try split.value!.weight.assign(from: w.slice(axis: 0, start: 32, end: 48))
        try split.query!.bias!.assign(from: b.slice(axis: 0, start: 0, end: 16))
        try split.key!.bias!.assign(from: b.slice(axis: 0, start: 16, end: 32))
        try split.value!.bias!.assign(from: b.slice(axis: 0, start: 32, end: 48))
        try split.proj.weight.assign(from: fused.proj.weight)
        try split.proj.bias!.assign(from: fused.proj.bias!)
        let x = Tensor.randn([2, 5, 16])
        assertClose(try split(x), try fused(x), atol: 1e-6, "split vs fused")
    }
}
