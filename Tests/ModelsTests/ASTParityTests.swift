import Foundation
import XCTest
import Engine
import NN
@testable import Models

let modelFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

func maxAbs(_ a: Tensor, _ b: Tensor) -> Float {
    XCTAssertEqual(a.shape, b.shape)
    guard a.shape == b.shape else { return .infinity }
    return (0..<a.count).map { abs(a.data[$0] - b.data[$0]) }.max() ?? 0
}

/// A tiny random transformers `ASTForAudioClassification` (tools/make_ast_fixtures.py) against ours.
final class ASTParityTests: XCTestCase {
    static let parity = try? SafeTensors.read(modelFixtures.appendingPathComponent("ast_parity.safetensors")).tensors
    func fx(_ k: String) throws -> Tensor { try XCTUnwrap(Self.parity?[k], k) }

    func testHuggingFaceCheckpointGivesTheSameLogits() throws {
        let model = try ASTCheckpoint.loadHuggingFace(modelFixtures.appendingPathComponent("hf_ast_tiny"))
        XCTAssertEqual(model.config.eps, 1e-12)
        XCTAssertEqual(model.config.labelDim, 5)
        let logits = try GradMode.noGrad { try model(fx("input")) }
        XCTAssertLessThanOrEqual(maxAbs(logits, try fx("logits")), 1e-4)
    }

    /// The same folder as older transformers saved it: pytorch_model.bin (a torch.save state dict).
    func testHuggingFaceFolderWithPytorchModelBin() throws {
        let folder = modelFixtures.appendingPathComponent("hf_ast_tiny_bin")
        XCTAssertEqual(ASTCheckpoint.huggingFaceWeights(in: folder)?.lastPathComponent, "pytorch_model.bin")
        let model = try ASTCheckpoint.loadHuggingFace(folder)
        let logits = try GradMode.noGrad { try model(fx("input")) }
        XCTAssertLessThanOrEqual(maxAbs(logits, try fx("logits")), 1e-4)
        XCTAssertFalse(ASTCheckpoint.isHuggingFaceFolder(modelFixtures), "a folder without weights is not one")
    }

    func testPositionalEmbeddingAdaptedToOtherLengthsLikeTheReference() throws {
        for length in [150, 60] {   // interpolate (9 -> 14 time patches) and centre-cut (9 -> 5)
            let model = try ASTCheckpoint.loadHuggingFace(modelFixtures.appendingPathComponent("hf_ast_tiny"), inputTdim: length)
            let logits = try GradMode.noGrad { try model(fx("input_\(length)")) }
            XCTAssertLessThanOrEqual(maxAbs(logits, try fx("logits_\(length)")), 1e-4, "length \(length)")
        }
        let pos = try fx("pos")
        for (f, t) in [(3, 12), (5, 6), (2, 4), (6, 11)] {
            let ours = try ASTCheckpoint.adaptPositionalEmbedding(pos, from: (4, 9), to: (f, t))
            XCTAssertLessThanOrEqual(maxAbs(ours, try fx("pos_\(f)x\(t)")), 1e-6, "\(f)x\(t)")
        }
    }

    func testShapesAndErrors() throws {
        var c = ASTConfig.named("tiny", labelDim: 10)!
        c.inputTdim = 128
        XCTAssertEqual(c.fGrid, 12); XCTAssertEqual(c.tGrid, 12)
        c.depth = 1
        let model = AST(c)
        XCTAssertThrowsError(try model(Tensor.zeros([1, 100, 128]))) { XCTAssertTrue("\($0)".contains("[B, 128, 128]")) }
        XCTAssertEqual(try model.embed(Tensor.zeros([2, 128, 128])).shape, [2, 192])
        var state = model.stateDict()
        state["v.pos_embed"] = Tensor.zeros([1, 50, 192])
        XCTAssertThrowsError(try ASTCheckpoint.load(state, into: AST(c))) { XCTAssertTrue("\($0)".contains("patch grid")) }
        // Shapes no model can take are named before any kernel runs on them.
        XCTAssertNoThrow(try c.validate())
        for (change, fragment) in [({ (c: inout ASTConfig) in c.inputTdim = 8 }, "clips of 8 frames are shorter than the patch width 16"),
                                   ({ $0.depth = 0 }, "depth 0 must be at least 1"),
                                   ({ $0.heads = 5 }, "width 192 does not split into 5 heads"),
                                   ({ $0.inputFdim = 10 }, "10 mel bins are fewer than the patch height 16"),
                                   ({ $0.tstride = 0 }, "strides 10x0 must be positive"),
                                   // A damaged digit: refused before a tensor beyond the address space is asked for.
                                   ({ $0.inputTdim = 1 << 50 }, "the positional table of 12 x 112589990684261 x 192 is beyond any model's size"),
                                   ({ $0.depth = 1 << 30 }, "the blocks' attention of 1073741824 x 4 x 192 x 192 is beyond"),
                                   ({ $0.mlpHidden = Int.max }, "the MLP of 192 x 9223372036854775807 is beyond")] as [((inout ASTConfig) -> Void, String)] {
            var bad = c
            change(&bad)
            XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains(fragment), "\($0)") }
        }
        let base = ASTConfig.named("base", labelDim: 527)!
        XCTAssertEqual(base.patches, 1212)
        // patch conv + cls/dist + 1214 positions + 12 blocks + final norm + head (SYSTEMS.md: ≈ 86.6M)
        let block = (768 * 2304 + 2304) + (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 4 * 768
        let expected = (768 * 256 + 768) + 2 * 768 + 1214 * 768 + 12 * block + 2 * 768 + (2 * 768 + 768 * 527 + 527)
        XCTAssertEqual(AST(base).parameterCount(), expected)
    }
}

final class ASTOriginalCheckpointTests: XCTestCase {
    /// The same weights under the original repository's `module.v.*` keys, read from a `.pth`.
    func testOriginalPthGivesTheSameLogitsAsHuggingFace() throws {
        let state = try TorchCheckpoint.read(modelFixtures.appendingPathComponent("ast_original.pth"))
        XCTAssertNotNil(state["module.v.head.weight"])
        let config = try ASTConfig.fromHuggingFace(modelFixtures.appendingPathComponent("hf_ast_tiny/config.json"))
        let model = AST(config)
        try ASTCheckpoint.load(ASTCheckpoint.fromOriginal(state), into: model)
        model.eval()
        let parity = try SafeTensors.read(modelFixtures.appendingPathComponent("ast_parity.safetensors")).tensors
        let logits = try GradMode.noGrad { try model(XCTUnwrap(parity["input"])) }
        XCTAssertLessThanOrEqual(maxAbs(logits, try XCTUnwrap(parity["logits"])), 1e-4)
    }
}
