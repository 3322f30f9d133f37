import Foundation
import XCTest
import Audio
@testable import Engine
@testable import NN
@testable import Models

/// SSAMBA: the encoder against its formula written with explicit flips, the pair bookkeeping, parity
/// with a reference-architecture script (tools/make_ssamba_fixtures.py) through the released `.pth`
/// format, the registry round trip, pretraining through SSAST and a fine-tuning start from it.
final class SSAMBATests: XCTestCase {
    /// Width 16 (dt_rank 1), 4 states, two layer pairs, 32 bins x 48 frames: 2 x 3 patches.
    func smallConfig(depth: Int = 4, labels: Int = 3) -> AMBAConfig {
        var c = AMBAConfig(dim: 16, depth: depth, labelDim: labels)
        (c.stateSize, c.inputFdim, c.inputTdim) = (4, 32, 48)
        return c
    }

    /// Perturbs what starts out the same in every channel (norms, A_log, D, dt biases) so that a
    /// skipped or doubled norm, a swapped branch or a wrong flip shows.
    func perturb(_ m: Module, seed: UInt64) {
        var g = RandomGenerator(seed: seed)
        for (key, t) in m.namedParameters() where key.contains("norm") || key.hasSuffix("A_log") || key.hasSuffix("A_b_log")
            || key.hasSuffix(".D") || key.hasSuffix(".D_b") || key.contains("dt_proj") || key.hasSuffix("out_proj.weight") {
            for i in 0..<t.count { t.data[i] += 0.3 * g.nextNormal() }
        }
    }

    func features(_ c: AMBAConfig, batch: Int = 2, seed: UInt64 = 5) -> Tensor {
        var g = RandomGenerator(seed: seed)
        return Tensor.randn([batch, c.inputTdim, c.inputFdim], generator: &g)
    }

    /// The reference's loop, literally: the second layer of each pair on reversed copies of h and r,
    /// its outputs reversed back; each layer r = r + h (or h), h = mixer(norm(r)); norm_f twice.
    func explicitTokens(_ v: AMBAEncoder, _ x: Tensor) throws -> Tensor {
        let p = try v.patchTokens(x)
        let (b, d) = (p.shape[0], p.shape[2])
        var h = try Tensor.concat([v.clsToken.expand([b, 1, d]), p], axis: 1) + v.posEmbed
        var r: Tensor? = nil
        func layer(_ l: VimBlock, _ h: Tensor, _ r: Tensor?) throws -> (Tensor, Tensor) {
            let res = try r.map { try $0 + h } ?? h
            return (try l.mixer(l.norm(res)), res)
        }
        for i in 0..<(v.layers.count / 2) {
            let (hf, rf) = try layer(v.layers[2 * i], h, r)
            let (hb, rb) = try layer(v.layers[2 * i + 1], h.flip([1]), r?.flip([1]))
            (h, r) = (try hf + hb.flip([1]), try rf + rb.flip([1]))
        }
        return try v.normF(v.normF(try XCTUnwrap(r) + h))
    }

    func testEncoderIsTheExplicitPairCompositionWithGradients() throws {
        Random.global = RandomGenerator(seed: 1)
        let model = AMBA(smallConfig())
        perturb(model, seed: 2)
        model.eval()
        let x = features(model.config)
        var g = RandomGenerator(seed: 9)
        let weights = Tensor.randn([2, 7, 16], generator: &g)
        func run(_ f: () throws -> Tensor) throws -> (Tensor, [String: Tensor]) {
            model.zeroGrad()
            let out = try f()
            try (out * weights).sum().backward()
            return (out, Dictionary(uniqueKeysWithValues: try model.v.namedParameters().map { ($0.0, try XCTUnwrap($0.1.grad, $0.0)) }))
        }
        let (fast, fastGrads) = try run { try model.v.tokens(x) }
        let (slow, slowGrads) = try run { try explicitTokens(model.v, x) }
        XCTAssertEqual(fast.shape, [2, 7, 16])
        XCTAssertLessThanOrEqual(maxAbs(fast, slow), 1e-5)
        for (key, a) in fastGrads {
            let b = try XCTUnwrap(slowGrads[key])
            XCTAssertLessThanOrEqual(maxAbs(a, b), 1e-5 + 1e-4 * (b.toArray().map(abs).max() ?? 0), key)
        }
        // Mean of tokens[1:] pooled, then the head.
        let pooled = try GradMode.noGrad { try model.embed(x) }
        XCTAssertLessThanOrEqual(maxAbs(pooled, try fast.slice(axis: 1, start: 1).mean(axis: 1)), 1e-6)
    }

    /// Inference (no autograd, drop path off) keeps r and h in place, adds the second mixer into the
    /// first's output and streams each mixer in pieces with its norm per piece: the same tokens as the
    /// recorded path, for pieces that divide the length or not, and the caller's input is not written.
    func testInferenceBlocksInPiecesEqualTheRecordedPath() throws {
        Random.global = RandomGenerator(seed: 11)
        let v = AMBAEncoder(smallConfig(depth: 4))
        perturb(v, seed: 12)
        v.eval()
        var g = RandomGenerator(seed: 13)
        let x = Tensor.randn([2, 37, 16], generator: &g), before = x.copy()
        let recorded = try v.blocks(x)
        let saved = (MambaMixer.pieceTokens, MambaMixer.piecesAbove)
        defer { (MambaMixer.pieceTokens, MambaMixer.piecesAbove) = saved }
        for (piece, above) in [(1, 0), (5, 0), (16, 0), (37, 0), (8, 37)] {
            (MambaMixer.pieceTokens, MambaMixer.piecesAbove) = (piece, above)
            let streamed = try GradMode.noGrad { try v.blocks(x) }
            XCTAssertLessThanOrEqual(maxAbs(streamed, recorded), 2e-5, "pieces of \(piece) above \(above)")
        }
        XCTAssertEqual(x.toArray(), before.toArray())
    }

    /// After the first pair, r is the sum of both directions' residuals: 2·x. With the backward layer's
    /// mixer silenced, the tokens are norm_f(norm_f(2x + L0(x))); a residual from one direction only
    /// (x + L0(x)) or a single norm_f would differ.
    func testPairSumsBothResidualsAndDropPathFollowsVim() throws {
        Random.global = RandomGenerator(seed: 3)
        var c = smallConfig(depth: 2)
        c.dropPath = 0.3
        let model = AMBA(c)
        perturb(model, seed: 4)
        model.eval()
        let w = model.v.layers[1].mixer.outProj.weight
        for i in 0..<w.count { w.data[i] = 0 }
        let x = features(c)
        let v = model.v
        try GradMode.noGrad {
            let p = try v.patchTokens(x)
            let h = try Tensor.concat([v.clsToken.expand([2, 1, 16]), p], axis: 1) + v.posEmbed
            let l0 = try v.layers[0].mixer(v.layers[0].norm(h))
            let expected = try v.normF(v.normF(h * 2 + l0))
            XCTAssertLessThanOrEqual(maxAbs(try v.tokens(x), expected), 1e-5)
            XCTAssertGreaterThan(maxAbs(try v.normF(h * 2 + l0), expected), 1e-2, "norm_f twice is not norm_f once here")
        }
        // Vim: inter_dpr = [0] + linspace(0, rate, depth); the final residual sum takes the full rate.
        c.depth = 4
        let deep = AMBAEncoder(c)
        for (rate, expected) in zip(deep.layers.map(\.dropPath.p), [0, 0, 0.1, 0.2] as [Float]) { XCTAssertEqual(rate, expected, accuracy: 1e-6) }
        XCTAssertEqual(deep.dropPath.p, 0.3)
        XCTAssertThrowsError(try { var odd = c; odd.depth = 3; try odd.validate() }()) { XCTAssertTrue("\($0)".contains("even"), "\($0)") }
        XCTAssertThrowsError(try { var wide = c; wide.dim = 1 << 20; try wide.validate() }()) {
            XCTAssertTrue("\($0)".contains("is beyond any model's size"), "\($0)")
        }
    }

    /// The reference script's model as a released DataParallel `.pth`: read by the family (config from
    /// the shapes and p_input_*), tokens, pooled embedding and (with the script's head) logits.
    func testReleasedCheckpointMatchesTheReferenceArchitecture() throws {
        let pth = modelFixtures.appendingPathComponent("ssamba_release.pth")
        let fx = try SafeTensors.read(modelFixtures.appendingPathComponent("ssamba_outputs.safetensors")).tensors
        let x = try XCTUnwrap(fx["input"])
        let loaded = try XCTUnwrap(try SSAMBAFamily().encoderOnly(pth, options: ReleasedCheckpointOptions()))
        let model = try XCTUnwrap(loaded.model as? AMBA)
        var expected = AMBAConfig(dim: 24, depth: 4, labelDim: 1)
        (expected.stateSize, expected.dtRank, expected.inputFdim, expected.inputTdim) = (4, 2, 32, 80)
        XCTAssertEqual(model.config, expected)
        XCTAssertEqual(loaded.pipeline.targetFrames, 80)
        let (tokens, embedding) = try GradMode.noGrad { (try model.v.tokens(x), try model.embedding(x)) }
        XCTAssertLessThanOrEqual(maxAbs(tokens, try XCTUnwrap(fx["tokens"])), 1e-4)
        XCTAssertLessThanOrEqual(maxAbs(embedding, try XCTUnwrap(fx["embedding"])), 1e-4)
        // Streamed in pieces of 4 tokens (the sequence is not a multiple of 4), the same.
        let saved = MambaMixer.pieceTokens
        defer { MambaMixer.pieceTokens = saved }
        MambaMixer.pieceTokens = 4
        XCTAssertNotEqual(tokens.shape[1] % 4, 0)
        XCTAssertLessThanOrEqual(maxAbs(try GradMode.noGrad { try model.v.tokens(x) }, try XCTUnwrap(fx["tokens"])), 1e-4)
        MambaMixer.pieceTokens = saved

        // A start from the same file: encoder copied, a fresh 5-way head; with the script's head, its logits.
        let start = try ModelRegistry.start(pth)
        XCTAssertEqual(start.kind, "SSAMBA")
        XCTAssertNil(start.modelName, "width 24 is no named size")
        let classifier = try XCTUnwrap(try start.build(ModelShape(frames: 80, outputs: 5)) as? AMBA)
        var state = classifier.stateDict()
        for k in state.keys where k.hasPrefix("mlp_head.") { state[k] = try XCTUnwrap(fx[k]) }
        try classifier.load(stateDict: state)
        classifier.eval()
        XCTAssertLessThanOrEqual(maxAbs(try GradMode.noGrad { try classifier.logits(x) }, try XCTUnwrap(fx["logits"])), 1e-4)
        // Not a classifier: loading it as one names what it is.
        XCTAssertThrowsError(try ModelRegistry.releasedClassifier(pth, options: ReleasedCheckpointOptions())) {
            XCTAssertTrue("\($0)".contains("no classifier head"), "\($0)")
        }
    }

    func testRegistryEntriesAndCheckpointRoundTrip() throws {
        for size in ["tiny", "small", "base"] { for v in ["patch", "frame"] { XCTAssertNoThrow(try ModelRegistry.entry(named: "ssamba-\(size)-\(v)")) } }
        let tiny = try ModelRegistry.entry(named: "ssamba-tiny-patch")
        XCTAssertNotNil(tiny.pretrainer)
        // SYSTEMS.md 4.1: tiny ≈ 6.9M parameters without Vim's unused head.
        let count = try ModelRegistry.parameterCount(tiny)
        XCTAssertTrue((6_700_000...7_100_000).contains(count), "\(count)")

        Random.global = RandomGenerator(seed: 6)
        let model = try XCTUnwrap(try tiny.classifier(ModelShape(frames: 32, outputs: 4, depth: 2)) as? AMBA)
        XCTAssertEqual(model.architecture.family, "amba")
        XCTAssertEqual([model.config.dim, model.config.depth, model.config.dtRank, model.config.patches], [192, 2, 12, 16])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ssamba-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("amba.safetensors")
        try model.save(to: file, metadata: model.architecture.metadata)
        let st = try SafeTensors.read(file)
        let arch = try XCTUnwrap(ModelRegistry.architecture(st.metadata))
        let rebuilt = try ModelRegistry.classifier(arch)
        try rebuilt.load(stateDict: st.tensors)
        model.eval(); rebuilt.eval()
        let x = features(model.config, batch: 1)
        XCTAssertEqual(try GradMode.noGrad { try rebuilt.logits(x).toArray() }, try GradMode.noGrad { try model.logits(x).toArray() })
        XCTAssertTrue(st.tensors.keys.contains("v.layers.1.mixer.A_b_log") && st.tensors.keys.contains("v.norm_f.weight"))
    }

    func testPretrainingOnAMBALowersTheLossAndRecordsSSAMBA() throws {
        Random.global = RandomGenerator(seed: 7)
        let c = smallConfig(depth: 2, labels: 1)
        let model = SSAST.ssamba(c)
        XCTAssertEqual(model.architecture.family, "ssamba")
        XCTAssertEqual(try AMBAConfig.decode(model.architecture.config, "test"), c)
        XCTAssertEqual(model.patchCount, 6)
        let x = features(c, batch: 2, seed: 8)
        let optimizer = Adam(model.trainableParameters(), lr: 2e-3)
        func loss() throws -> Tensor {
            var g = RandomGenerator(seed: 11)   // the same masks every step
            return try model.jointLoss(x, maskCount: 3, generator: &g).loss
        }
        let first = try GradMode.noGrad { try loss().item() }
        for _ in 0..<8 {
            optimizer.zeroGrad()
            try loss().backward()
            try optimizer.step()
        }
        let last = try GradMode.noGrad { try loss().item() }
        XCTAssertLessThan(last, first * 0.9, "\(first) → \(last)")
        // AST pretraining records what it always did.
        let ast = SSAST(try XCTUnwrap(SSAST.config("tiny", variant: .patch, inputTdim: 64)))
        XCTAssertEqual(ast.architecture, ModelArchitecture(family: "ssast", config: ast.config.json))
    }

    /// An Earshot SSAMBA pretraining checkpoint as a fine-tuning start on longer clips: the encoder's
    /// weights copied, positions interpolated (cls position kept), a fresh head; and as an embedder.
    func testFineTuningStartsFromAPretrainingCheckpoint() throws {
        Random.global = RandomGenerator(seed: 12)
        let c = smallConfig(depth: 2, labels: 1)
        let pre = SSAST.ssamba(c)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ssamba-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("best.safetensors")
        let pipeline = FeaturePipeline.astFbank(bins: 32, targetFrames: 48, mean: -5, std: 4)
        try pre.save(to: file, metadata: pre.architecture.metadata.merging(["pipeline": String(data: try JSONEncoder().encode(pipeline), encoding: .utf8)!]) { a, _ in a })

        let start = try ModelRegistry.start(dir)   // the run folder stands for its best checkpoint
        XCTAssertEqual(start.kind, "SSAMBA")
        XCTAssertEqual(start.pipeline, pipeline)
        XCTAssertEqual(start.depth, 2)
        let model = try XCTUnwrap(try start.build(ModelShape(frames: 80, outputs: 3)) as? AMBA)
        XCTAssertEqual(model.config.inputTdim, 80)
        XCTAssertEqual(model.v.posEmbed.shape, [1, 1 + 2 * 5, 16])
        let saved = pre.stateDict()
        let mine = model.stateDict()
        XCTAssertEqual(mine["v.layers.1.mixer.x_proj_b.weight"]?.toArray(), saved["v.layers.1.mixer.x_proj_b.weight"]?.toArray())
        XCTAssertEqual(mine["v.norm_f.bias"]?.toArray(), saved["v.norm_f.bias"]?.toArray())
        XCTAssertEqual(Array(model.v.posEmbed.toArray()[0..<16]), Array(try XCTUnwrap(saved["v.pos_embed"]).toArray()[0..<16]), "cls position")
        XCTAssertNil(mine.keys.first { $0.hasPrefix("cpredlayer") || $0 == "mask_embed" })
        XCTAssertEqual(model.outputs, 3)
        XCTAssertThrowsError(try start.build(ModelShape(frames: 80, outputs: 3)), "a start is used once")

        let embedder = try XCTUnwrap(try ModelRegistry.encoderOnly(file, options: ReleasedCheckpointOptions()))
        XCTAssertEqual(embedder.pipeline, pipeline)
        let e = try XCTUnwrap(embedder.model as? AMBA)
        XCTAssertEqual(e.v.posEmbed.toArray(), try XCTUnwrap(saved["v.pos_embed"]).toArray())
        XCTAssertEqual(try GradMode.noGrad { try e.embedding(features(c, batch: 1)) }.shape, [1, 16])
    }

    func testParameterEfficientMethodsThatFitAMambaEncoder() throws {
        func fresh() -> AMBA { Random.withoutInitialisation { AMBA(smallConfig(depth: 2)) } }
        let linear = fresh()
        try PEFTConfig(method: .linear).apply(to: linear)
        XCTAssertEqual(Set(linear.namedParameters().filter { $0.1.requiresGrad }.map(\.0)),
                       ["mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.1.weight", "mlp_head.1.bias"])
        let bitfit = fresh()
        try PEFTConfig(method: .bitfit).apply(to: bitfit)
        let trained = bitfit.namedParameters().filter { $0.1.requiresGrad }.map(\.0)
        XCTAssertTrue(trained.contains("v.norm_f.bias") && trained.contains("v.layers.0.mixer.dt_proj_b.bias"), "\(trained)")
        XCTAssertTrue(trained.allSatisfy { $0.hasSuffix(".bias") || $0.hasPrefix("mlp_head.") }, "\(trained)")
        XCTAssertFalse(trained.contains("v.layers.0.mixer.in_proj.weight"))
        let full = fresh()
        try PEFTConfig(method: .full).apply(to: full)
        XCTAssertEqual(full.trainableParameters().count, full.namedParameters().count)
        for method in [PEFTConfig.Method.prefix, .prompt] {
            XCTAssertThrowsError(try PEFTConfig(method: method).apply(to: fresh()), method.rawValue) {
                XCTAssertTrue("\($0)".contains("amba"), "\(method): \($0)")
            }
        }
    }

    /// Adapters beside each Mamba mixer and LoRA on its projections: the model's outputs are unchanged
    /// at the start (zero up-projection, zero LoRA down), only the method's tensors (and the norms
    /// before adapters, the final norm and the head) train, and every one of them gets a gradient.
    func testAdaptersAndLoRAOnMambaBlocks() throws {
        Random.seed(9)
        let x = Tensor.randn([2, 48, 32])
        for (name, peft) in [("adapter", { var p = PEFTConfig(method: .adapter); (p.reductionRate, p.adapterInit) = (4, .standard); return p }()),
                             ("lora", { var p = PEFTConfig(method: .lora); p.reductionRate = 4; return p }()),
                             ("lora-x", { var p = PEFTConfig(method: .lora); (p.reductionRate, p.loraTargets) = (4, ["x"]); return p }()),
                             ("soft-moa", { var p = PEFTConfig(method: .moa); (p.reductionRate, p.mixture, p.experts, p.adapterInit) = (4, .soft, 2, .standard); return p }())] {
            let model = AMBA(smallConfig(depth: 2))
            perturb(model, seed: 3)
            model.eval()
            let before = try GradMode.noGrad { try model.logits(x) }
            let summary = try peft.apply(to: model)
            XCTAssertLessThan(summary.trainable, summary.total / 2, name)
            let after = try GradMode.noGrad { try model.logits(x) }
            XCTAssertLessThanOrEqual(maxAbs(before, after), 1e-5, "\(name): the method starts as the identity")
            model.train()
            try model.logits(x).square().sum().backward()
            let trained = model.namedParameters().filter { $0.1.requiresGrad }
            XCTAssertTrue(trained.allSatisfy { $0.0.contains(".adapter.") || $0.0.contains(".lora.") || $0.0.contains(".norm.")
                || $0.0.hasPrefix("v.norm_f.") || $0.0.hasPrefix("mlp_head.") }, "\(name): \(trained.map(\.0))")
            XCTAssertTrue(trained.contains { $0.0.contains(name.hasPrefix("lora") ? ".lora." : ".adapter.") }, name)
            XCTAssertNil(model.namedParameters().first { $0.0 == "v.layers.0.mixer.in_proj.weight" }?.1.grad, "\(name): frozen")
            if name.hasPrefix("lora") {
                XCTAssertTrue(trained.filter { $0.0.contains(".lora.") && $0.0.hasSuffix("up.weight") }.allSatisfy { $0.1.grad != nil }, name)
                PEFTConfig.mergeLoRA(model)
                XCTAssertFalse(model.namedParameters().contains { $0.0.contains(".lora.") }, "\(name): merged")
            }
        }
        var wrong = PEFTConfig(method: .lora)
        wrong.loraTargets = ["q"]
        XCTAssertThrowsError(try wrong.apply(to: AMBA(smallConfig(depth: 2)))) { XCTAssertTrue("\($0)".contains("in, out, x"), "\($0)") }
    }
}
