import XCTest
import Engine
@testable import NN

// Stand-ins for adapters: each shares the stock layer's parameters (`init(sharing:)`) and adds
// `shift` times a ramp over the features to its output (a constant alone would vanish in the next
// LayerNorm), so a shift of 0 is an identity wrapper that still takes the general path.

/// y + shift · (0, 1/n, 2/n, ...) along the last axis.
func shifted(_ y: Tensor, by shift: Float) throws -> Tensor {
    let n = y.shape.last!
    return try y + Tensor((0..<n).map { shift * Float($0) / Float(n) })
}

final class ShiftedLinear: Linear {
    let shift: Float
    init(wrapping base: Linear, shift: Float) { self.shift = shift; super.init(sharing: base) }
    override func callAsFunction(_ x: Tensor) throws -> Tensor { try shifted(super.callAsFunction(x), by: shift) }
}

final class ShiftedNorm: LayerNorm {
    let shift: Float
    init(wrapping base: LayerNorm, shift: Float) { self.shift = shift; super.init(sharing: base) }
    override func callAsFunction(_ x: Tensor) throws -> Tensor { try shifted(super.callAsFunction(x), by: shift) }
}

final class ShiftedMLP: MLP {
    let shift: Float
    init(wrapping base: MLP, shift: Float) { self.shift = shift; super.init(sharing: base) }
    override func callAsFunction(_ x: Tensor) throws -> Tensor { try shifted(super.callAsFunction(x), by: shift) }
}

final class ShiftedAttention: MultiHeadAttention {
    let shift: Float
    init(wrapping base: MultiHeadAttention, shift: Float) { self.shift = shift; super.init(sharing: base) }
    override func callAsFunction(_ x: Tensor) throws -> Tensor { try shifted(super.callAsFunction(x), by: shift) }
}

final class ShiftedBlock: ViTBlock {
    let shift: Float
    init(wrapping base: ViTBlock, shift: Float) { self.shift = shift; super.init(sharing: base) }
    override func callAsFunction(_ x: Tensor) throws -> Tensor { try shifted(super.callAsFunction(x), by: shift) }
}

/// A low-rank update beside a shared Linear, y = base(x) + (x Aᵀ) Bᵀ: a wrapper with parameters of its own.
final class TestLoRA: Linear {
    let loraA: Tensor, loraB: Tensor
    init(wrapping base: Linear, rank: Int) {
        loraA = Tensor.randn([rank, base.weight.shape[1]], std: 0.5).requiringGrad()
        loraB = Tensor.randn([base.weight.shape[0], rank], std: 0.5).requiringGrad()
        super.init(sharing: base)
    }
    override func callAsFunction(_ x: Tensor) throws -> Tensor {
        try super.callAsFunction(x) + x.linear(weight: loraA, bias: nil).linear(weight: loraB, bias: nil)
    }
}

/// A module whose child is a plain `let`, not `@Child`.
final class FixedChild: Module {
    let lin = Linear(2, 2)
}

final class AdapterReadyTests: XCTestCase {
    override func setUp() { Random.seed(21) }

    func testReplacingByPatternKeepsKeysAndSharesWeights() throws {
        let encoder = TransformerEncoder(ViTConfig(dim: 8, depth: 3, heads: 2))
        let before = encoder.namedParameters()
        let oldQKV = encoder.blocks.map { $0.attn.qkv! }
        let replaced = try encoder.replaceModules(matching: "blocks.*.attn.qkv") { _, old in
            TestLoRA(wrapping: old as! Linear, rank: 2)
        }
        XCTAssertEqual(replaced, ["blocks.0.attn.qkv", "blocks.1.attn.qkv", "blocks.2.attn.qkv"])
        for (i, block) in encoder.blocks.enumerated() {
            let qkv = try XCTUnwrap(block.attn.qkv as? TestLoRA)
            XCTAssertTrue(qkv.weight === oldQKV[i].weight && qkv.bias === oldQKV[i].bias, "the wrapped weights are shared")
        }
        let after = encoder.namedParameters()
        let added = after.map(\.0).filter { !before.map(\.0).contains($0) }
        XCTAssertEqual(added, ["blocks.0.attn.qkv.lora_a", "blocks.0.attn.qkv.lora_b", "blocks.1.attn.qkv.lora_a",
                               "blocks.1.attn.qkv.lora_b", "blocks.2.attn.qkv.lora_a", "blocks.2.attn.qkv.lora_b"])
        for (key, t) in before {
            XCTAssertTrue(after.first { $0.0 == key }?.1 === t, "\(key) keeps its key and tensor")
        }
        // A stock checkpoint still loads into the wrapped layers' own keys.
        let stock = TransformerEncoder(ViTConfig(dim: 8, depth: 3, heads: 2))
        let (missing, unexpected) = try encoder.load(stateDict: stock.stateDict(), strict: false)
        XCTAssertEqual(missing.count, 6); XCTAssertEqual(unexpected, [])
        XCTAssertEqual(encoder.blocks[1].attn.qkv!.weight.toArray(), stock.blocks[1].attn.qkv!.weight.toArray())

        // Typed form, one index, and the mounted encoder of a classifier.
        let vit = ViTClassifier(config: ViTConfig(dim: 8, depth: 2, heads: 2), channels: 1, imageSize: (4, 6), patch: (2, 3), classes: 3)
        let keys = try vit.replaceModules(matching: "blocks.1.mlp.fc1", as: Linear.self) { _, old in TestLoRA(wrapping: old, rank: 1) }
        XCTAssertEqual(keys, ["blocks.1.mlp.fc1"])
        XCTAssertTrue(vit.encoder.blocks[1].mlp.fc1 is TestLoRA)
        XCTAssertFalse(vit.encoder.blocks[0].mlp.fc1 is TestLoRA)
        XCTAssertTrue(vit.stateDict().keys.contains("blocks.1.mlp.fc1.lora_b"))
        try vit.replaceModules(matching: "head", as: Linear.self) { _, _ in Linear(8, 5) }
        XCTAssertEqual(vit.head.weight.shape, [5, 8])
    }

    func testReplacingArrayElementsAndSequentialLayers() throws {
        let encoder = TransformerEncoder(ViTConfig(dim: 8, depth: 2, heads: 2))
        let old = encoder.blocks[1]
        XCTAssertEqual(try encoder.replaceModules(matching: "blocks.1") { _, old in ShiftedBlock(wrapping: old as! ViTBlock, shift: 1) },
                       ["blocks.1"])
        XCTAssertTrue(encoder.blocks[1] is ShiftedBlock)
        XCTAssertTrue(encoder.blocks[1].attn === old.attn)
        XCTAssertFalse(encoder.blocks[0] is ShiftedBlock)
        XCTAssertEqual(encoder.namedParameters().count, TransformerEncoder(ViTConfig(dim: 8, depth: 2, heads: 2)).namedParameters().count)

        let seq = Sequential([LayerNorm(4), Linear(4, 2)])
        try seq.replaceModules(matching: "*") { key, old in key == "1" ? ShiftedLinear(wrapping: old as! Linear, shift: 3) : old }
        XCTAssertTrue(seq.layers[1] is ShiftedLinear)
        XCTAssertEqual(seq.namedParameters().map(\.0), ["0.weight", "0.bias", "1.weight", "1.bias"])
        let x = Tensor.randn([2, 4])
        let y = try seq(x)
        let stock = try (seq.layers[0] as! LayerNorm)(x).linear(weight: (seq.layers[1] as! Linear).weight, bias: (seq.layers[1] as! Linear).bias)
        assertClose(y, try shifted(stock, by: 3), atol: 1e-6, "Sequential calls the wrapper")
    }

    func testReplacementTakesTheTrainingModeOfTheModuleItReplaces() throws {
        let encoder = TransformerEncoder(ViTConfig(dim: 8, depth: 1, heads: 2))
        encoder.eval()
        try encoder.replaceModules(matching: "blocks.0.mlp.fc2", as: Linear.self) { _, old in ShiftedLinear(wrapping: old, shift: 0) }
        XCTAssertFalse(encoder.blocks[0].mlp.fc2.training)
        encoder.train()
        XCTAssertTrue(encoder.blocks[0].mlp.fc2.training)
    }

    func testReplacementErrorsNameThePatternOrKeyAndChangeNothing() throws {
        let encoder = TransformerEncoder(ViTConfig(dim: 8, depth: 2, heads: 2))
        func message(_ body: () throws -> Void) -> String {
            do { try body() } catch let e as NNError { return e.message } catch { return "\(error)" }
            XCTFail("expected an error"); return ""
        }
        var m = message { try encoder.replaceModules(matching: "blocks.*.attn.qkvv") { _, old in old } }
        XCTAssertTrue(m.contains("blocks.*.attn.qkvv") && m.contains("no submodule"), m)
        m = message { try encoder.replaceModules(matching: "blocks.7.attn.qkv") { _, old in old } }
        XCTAssertTrue(m.contains("blocks.7.attn.qkv"), m)
        m = message { try encoder.replaceModules(matching: "blocks..qkv") { _, old in old } }
        XCTAssertTrue(m.contains("blocks..qkv"), m)
        m = message { try encoder.replaceModules(matching: "") { _, old in old } }
        XCTAssertTrue(m.contains("not a key pattern"), m)

        // Wrong type for the slot: the key and the slot's type are named.
        m = message { try encoder.replaceModules(matching: "blocks.0.attn.qkv") { _, _ in Identity() } }
        XCTAssertTrue(m.contains("'blocks.0.attn.qkv'") && m.contains("Linear") && m.contains("Identity"), m)
        m = message { try encoder.replaceModules(matching: "blocks.1") { _, _ in Linear(8, 8) } }
        XCTAssertTrue(m.contains("'blocks.1'") && m.contains("ViTBlock"), m)
        // A second match of the wrong type leaves the first one unreplaced too.
        m = message {
            try encoder.replaceModules(matching: "blocks.*.mlp.fc1") { key, old in
                key.hasPrefix("blocks.0") ? ShiftedLinear(wrapping: old as! Linear, shift: 1) : LayerNorm(8)
            }
        }
        XCTAssertTrue(m.contains("'blocks.1.mlp.fc1'"), m)
        XCTAssertFalse(encoder.blocks[0].mlp.fc1 is ShiftedLinear, "nothing is replaced when one replacement fails")
        // The typed form names the first match of another type.
        m = message { try encoder.replaceModules(matching: "blocks.0.*", as: Linear.self) { _, old in old } }
        XCTAssertTrue(m.contains("'blocks.0.norm1'") && m.contains("LayerNorm"), m)
        // A child that is not @Child.
        m = message { try FixedChild().replaceModules(matching: "lin") { _, old in old } }
        XCTAssertTrue(m.contains("'lin'") && m.contains("@Child"), m)
        // Errors from the closure pass through.
        XCTAssertThrowsError(try encoder.replaceModules(matching: "norm") { _, _ in throw NNError("mine") }) {
            XCTAssertEqual($0 as? NNError, NNError("mine"))
        }
    }

    func testFreezeAndUnfreezeByPredicate() throws {
        let block = ViTBlock(dim: 8, heads: 2)
        let frozen = block.freeze { _, _ in true }
        XCTAssertEqual(frozen.count, 12)
        XCTAssertEqual(block.parameterCount(trainableOnly: true), 0)
        // BitFit: only the biases learn.
        let thawed = block.unfreeze { key, _ in key.hasSuffix(".bias") }
        XCTAssertEqual(thawed, ["norm1.bias", "attn.qkv.bias", "attn.proj.bias", "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias"])
        XCTAssertEqual(block.parameterCount(trainableOnly: true), 8 + 24 + 8 + 8 + 32 + 8)
        try block(Tensor.randn([2, 3, 8])).sum().backward()
        for (key, p) in block.namedParameters() {
            XCTAssertEqual(p.grad != nil, key.hasSuffix(".bias"), key)
        }
        // The predicate sees the tensor too; freeze(prefix:) still works.
        block.freeze { _, p in p.rank == 1 && p.count == 32 }
        XCTAssertNil(block.mlp.fc1.bias!.grad, "freezing drops the gradient")
        XCTAssertFalse(block.mlp.fc1.bias!.requiresGrad)
        block.freeze(prefix: "norm")
        XCTAssertFalse(block.norm1.bias!.requiresGrad)
        block.unfreeze(prefix: "")
        XCTAssertEqual(block.parameterCount(trainableOnly: true), block.parameterCount())
    }

    /// Every fused path gives way to a wrapped child: a shifting wrapper changes the encoder's output
    /// in inference (eval, no grad: the fused kernels) and in training (grad recorded), and an identity
    /// wrapper changes nothing.
    func testFusedPathsCallWrappedChildren() throws {
        // 200 rows and widths that are multiples of 32, so the fused inference kernels run.
        let config = ViTConfig(dim: 32, depth: 2, heads: 2)
        let x = Tensor.randn([2, 100, 32])
        let wraps: [(String, (Module, Float) -> Module)] = [
            ("blocks.0.attn.qkv", { ShiftedLinear(wrapping: $0 as! Linear, shift: $1) }),
            ("blocks.0.attn.proj", { ShiftedLinear(wrapping: $0 as! Linear, shift: $1) }),
            ("blocks.1.mlp.fc1", { ShiftedLinear(wrapping: $0 as! Linear, shift: $1) }),
            ("blocks.1.mlp.fc2", { ShiftedLinear(wrapping: $0 as! Linear, shift: $1) }),
            ("blocks.0.norm1", { ShiftedNorm(wrapping: $0 as! LayerNorm, shift: $1) }),
            ("blocks.0.norm2", { ShiftedNorm(wrapping: $0 as! LayerNorm, shift: $1) }),
            ("blocks.0.mlp", { ShiftedMLP(wrapping: $0 as! MLP, shift: $1) }),
            ("blocks.1.attn", { ShiftedAttention(wrapping: $0 as! MultiHeadAttention, shift: $1) }),
            ("blocks.1", { ShiftedBlock(wrapping: $0 as! ViTBlock, shift: $1) }),
        ]
        for (pattern, wrap) in wraps {
            Random.seed(3)
            let encoder = TransformerEncoder(config)
            func outputs() throws -> (inference: Tensor, training: Tensor) {
                encoder.eval()
                let inference = try GradMode.noGrad { try encoder(x) }
                encoder.train()
                let training = try encoder(x)
                XCTAssertTrue(training.requiresGrad, "\(pattern): training records a graph")
                return (inference, training)
            }
            let stock = try outputs()
            assertClose(stock.inference, stock.training, atol: 1e-4, rtol: 1e-4, "\(pattern): stock fused vs recorded")
            try encoder.replaceModules(matching: pattern) { _, old in wrap(old, 0) }
            let identity = try outputs()
            assertClose(identity.inference, stock.inference, atol: 1e-5, rtol: 0, "\(pattern): identity wrapper, inference")
            assertClose(identity.training, stock.training, atol: 1e-5, rtol: 0, "\(pattern): identity wrapper, training")
            try encoder.replaceModules(matching: pattern) { _, old in wrap(old, 0.5) }
            let shifted = try outputs()
            for (a, b, mode) in [(shifted.inference, stock.inference, "inference"), (shifted.training, stock.training, "training")] {
                let change = zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max()!
                XCTAssertGreaterThan(change, 1e-2, "\(pattern): the wrapper is called in \(mode)")
            }
            assertClose(shifted.inference, shifted.training, atol: 1e-4, rtol: 1e-4, "\(pattern): wrapped, inference vs training")
        }
    }

    /// Separate query/key/value projections: a wrapped one is called instead of joining one GEMM over
    /// concatenated weights.
    func testSeparateProjectionsCallWrappedChildren() throws {
        let block = ViTBlock(dim: 32, heads: 2, fusedQKV: false)
        let x = Tensor.randn([2, 100, 32])
        block.eval()
        let stock = try GradMode.noGrad { try block(x) }
        for name in ["query", "key", "value"] {
            try block.replaceModules(matching: "attn.\(name)", as: Linear.self) { _, old in ShiftedLinear(wrapping: old, shift: 0) }
        }
        assertClose(try GradMode.noGrad { try block(x) }, stock, atol: 1e-5, rtol: 0, "identity wrappers")
        try block.replaceModules(matching: "attn.value", as: Linear.self) { _, old in ShiftedLinear(wrapping: old, shift: 1) }
        let shifted = try block(x)
        let change = zip(shifted.toArray(), stock.toArray()).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(change, 1e-2)
    }

    /// Gradients through the general paths that wrapped children take, into the wrappers' own
    /// parameters and the shared ones.
    func testGradientsThroughWrappedChildren() throws {
        let block = ViTBlock(dim: 8, heads: 2)
        for pattern in ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"] {
            try block.replaceModules(matching: pattern, as: Linear.self) { _, old in TestLoRA(wrapping: old, rank: 2) }
        }
        XCTAssertEqual(block.namedParameters().filter { $0.0.contains("lora") }.count, 8)
        try gradCheckLayer(block, input: Tensor.randn([2, 4, 8])) { try block($0!) }

        let mha = MultiHeadAttention(dim: 8, heads: 2, fusedQKV: false)
        try mha.replaceModules(matching: "key", as: Linear.self) { _, old in TestLoRA(wrapping: old, rank: 2) }
        try gradCheckLayer(mha, input: Tensor.randn([2, 5, 8])) { try mha($0!, adding: $0!) }

        let encoder = TransformerEncoder(ViTConfig(dim: 8, depth: 2, heads: 2))
        try encoder.replaceModules(matching: "blocks.*.attn") { _, old in ShiftedAttention(wrapping: old as! MultiHeadAttention, shift: 0.3) }
        try encoder.replaceModules(matching: "blocks.1.norm2", as: LayerNorm.self) { _, old in ShiftedNorm(wrapping: old, shift: 0.2) }
        try gradCheckLayer(encoder, input: Tensor.randn([2, 3, 8])) { try encoder($0!) }

        // Only the adapters learn: the frozen base gets no gradient, the low-rank factors do.
        block.freeze { key, _ in !key.contains("lora") }
        XCTAssertEqual(block.trainableParameters().count, 8)
        let input = Tensor.randn([1, 3, 8])
        try gradCheckLayer(block, input: nil) { _ in try block(input) }
        XCTAssertNil(block.attn.qkv!.weight.grad)
    }
}
