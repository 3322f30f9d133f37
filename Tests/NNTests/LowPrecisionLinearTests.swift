import XCTest
import Foundation
import Engine
@testable import NN

/// `Module.convertLinearLayers` on a small pre-LN encoder: which layers it swaps, that keys and
/// parameters stay, that bf16 and int8 outputs stay within their stated tolerances of fp32, that a
/// graph-recording call still runs fp32, and that a CPU without the instructions is left all fp32.
final class LowPrecisionLinearTests: XCTestCase {
    func encoder() -> TransformerEncoder {
        Random.seed(3)
        let e = TransformerEncoder(ViTConfig(dim: 64, depth: 2, heads: 2))
        e.eval()
        return e
    }

    /// max |a − b| / max |b|.
    func relativeDrift(_ a: Tensor, _ b: Tensor) -> Float {
        let peak = (0..<b.count).map { abs(b.data[$0]) }.max() ?? 1
        return ((0..<a.count).map { abs(a.data[$0] - b.data[$0]) }.max() ?? 0) / peak
    }

    /// The stated tolerances on this encoder's LayerNorm-ed output (unit scale): bf16 keeps 8 significant
    /// bits per operand (relative rounding 2⁻⁹), int8 about 7 per row; through two blocks the worst element
    /// moved 0.3% (bf16) and 1.2% (int8) of the output's peak here, and the bounds leave ~3x room.
    static let tolerance: [Precision: Float] = [.bf16: 1.0 / 100, .int8: 1.0 / 25]

    func testReducedPrecisionEncoderStaysWithinItsToleranceOfFP32() throws {
        for precision in [Precision.bf16, .int8] {
            guard precision.unavailability() == nil else { continue }   // the skip below says why
            let model = encoder()
            let x = Tensor.randn([2, 50, 64])
            let keys = model.namedParameters().map(\.0)
            let reference = try GradMode.noGrad { try model(x) }
            XCTAssertEqual(model.convertLinearLayers(to: precision), precision)
            let converted = model.namedModules().filter { $0.1 is LowPrecisionLinear }
            XCTAssertEqual(converted.count, 2 * 4, "qkv, proj, fc1 and fc2 of both blocks")
            XCTAssertEqual(model.namedParameters().map(\.0), keys, "checkpoint keys unchanged")
            let y = try GradMode.noGrad { try model(x) }
            let drift = relativeDrift(y, reference)
            XCTAssertLessThanOrEqual(drift, Self.tolerance[precision]!, "\(precision)")
            XCTAssertGreaterThan(drift, 0, "\(precision) should not be bit-identical to fp32")
            // Converting again changes nothing (the layers are no longer stock Linear).
            XCTAssertEqual(model.convertLinearLayers(to: precision), precision)
            XCTAssertEqual(model.namedModules().filter { $0.1 is LowPrecisionLinear }.count, 8)
        }
        try XCTSkipUnless(Precision.bf16.unavailability() == nil && Precision.int8.unavailability() == nil,
                          "bf16 or int8 kernels missing on this CPU (the other precision was tested)")
    }

    func testAnInferenceOnlyConversionReleasesTheFP32WeightsAndRefusesToTrainOrSave() throws {
        try XCTSkipUnless(Precision.bf16.unavailability() == nil, "no bf16 kernel on this CPU")
        let model = encoder()
        let original = model.blocks[0].attn.qkv!.weight
        let x = Tensor.randn([1, 20, 64])
        XCTAssertEqual(model.convertLinearLayers(to: .bf16), .bf16)
        let qkv = try XCTUnwrap(model.blocks[0].attn.qkv as? LowPrecisionLinear)
        XCTAssertEqual(qkv.inferenceOnlyKey, "blocks.0.attn.qkv")
        XCTAssertFalse(qkv.weight === original, "the fp32 weight is not held")
        XCTAssertEqual(qkv.weight.shape, original.shape, "a placeholder of the same shape keeps the key's shape")
        XCTAssertFalse(qkv.weight.requiresGrad)
        _ = try GradMode.noGrad { try model(x) }
        // Recording gradients, saving and loading are refused, naming the layer.
        XCTAssertThrowsError(try model(x.requiringGrad())) { XCTAssertTrue("\($0)".contains("blocks.0.attn.qkv") && "\($0)".contains("gradients"), "\($0)") }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("inference-only-\(getpid()).safetensors")
        XCTAssertThrowsError(try model.save(to: url)) { XCTAssertTrue("\($0)".contains("blocks.0.attn.qkv") && "\($0)".contains("saved"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        XCTAssertThrowsError(try model.load(stateDict: encoder().stateDict())) { XCTAssertTrue("\($0)".contains("blocks.0.attn.qkv"), "\($0)") }
    }

    func testKeepingTheFP32WeightsStillTrainsAndSaves() throws {
        try XCTSkipUnless(Precision.bf16.unavailability() == nil, "no bf16 kernel on this CPU")
        let model = encoder(), reference = encoder()
        let x = Tensor.randn([1, 20, 64])
        XCTAssertEqual(model.convertLinearLayers(to: .bf16, keepingFP32Weights: true), .bf16)
        XCTAssertTrue(model.blocks[0].mlp.fc1 is LowPrecisionLinear)
        let y = try model(x.requiringGrad()), expected = try reference(x)
        for i in 0..<y.count { XCTAssertEqual(y.data[i], expected.data[i], accuracy: 1e-5, "a recording call runs fp32") }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kept-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertNoThrow(try model.save(to: url))
    }

    func testARecordingCallRunsFP32WithGradients() throws {
        try XCTSkipUnless(Precision.bf16.unavailability() == nil, "no bf16 kernel on this CPU")
        Random.seed(4)
        let fp32 = Linear(16, 8)
        let layer = try LowPrecisionLinear(converting: fp32, to: .bf16)
        XCTAssertTrue(layer.weight === fp32.weight, "the fp32 parameters are shared, not copied")
        let x = Tensor.randn([5, 16]).requiringGrad()
        let y = try layer(x), expected = try fp32(x)
        for i in 0..<y.count { XCTAssertEqual(y.data[i], expected.data[i], "grad mode: the fp32 path, bit for bit") }
        try y.sum().backward()
        XCTAssertNotNil(layer.weight.grad)
        XCTAssertThrowsError(try GradMode.noGrad { try layer(Tensor.zeros([2, 15])) }) { XCTAssertTrue("\($0)".contains("15") || "\($0)".contains("16"), "\($0)") }
    }

    func testACPUWithoutTheInstructionsKeepsEveryLayerFP32() throws {
        let model = encoder()
        let x = Tensor.randn([1, 20, 64])
        let before = try GradMode.noGrad { try model(x) }
        var notices: [String] = []
        let avx2 = CPUFeatures(flags: ["avx", "avx2", "fma"])
        XCTAssertEqual(model.convertLinearLayers(to: .bf16, on: avx2) { notices.append($0) }, .fp32)
        XCTAssertEqual(model.convertLinearLayers(to: .int8, on: avx2) { notices.append($0) }, .fp32)
        XCTAssertEqual(notices.count, 2)
        XCTAssertTrue(notices.allSatisfy { $0.contains("running fp32") }, "\(notices)")
        XCTAssertTrue(model.namedModules().allSatisfy { !($0.1 is LowPrecisionLinear) })
        let after = try GradMode.noGrad { try model(x) }
        for i in 0..<after.count { XCTAssertEqual(after.data[i], before.data[i], "fp32 unchanged, bit for bit") }
    }
}
