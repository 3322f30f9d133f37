import Foundation
import XCTest
import Engine
import NN
@testable import Models

/// Parameter-efficient methods against PETL_AST's formulas (tools/make_peft_fixtures.py: a small random
/// transformers AST with a Pfeiffer parallel adapter, and with LoRA on q and v): logits, loss and the
/// gradients of every trainable tensor, with PETL_AST's head (a linear layer on the final norm's output
/// averaged over all tokens, cls and distillation included).
final class PEFTParityTests: XCTestCase {
    func run(_ file: String, _ peft: PEFTConfig, methodKeys: (Int) -> [(ours: String, theirs: String)]) throws {
        let fixture = try SafeTensors.read(modelFixtures.appendingPathComponent(file)).tensors
        func fx(_ k: String) throws -> Tensor { try XCTUnwrap(fixture[k], k) }
        var config = ASTConfig(dim: 32, depth: 2, heads: 4, mlpHidden: 64, labelDim: 3)
        (config.inputFdim, config.inputTdim, config.eps) = (32, 48, 1e-12)
        let model = Random.withoutInitialisation { AST(config) }
        var state = try ASTCheckpoint.fromHuggingFace(fixture.filter { $0.key.hasPrefix("embeddings.") || $0.key.hasPrefix("encoder.") || $0.key.hasPrefix("layernorm.") })
        for (k, t) in model.stateDict() where k.hasPrefix("mlp_head.") { state[k] = t }
        try model.load(consuming: &state)
        let summary = try peft.apply(to: model)
        XCTAssertLessThan(summary.trainable, summary.total)
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters())
        for layer in 0..<2 {
            for (ours, theirs) in methodKeys(layer) {
                let p = try XCTUnwrap(params[ours], "no parameter \(ours) (have: \(params.keys.filter { $0.contains("lora") || $0.contains("adapter") }.sorted()))")
                XCTAssertTrue(p.requiresGrad, ours)
                try p.assign(from: fx(theirs))
            }
        }
        let headW = try fx("head.weight").requiringGrad(), headB = try fx("head.bias").requiringGrad()
        model.train()
        let tokens = try model.v.tokens(fx("input"))
        let logits = try tokens.mean(axis: 1).linear(weight: headW, bias: headB)
        XCTAssertLessThanOrEqual(maxAbs(logits, try fx("logits")), 1e-4)
        let loss = try logits.crossEntropy(targets: try fx("targets").toArray().map { Int($0) })
        XCTAssertEqual(try loss.item(), try fx("loss").item(), accuracy: 1e-4)
        try loss.backward()
        var checked = 0
        for layer in 0..<2 {
            for (ours, theirs) in methodKeys(layer) {
                XCTAssertLessThanOrEqual(maxAbs(try XCTUnwrap(params[ours]?.grad, ours), try fx("grad." + theirs)), 1e-4, ours)
                checked += 1
            }
        }
        for suffix in ["weight", "bias"] {
            XCTAssertLessThanOrEqual(maxAbs(try XCTUnwrap(params["v.norm.\(suffix)"]?.grad), try fx("grad.layernorm.\(suffix)")), 1e-4)
        }
        XCTAssertLessThanOrEqual(maxAbs(try XCTUnwrap(headW.grad), try fx("grad.head.weight")), 1e-4)
        XCTAssertNil(params["v.blocks.0.attn.proj.weight"]?.grad, "frozen weights get no gradient")
        XCTAssertGreaterThan(checked, 0)
    }

    func testPfeifferParallelAdapterMatchesTheReference() throws {
        var peft = PEFTConfig(method: .adapter)
        peft.reductionRate = 8
        try run("peft_adapter.safetensors", peft) { i in
            ["down.weight", "down.bias", "up.weight", "up.bias"].map { ("v.blocks.\(i).mlp.adapter.\($0)", "adapter.\(i).\($0)") }
                + ["weight", "bias"].map { ("v.blocks.\(i).norm2.\($0)", "encoder.layer.\(i).layernorm_after.\($0)") }
        }
    }

    func testLoRAOnQueryAndValueMatchesTheReference() throws {
        var peft = PEFTConfig(method: .lora)
        (peft.reductionRate, peft.loraAlpha) = (8, 4)   // inner width 4, scale alpha / RR = 0.5
        try run("peft_lora.safetensors", peft) { i in
            [("0", "q"), ("1", "v")].flatMap { index, target in
                ["down", "up"].map { ("v.blocks.\(i).attn.qkv.lora.\(index).\($0).weight", "lora.\(i).\(target).\($0).weight") }
            }
        }
    }
}

extension PEFTParityTests {
    func testConformerAdapterMatchesTheReference() throws {
        var peft = PEFTConfig(method: .conformer)
        peft.reductionRate = 8
        try run("peft_conformer.safetensors", peft) { i in
            ["pw1.weight", "pw1.bias", "dw.weight", "dw.bias", "bn.weight", "bn.bias", "pw2.weight", "pw2.bias"]
                .map { ("v.blocks.\(i).mlp.adapter.\($0)", "conformer.\(i).\($0)") }
                + ["weight", "bias"].map { ("v.blocks.\(i).norm2.\($0)", "encoder.layer.\(i).layernorm_after.\($0)") }
        }
    }

    func testPrefixTuningMatchesTheReference() throws {
        var peft = PEFTConfig(method: .prefix)
        peft.prefixTokens = 6   // 3 keys and 3 values a layer
        try run("peft_prefix.safetensors", peft) { i in
            [("v.blocks.\(i).attn.prefix_key", "prefix.\(i).key"), ("v.blocks.\(i).attn.prefix_value", "prefix.\(i).value")]
        }
    }
}

extension PEFTParityTests {
    /// Deep prompt tuning: [cls, prompts, patches] with the distillation token and its position gone, the
    /// prompt slots overwritten by each block's own set.
    func testDeepPromptTuningMatchesTheReference() throws {
        var peft = PEFTConfig(method: .prompt)
        peft.promptTokens = 3
        try run("peft_prompt.safetensors", peft) { i in [("v.prompts.sets.\(i).tokens", "prompt.\(i)")] }
    }
}

extension PEFTParityTests {
    /// PETL_AST's Dense-MoA and Soft-MoA at their default place: Pfeiffer, beside the attention (reading
    /// LN₁ h, LN₁ trained), the output added after the attention and again after the MLP.
    func mixture(_ kind: PEFTConfig.MixtureKind) -> PEFTConfig {
        var peft = PEFTConfig(method: .moa)
        (peft.reductionRate, peft.experts, peft.mixture, peft.slots) = (8, 3, kind, 2)
        return peft
    }

    func expertKeys(_ i: Int, _ prefix: String) -> [(ours: String, theirs: String)] {
        (0..<3).flatMap { e in
            ["down.weight", "down.bias", "up.weight", "up.bias"].map { ("v.blocks.\(i).attn.adapter.experts.\(e).\($0)", "\(prefix).\(i).experts.\(e).\($0)") }
        } + ["weight", "bias"].map { ("v.blocks.\(i).norm1.\($0)", "encoder.layer.\(i).layernorm_before.\($0)") }
    }

    func testDenseMixtureOfAdaptersMatchesTheReference() throws {
        try run("peft_dmoa.safetensors", mixture(.dense)) { i in
            ["weight", "bias"].map { ("v.blocks.\(i).attn.adapter.router.\($0)", "dmoa.\(i).router.\($0)") } + expertKeys(i, "dmoa")
        }
    }

    func testSoftMixtureOfAdaptersMatchesTheReference() throws {
        try run("peft_smoa.safetensors", mixture(.soft)) { i in
            [("v.blocks.\(i).attn.adapter.slot_params", "smoa.\(i).slot_params")] + expertKeys(i, "smoa")
        }
    }
}
