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
        XCTAssertEqual(try trainable(PEFTConfig(method: .prefix)), 221_184 + finalNorm + head, "prefix N = 24")
        XCTAssertEqual(try trainable(PEFTConfig(method: .prompt)), 230_400 + finalNorm + head, "deep prompts N = 25")
        var moa = PEFTConfig(method: .moa)
        moa.reductionRate = 128   // 7 experts of width 6 and a 768 -> 7 router a layer
        XCTAssertEqual(try trainable(moa), 12 * (7 * (768 * 6 + 6 + 6 * 768 + 768) + 768 * 7 + 7) + ln + finalNorm + head)
        moa.mixture = .soft   // the router gives way to slot embeddings [768, 7, 1]
        XCTAssertEqual(try trainable(moa), 12 * (7 * (768 * 6 + 6 + 6 * 768 + 768) + 768 * 7) + ln + finalNorm + head)
        var shallow = PEFTConfig(method: .prompt)
        shallow.deepPrompts = false
        XCTAssertEqual(try trainable(shallow), 19_200 + finalNorm + head, "shallow prompts N = 25")
        var conformer = PEFTConfig(method: .conformer)
        conformer.reductionRate = 96
        // PETL_AST's 252,288 (0.29% of AST-base) counts each adapter's LayerNorm, whose output it discards:
        // 1,536 a layer that no gradient reaches, and that has no place here.
        XCTAssertEqual(try trainable(conformer), 252_288 - 12 * 1536 + ln + finalNorm + head, "conformer RR 96")
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

    func testLoRAUnmergesBackToTheBaseWeights() throws {
        Random.seed(6)
        let base = Linear(16, 48)
        let lora = try LoRALinear(wrapping: base, rows: [0..<16, 32..<48], rank: 4, scale: 0.5)
        for f in lora.lora { try f.down.weight.assign(from: Tensor.randn(f.down.weight.shape)) }
        let merged = try lora.merged()
        XCTAssertGreaterThan(maxAbs(merged.weight, base.weight), 1e-2, "the update is not empty")
        let restored = try lora.unmerge(merged)
        XCTAssertLessThanOrEqual(maxAbs(restored.weight, base.weight), 1e-5)
        XCTAssertThrowsError(try lora.unmerge(Linear(16, 8))) { XCTAssertTrue("\($0)".contains("[8, 16]"), "\($0)") }
    }

    /// A config recorded before the mixture fields existed still decodes, its mixture at the MLP where
    /// it was then; a new one keeps every field.
    func testRecordedConfigsWithoutNewerFieldsStillLoad() throws {
        let old = #"{"method":"moa","reductionRate":128,"adapterKind":"pfeiffer","placement":"parallel","adapterResidual":false,"adapterInit":"zeros","loraTargets":["q","v"],"loraAlpha":8,"loraScaleByRank":false,"prefixTokens":24,"promptTokens":25,"experts":5,"deepPrompts":true}"#
        let decoded = try XCTUnwrap(PEFTConfig.recorded(["peft": old], file: URL(fileURLWithPath: "x")))
        XCTAssertEqual(decoded.experts, 5)
        XCTAssertEqual(decoded.mixtureLocation, .mlp)
        XCTAssertEqual(decoded.mixture, .dense)
        var soft = PEFTConfig(method: .moa)
        (soft.mixture, soft.slots, soft.normalizeSlots, soft.mixtureAddsTwice) = (.soft, 3, true, false)
        XCTAssertEqual(try PEFTConfig.recorded(["peft": soft.json], file: URL(fileURLWithPath: "x")), soft)
        XCTAssertEqual(PEFTConfig(method: .moa).mixtureLocation, .attention, "new runs follow PETL_AST's default")
    }

    func testOptionsThatDoNotFitAreNamed() throws {
        let model = try ModelRegistry.entry(named: "ssast-tiny-patch").classifier(ModelShape(frames: 32, outputs: 2, depth: 1))
        var peft = PEFTConfig(method: .adapter)
        peft.reductionRate = 1000
        XCTAssertThrowsError(try peft.apply(to: model)) { XCTAssertTrue("\($0)".contains("--reduction-rate 1000"), "\($0)") }
        peft = PEFTConfig(method: .lora)
        peft.loraTargets = ["q", "gate"]
        XCTAssertThrowsError(try peft.apply(to: model)) { XCTAssertTrue("\($0)".contains("--lora-targets: 'gate'"), "\($0)") }
        // Counts of learned tokens that were allocations of 10^12 (drawn at random, so a crash) are refused.
        peft = PEFTConfig(method: .prefix)
        peft.prefixTokens = 1_000_000_000_000
        XCTAssertThrowsError(try peft.apply(to: model)) { XCTAssertTrue("\($0)".contains("--prefix-tokens 1000000000000 must be an even number from 2 to 65536"), "\($0)") }
        peft = PEFTConfig(method: .prompt)
        peft.promptTokens = 1_000_000_000_000
        XCTAssertThrowsError(try peft.apply(to: model)) { XCTAssertTrue("\($0)".contains("--prompts 1000000000000 must be from 1 to 65536"), "\($0)") }
        XCTAssertEqual(model.parameterCount(trainableOnly: true), model.parameterCount(), "a refused method leaves the model as it was")
    }
}

extension PEFTTests {
    /// Prefix attention against the same attention computed by hand with the learned keys and values
    /// prepended; a queries' sequence length unchanged; gradients reach the prefixes.
    func testPrefixAttentionAttendsToItsLearnedKeysAndValues() throws {
        Random.seed(3)
        let attn = MultiHeadAttention(dim: 16, heads: 2)
        let prefix = PrefixAttention(wrapping: attn, tokens: 3, dim: 16)
        let x = Tensor.randn([2, 5, 16])
        let y = try prefix(x)
        XCTAssertEqual(y.shape, [2, 5, 16])
        // By hand: softmax(q kᵀ/√8) v per head over [prefix; own] keys.
        let packed = try GradMode.noGrad { try attn.qkv!(x) }
        var expected = [Float](repeating: 0, count: 2 * 5 * 16)
        for b in 0..<2 { for h in 0..<2 { for i in 0..<5 {
            func row(_ t: Tensor, _ r: Int, _ off: Int, _ stride: Int) -> [Float] { (0..<8).map { t.data[r * stride + off + h * 8 + $0] } }
            let q = row(packed, b * 5 + i, 0, 48)
            let keys = (0..<3).map { row(prefix.prefixKey, $0, 0, 16) } + (0..<5).map { row(packed, b * 5 + $0, 16, 48) }
            let values = (0..<3).map { row(prefix.prefixValue, $0, 0, 16) } + (0..<5).map { row(packed, b * 5 + $0, 32, 48) }
            let scores = keys.map { k in zip(q, k).map(*).reduce(0, +) / Float(8).squareRoot() }
            let m = scores.max()!, e = scores.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
            for c in 0..<8 { expected[(b * 5 + i) * 16 + h * 8 + c] = zip(e, values).map { $0 / z * $1[c] }.reduce(0, +) }
        } } }
        let heads = try Tensor(expected, shape: [2, 5, 16])
        let reference = try GradMode.noGrad { try attn.proj(heads) }
        XCTAssertLessThanOrEqual(maxAbs(try GradMode.noGrad { try prefix(x) }, reference), 1e-5)
        try y.sum().backward()
        XCTAssertNotNil(prefix.prefixKey.grad)
        XCTAssertTrue(try XCTUnwrap(prefix.prefixValue.grad).toArray().contains { $0 != 0 })
    }
}
