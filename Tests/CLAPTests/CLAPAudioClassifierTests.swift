import Foundation
import XCTest
import Audio
import Engine
import Inference
@testable import Models
import NN
@testable import CLAP

/// CLAP's audio tower as a registry family: a released CLAP (Hugging Face folder, LAION .pt) as an
/// encoder and as a fine-tuning start, the model's gradients, a fused CLAP refused.
final class CLAPAudioClassifierTests: XCTestCase {
    override func setUp() { CLAPAudioFamily.register() }

    func features(_ bins: Int, frames: Int, batch: Int = 2, seed: UInt64 = 1) -> Tensor {
        var g = RandomGenerator(seed: seed)
        return Tensor.randn([batch, frames, bins], mean: -30, std: 12, generator: &g)
    }

    /// The encoder a CLAP gives `embed` and `probe` is its audio tower and projection: normalised, its
    /// embedding is the CLAP's audio embedding, for a Hugging Face folder and for LAION's .pt.
    func testEncoderIsTheCLAPsAudioTowerAndProjection() throws {
        let pt = clapFixtures.appendingPathComponent("laion_tiny.pt")
        for (path, clap) in [(clapFolder, try CLAP.load(model: clapFolder)), (pt, try CLAP.load(model: pt, tokenizer: clapFolder, textHeads: 2))] {
            let loaded = try XCTUnwrap(try ModelRegistry.encoderOnly(path, options: ReleasedCheckpointOptions()), path.lastPathComponent)
            XCTAssertTrue(loaded.classes.isEmpty)
            XCTAssertEqual(loaded.model.architecture.family, CLAPAudioFamily.architectureName)
            guard case .logMel(let mel) = loaded.pipeline.kind else { return XCTFail("\(loaded.pipeline.kind)") }
            XCTAssertEqual(mel, clap.melConfig)
            XCTAssertNil(loaded.pipeline.mean, "HTSAT normalises with its own batch norm")
            let x = features(loaded.model.inputBins, frames: loaded.model.inputFrames)
            let ours = try GradMode.noGrad { try loaded.model.embedding(x).l2Normalized() }
            let theirs = try clap.embed(features: x)
            XCTAssertEqual(ours.shape, theirs.shape)
            XCTAssertLessThan(zip(ours.toArray(), theirs.toArray()).map { abs($0 - $1) }.max()!, 1e-5, path.lastPathComponent)
        }
        // Another family's files are not claimed.
        XCTAssertNil(try CLAPAudioFamily().start(clapFixtures.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ModelsTests/Fixtures/panns_cnn10.safetensors"), shape: ReleaseShape()))
    }

    /// A fine-tuning start keeps the tower and projection, adds a new head of the run's classes, and cuts
    /// a clip length beyond the image's width to it; a fused CLAP is refused by name.
    func testStartFromAReleasedCLAP() throws {
        let clap = try CLAPCheckpoint.loadHuggingFace(clapFolder)
        let start = try ModelRegistry.start(clapFolder)
        XCTAssertEqual(start.kind, "CLAP audio tower (HTSAT)")
        let model = try XCTUnwrap(try start.build(ModelShape(frames: 4096, outputs: 3)) as? CLAPAudioClassifier)
        XCTAssertEqual(model.inputFrames, clap.config.audio.specWidth)
        XCTAssertEqual(model.outputs, 3)
        let tower = clap.audioEncoder.stateDict(), projection = clap.audioProjection.stateDict()
        for (k, t) in model.stateDict() {
            if k.hasPrefix("audio_encoder.") { XCTAssertEqual(t.toArray(), tower[String(k.dropFirst("audio_encoder.".count))]?.toArray(), k) }
            else if k.hasPrefix("audio_projection.") { XCTAssertEqual(t.toArray(), projection[String(k.dropFirst("audio_projection.".count))]?.toArray(), k) }
            else { XCTAssertTrue(k.hasPrefix("head."), k) }
        }
        XCTAssertEqual(model.head.weight.shape, [3, clap.config.projectionDim])
        XCTAssertThrowsError(try ModelRegistry.start(clapFixtures.appendingPathComponent("clap_fused_tiny")).build(ModelShape(frames: 1001, outputs: 2))) {
            XCTAssertTrue("\($0)".contains("fused CLAP"), "\($0)")
        }
    }

    /// Finite differences against backprop through the head, the projection, the tower's attention,
    /// its patch embedding and its first batch norm (eval mode).
    func testGradientsMatchFiniteDifferences() throws {
        Random.seed(3)
        let model = try XCTUnwrap(try ModelRegistry.start(clapFolder).build(ModelShape(frames: 64, outputs: 2)) as? CLAPAudioClassifier)
        model.eval()
        let x = features(model.inputBins, frames: 64, seed: 4)
        let r = Tensor.randn([2, 2])
        func value() throws -> Float { try (model.logits(x) * r).sum().item() }
        model.zeroGrad()
        try (model.logits(x) * r).sum().backward()
        let named = Dictionary(uniqueKeysWithValues: model.namedTensors())
        let probes = try ["head.weight", "audio_projection.linear1.weight", "audio_encoder.layers.0.blocks.0.attention.self.query.weight",
                          "audio_encoder.patch_embed.proj.weight", "audio_encoder.batch_norm.weight"].map { ($0, try XCTUnwrap(named[$0], $0)) }
        try assertGradientsMatchFiniteDifferences(probes, samples: 4, relative: 3e-2, value: value)
    }

    /// `embed` of a clip shorter than CLAP's input repeat-pads its waveform as CLAP's extractor does, so
    /// its normalised embedding is the one `zeroshot` and `index` compute for the file (a 48 kHz clip and
    /// a 16 kHz one, resampled).
    func testShortClipsAreRepeatPaddedAsCLAPPadsThem() throws {
        let clap = try CLAP.load(model: clapFolder)
        let embedder = try Classifier.loadEmbedder(clapFolder)
        XCTAssertEqual(embedder.pipeline.repeatPad, true)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-clapcls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for rate in [48000, 16000] {
            let url = dir.appendingPathComponent("tone\(rate).wav")
            let wave = (0..<(rate * 13 / 10)).map { Float(0.3 * sin(2 * Double.pi * 440 * Double($0) / Double(rate)) + 0.1 * sin(Double($0) * 0.01)) }
            try AudioFile.writeWAV(wave, sampleRate: rate, to: url, float: true)
            let (rows, report) = try embedder.embeddings(of: [url.path])
            XCTAssertTrue(report.skipped.isEmpty)
            let ours = try GradMode.noGrad { try XCTUnwrap(rows[url.path]).unsqueeze(0).l2Normalized() }.toArray()
            let theirs = try CLAPFileEmbedder(clap: clap).embed(file: url.path)
            XCTAssertLessThan(zip(ours, theirs).map { abs($0 - $1) }.max()!, 1e-5, "\(rate) Hz")
        }
        // Without repeat padding (silence), the same clip embeds elsewhere: the test can tell.
        var silent = embedder.pipeline
        silent.repeatPad = nil
        let url = dir.appendingPathComponent("tone48000.wav")
        let padded = try embedder.pipeline.features(of: url), quiet = try silent.features(of: url)
        XCTAssertEqual(padded.shape, quiet.shape)
        XCTAssertNotEqual(padded.toArray(), quiet.toArray())
    }

    /// LoRA on HTSAT's Swin blocks: the query and value layers of every block wrapped (rank by each
    /// stage's width), only the factors, the final norm and the head trainable, the output unchanged until
    /// the factors move, and the merged model equal to the wrapped one.
    func testLoRAOnSwinBlocks() throws {
        Random.seed(8)
        let model = try XCTUnwrap(try ModelRegistry.start(clapFolder).build(ModelShape(frames: 128, outputs: 3)) as? CLAPAudioClassifier)
        model.eval()
        let x = features(model.inputBins, frames: 128, seed: 9)
        let before = try GradMode.noGrad { try model.logits(x) }.toArray()
        var peft = PEFTConfig(method: .lora)
        peft.reductionRate = 8
        let summary = try peft.apply(to: model)
        let wrapped = model.namedModules().filter { $0.1 is LoRALinear }.map(\.0)
        let blocks = model.audioEncoder.layers.map(\.blocks.count).reduce(0, +)
        XCTAssertEqual(wrapped.count, 2 * blocks)
        XCTAssertTrue(wrapped.allSatisfy { $0.hasSuffix("attention.self.query") || $0.hasSuffix("attention.self.value") }, "\(wrapped)")
        let trainable = model.namedParameters().filter { $0.1.requiresGrad }.map(\.0)
        XCTAssertTrue(trainable.allSatisfy { $0.contains(".lora.") || $0.hasPrefix("head.") || $0.hasPrefix("audio_encoder.norm.") }, "\(trainable)")
        XCTAssertEqual(summary.trainable, model.parameterCount(trainableOnly: true))
        // The update starts at zero (equal to rounding: the wrapped layers run as their own GEMMs, not one packed).
        let start = try GradMode.noGrad { try model.logits(x) }.toArray()
        XCTAssertLessThan(zip(start, before).map { abs($0 - $1) }.max()!, 1e-5, "the update starts at zero")
        for (k, t) in model.namedParameters() where k.contains(".lora.") && k.hasSuffix("down.weight") {
            try t.assign(from: Tensor.randn(t.shape) * 0.05)
        }
        let adapted = try GradMode.noGrad { try model.logits(x) }.toArray()
        XCTAssertGreaterThan(zip(adapted, before).map { abs($0 - $1) }.max()!, 1e-4)
        PEFTConfig.mergeLoRA(model)
        XCTAssertTrue(model.namedModules().allSatisfy { !($0.1 is LoRALinear) })
        let merged = try GradMode.noGrad { try model.logits(x) }.toArray()
        XCTAssertLessThan(zip(adapted, merged).map { abs($0 - $1) }.max()!, 1e-4)
    }

    /// Adapters on HTSAT's Swin blocks: every block wrapped (Houlsby: two adapters, each as wide as its
    /// stage), only the adapters, the norms before them, the final norm and the head trainable, the output
    /// unchanged while the up projections are zero, and gradients equal to finite differences through
    /// both adapters and the wrapped block's attention.
    func testAdaptersOnSwinBlocks() throws {
        Random.seed(11)
        let model = try XCTUnwrap(try ModelRegistry.start(clapFolder).build(ModelShape(frames: 64, outputs: 2)) as? CLAPAudioClassifier)
        model.eval()
        let x = features(model.inputBins, frames: 64, seed: 12)
        let before = try GradMode.noGrad { try model.logits(x) }.toArray()
        var peft = PEFTConfig(method: .adapter)
        (peft.reductionRate, peft.adapterKind, peft.adapterInit) = (8, .houlsby, .standard)
        let summary = try peft.apply(to: model)
        let blocks = model.audioEncoder.layers.flatMap(\.blocks)
        XCTAssertEqual(blocks.count, model.audioEncoder.layers.map(\.blocks.count).reduce(0, +))
        for block in blocks {
            let adapted = try XCTUnwrap(block as? AdaptedSwinLayer)
            for adapter in [try XCTUnwrap(adapted.mlpAdapter), try XCTUnwrap(adapted.attentionAdapter)] {
                let down = try XCTUnwrap(adapter as? BottleneckAdapter).down.weight
                XCTAssertEqual(down.shape, [max(1, Int((Double(block.width) / 8).rounded())), block.width])
            }
        }
        let trainable = model.namedParameters().filter { $0.1.requiresGrad }.map(\.0)
        let allowed = ["_adapter.", ".layernorm_before.", ".layernorm_after."]
        XCTAssertTrue(trainable.allSatisfy { k in allowed.contains { k.contains($0) } || k.hasPrefix("head.") || k.hasPrefix("audio_encoder.norm.") }, "\(trainable)")
        XCTAssertTrue(trainable.contains { $0.hasSuffix("blocks.0.attention_adapter.down.weight") }, "\(trainable)")
        XCTAssertEqual(summary.trainable, model.parameterCount(trainableOnly: true))
        XCTAssertLessThan(zip(try GradMode.noGrad { try model.logits(x) }.toArray(), before).map { abs($0 - $1) }.max()!, 1e-6,
                          "zero up projections leave the block as it was")
        for (k, t) in model.namedParameters() where k.contains("_adapter.up.weight") { try t.assign(from: Tensor.randn(t.shape) * 0.1) }
        XCTAssertGreaterThan(zip(try GradMode.noGrad { try model.logits(x) }.toArray(), before).map { abs($0 - $1) }.max()!, 1e-4)

        let r = Tensor.randn([2, 2])
        func value() throws -> Float { try (model.logits(x) * r).sum().item() }
        model.zeroGrad()
        try (model.logits(x) * r).sum().backward()
        let named = Dictionary(uniqueKeysWithValues: model.namedTensors())
        let last = "audio_encoder.layers.\(model.audioEncoder.layers.count - 1).blocks.0"
        let probes = try ["audio_encoder.layers.0.blocks.1.mlp_adapter.down.weight", "audio_encoder.layers.0.blocks.0.attention_adapter.up.weight",
                          "\(last).mlp_adapter.up.bias", "audio_encoder.layers.0.blocks.1.layernorm_after.weight"]
            .map { ($0, try XCTUnwrap(named[$0], $0)) }
        try assertGradientsMatchFiniteDifferences(probes, samples: 4, relative: 3e-2, value: value)
        XCTAssertNil(try XCTUnwrap(named["audio_encoder.layers.0.blocks.0.attention.self.query.weight"]).grad, "frozen weights get no gradient")

        // A checkpoint records the method: the same wrappers are rebuilt before its weights load.
        let rebuilt = try XCTUnwrap(try ModelRegistry.start(clapFolder).build(ModelShape(frames: 64, outputs: 2)) as? CLAPAudioClassifier)
        try peft.apply(to: rebuilt, freezing: false)
        var state = model.stateDict()
        try rebuilt.load(consuming: &state)
        rebuilt.eval()
        XCTAssertEqual(try GradMode.noGrad { try rebuilt.logits(x) }.toArray(), try GradMode.noGrad { try model.logits(x) }.toArray())
    }

    /// Mixtures of adapters on Swin blocks: a dense one beside the attention (PETL_AST's default, its
    /// output added after the attention and again after the feed-forward) and a soft one at the
    /// feed-forward half; sized per stage, the right norm trains, gradients by finite differences, rebuilt
    /// from the recorded config.
    func testMixturesOfAdaptersOnSwinBlocks() throws {
        let cases: [(PEFTConfig.MixtureKind, PEFTConfig.MixtureLocation)] = [(.dense, .attention), (.soft, .mlp)]
        for (mixture, location) in cases {
            Random.seed(21)
            let model = try XCTUnwrap(try ModelRegistry.start(clapFolder).build(ModelShape(frames: 64, outputs: 2)) as? CLAPAudioClassifier)
            model.eval()
            let x = features(model.inputBins, frames: 64, seed: 22)
            var peft = PEFTConfig(method: .moa)
            (peft.mixture, peft.mixtureLocation, peft.reductionRate, peft.experts, peft.slots, peft.adapterInit) = (mixture, location, 8, 3, 2, .standard)
            try peft.apply(to: model)
            for block in model.audioEncoder.layers.flatMap(\.blocks) {
                let adapted = try XCTUnwrap(block as? AdaptedSwinLayer)
                if location == .attention {
                    XCTAssertNil(adapted.mlpAdapter)
                    XCTAssertTrue(adapted.echoesAttentionAdapter)
                    let dense = try XCTUnwrap(adapted.attentionAdapter as? DenseMixture)
                    XCTAssertEqual(dense.experts.count, 3)
                    XCTAssertEqual(dense.router.weight.shape, [3, block.width])
                } else {
                    XCTAssertNil(adapted.attentionAdapter)
                    XCTAssertEqual(try XCTUnwrap(adapted.mlpAdapter as? SoftMixture).slotParams.shape, [block.width, 3, 2])
                }
            }
            let norm = location == .attention ? ".layernorm_before." : ".layernorm_after."
            let trainable = model.namedParameters().filter { $0.1.requiresGrad }.map(\.0)
            XCTAssertTrue(trainable.allSatisfy { $0.contains("_adapter.") || $0.contains(norm) || $0.hasPrefix("head.") || $0.hasPrefix("audio_encoder.norm.") },
                          "\(trainable)")
            for (k, t) in model.namedParameters() where k.contains("_adapter.") && k.hasSuffix("up.weight") { try t.assign(from: Tensor.randn(t.shape) * 0.1) }

            let r = Tensor.randn([2, 2])
            func value() throws -> Float { try (model.logits(x) * r).sum().item() }
            model.zeroGrad()
            try (model.logits(x) * r).sum().backward()
            let named = Dictionary(uniqueKeysWithValues: model.namedTensors())
            let site = location == .attention ? "attention_adapter" : "mlp_adapter"
            let first = location == .attention ? "router.weight" : "slot_params"
            let probes = try ["audio_encoder.layers.0.blocks.1.\(site).\(first)", "audio_encoder.layers.1.blocks.0.\(site).experts.2.down.weight",
                              "audio_encoder.layers.0.blocks.0.\(site).experts.0.up.bias", "audio_encoder.layers.0.blocks.1\(norm)weight"]
                .map { ($0, try XCTUnwrap(named[$0], $0)) }
            try assertGradientsMatchFiniteDifferences(probes, samples: 4, relative: 3e-2, value: value)

            let rebuilt = try XCTUnwrap(try ModelRegistry.start(clapFolder).build(ModelShape(frames: 64, outputs: 2)) as? CLAPAudioClassifier)
            try peft.apply(to: rebuilt, freezing: false)
            var state = model.stateDict()
            try rebuilt.load(consuming: &state)
            rebuilt.eval()
            XCTAssertEqual(try GradMode.noGrad { try rebuilt.logits(x) }.toArray(), try GradMode.noGrad { try model.logits(x) }.toArray(), "\(mixture)")

            // The echo, against the formula: h = x + Attend(u) + M(u), y = h + FFN(LN₂ h) + M(u), u = LN₁ x.
            if location == .attention {
                let block = try XCTUnwrap(model.audioEncoder.layers[0].blocks[1] as? AdaptedSwinLayer)
                let tokens = Tensor.randn([2, block.rows * block.cols, block.width])
                let mixture = try XCTUnwrap(block.attentionAdapter)
                let (ours, expected) = try GradMode.noGrad { () throws -> (Tensor, Tensor) in
                    let u = try block.layernormBefore(tokens)
                    let m = try mixture.callAsFunction(u)
                    let h = try tokens + block.attend(u) + m
                    return (try block.callAsFunction(tokens), try h + block.feedForward(block.layernormAfter(h)) + m)
                }
                XCTAssertLessThan(zip(ours.toArray(), expected.toArray()).map { abs($0 - $1) }.max()!, 1e-5)
            }
        }
    }
}
