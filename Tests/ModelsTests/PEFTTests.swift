import Foundation
import XCTest
import Engine
import NN
@testable import Models

final class PEFTTests: XCTestCase {
    /// Trainable parameters at AST-base size as PETL_AST's code counts them (SYSTEMS.md 5.2), plus what
    /// every method trains beside its modules: the head, the final norm, and LN2 (LN1 too for Houlsby).
    func testTrainableCountsAtBaseSizeMatchTheReference() throws {
        let entry = try ModelRegistry.entry(named: "ast-base")
        let classes = 50, head = 768 * classes + classes + 2 * 768   // mlp_head: LayerNorm + Linear
        let finalNorm = 1536, ln = 12 * 1536
        func trainable(_ peft: PEFTConfig) throws -> Int {
            let model = try Random.withoutInitialisation { try entry.classifier(ModelShape(frames: 128, outputs: classes)) }
            return try peft.apply(to: model).trainable
        }
        XCTAssertEqual(try trainable(PEFTConfig(method: .adapter)), 230_544 + ln + finalNorm + head, "Pfeiffer, RR 64")
        var houlsby = PEFTConfig(method: .adapter)
        houlsby.adapterKind = .houlsby
        XCTAssertEqual(try trainable(houlsby), 461_088 + 2 * ln + finalNorm + head)
        XCTAssertEqual(try trainable(PEFTConfig(method: .lora)), 442_368 + finalNorm + head, "LoRA on q and v, RR 64")
        XCTAssertEqual(try trainable(PEFTConfig(method: .linear)), head)
        let biases = 12 * (3 * 768 + 768 + 3072 + 768 + 2 * 768) + 768 + 768   // qkv, proj, fc1, fc2, norms; patch embed, final norm
        XCTAssertEqual(try trainable(PEFTConfig(method: .bitfit)), biases + head, "every bias of the encoder, and the head")
    }

    func testLoRAMergesIntoPlainLinearsWithTheSameOutputs() throws {
        Random.seed(5)
        let model = try ModelRegistry.entry(named: "ssast-tiny-patch").classifier(ModelShape(frames: 32, outputs: 4, depth: 2))
        var peft = PEFTConfig(method: .lora)
        peft.loraTargets = ["q", "k", "v", "o", "fc1", "fc2"]
        try peft.apply(to: model)
        // Give the updates something to say (down starts at zero).
        for (key, p) in model.namedParameters() where key.contains(".lora.") { try p.assign(from: Tensor.randn(p.shape, std: 0.05)) }
        model.eval()
        let x = Tensor.randn([2, 32, 128])
        let before = try GradMode.noGrad { try model.logits(x) }
        PEFTConfig.mergeLoRA(model)
        let layers = model.namedModules().filter { $0.0.hasSuffix("attn.qkv") || $0.0.hasSuffix("mlp.fc2") }
        XCTAssertEqual(layers.count, 4)
        XCTAssertTrue(layers.allSatisfy { type(of: $0.1) == Linear.self }, "stock layers again: the fused paths apply")
        XCTAssertFalse(model.namedParameters().contains { $0.0.contains(".lora.") })
        let after = try GradMode.noGrad { try model.logits(x) }
        XCTAssertLessThanOrEqual(maxAbs(before, after), 1e-4)
        XCTAssertGreaterThan(maxAbs(before, Random.withoutInitialisation { Tensor.zeros(before.shape) }), 0)
    }

    func testOptionsThatDoNotFitAreNamed() throws {
        let model = try ModelRegistry.entry(named: "ssast-tiny-patch").classifier(ModelShape(frames: 32, outputs: 2, depth: 1))
        var peft = PEFTConfig(method: .adapter)
        peft.reductionRate = 1000
        XCTAssertThrowsError(try peft.apply(to: model)) { XCTAssertTrue("\($0)".contains("--reduction-rate 1000"), "\($0)") }
        peft = PEFTConfig(method: .lora)
        peft.loraTargets = ["q", "gate"]
        XCTAssertThrowsError(try peft.apply(to: model)) { XCTAssertTrue("\($0)".contains("--lora-targets: 'gate'"), "\($0)") }
        XCTAssertEqual(model.parameterCount(trainableOnly: true), model.parameterCount(), "a refused method leaves the model as it was")
    }
}
