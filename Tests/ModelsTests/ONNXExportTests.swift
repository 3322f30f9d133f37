import Foundation
import XCTest
import Audio
import Engine
import NN
@testable import Models

/// `earshot export`'s ONNX models against onnxruntime (tools/check_onnx_export.py): the fixture holds
/// onnxruntime's outputs for two exports (a Hugging Face AST, checked there against transformers within
/// 1e-4, and an SSAST classifier with mean-token pooling) and the hash of each export. Here the same
/// models are exported again: the bytes must be those onnxruntime ran (a changed exporter is checked
/// there again before its fixture is renewed), and the model's own outputs must equal onnxruntime's.
final class ONNXExportTests: XCTestCase {
    func fixture() throws -> SafeTensors.File {
        try SafeTensors.read(modelFixtures.appendingPathComponent("onnx_export.safetensors"))
    }

    /// The exported models: the HF fixture as `classify` loads it, and an SSAST release's encoder with a
    /// head set by formula (no random draw, so the export is the same bytes on every run).
    func models() throws -> [(name: String, model: any ONNXExportable, classes: [String], pipeline: FeaturePipeline, multiLabel: Bool)] {
        let hf = try ASTFamily.huggingFace(modelFixtures.appendingPathComponent("hf_ast_release"), ReleasedCheckpointOptions())
        let pre = try PretrainedEncoder.read(modelFixtures.appendingPathComponent("ssast_release_tiny.pth"))
        var c = try XCTUnwrap(SSAST.config("tiny", variant: .patch, inputTdim: 64))
        (c.depth, c.labelDim) = (1, 3)
        Random.seed(5)
        let ssast = AST(c)
        try pre.initialise(ssast)
        for (k, t) in ssast.namedParameters() where k.hasPrefix("mlp_head.") {
            for i in 0..<t.count { t.data[i] = k.hasSuffix("0.weight") ? 1 + 0.1 * Float(sin(Double(i))) : 0.2 * Float(cos(Double(3 * i + 1))) }
        }
        // PANNs: the reference's Cnn14 (8 kHz) as released and read as decision-level max, and its Cnn6.
        let pth = modelFixtures.appendingPathComponent("panns_cnn14_8k.pth")
        let cnn14 = try XCTUnwrap(try PANNsFamily().releasedClassifier(pth, options: ReleasedCheckpointOptions()))
        var state = PANNsCheckpoint.unwrapped(try TorchCheckpoint.read(pth))
        let dlm = Random.withoutInitialisation { PANNs(try! PANNsCheckpoint.config(of: state, file: pth, decisionLevelMax: true)) }
        try PANNsCheckpoint.load(consuming: &state, into: dlm, file: pth)
        var cnn6State = try SafeTensors.read(modelFixtures.appendingPathComponent("panns_cnn6.safetensors")).tensors
            .filter { !["logmel", "clipwise", "embedding"].contains($0.key) }
        let cnn6 = Random.withoutInitialisation {
            PANNs(try! PANNsCheckpoint.config(of: cnn6State, file: URL(fileURLWithPath: "cnn6"), decisionLevelMax: false, frames: 96))
        }
        try PANNsCheckpoint.load(consuming: &cnn6State, into: cnn6, file: URL(fileURLWithPath: "cnn6"))
        let raw = FeaturePipeline(kind: .logMel(.panns), targetFrames: nil)
        // SSAMBA: the reference script's release with its head (tools/make_ssamba_fixtures.py).
        let amba = try XCTUnwrap(try ModelRegistry.start(modelFixtures.appendingPathComponent("ssamba_release.pth"))
            .build(ModelShape(frames: 80, outputs: 5)) as? AMBA)
        let ssambaOutputs = try SafeTensors.read(modelFixtures.appendingPathComponent("ssamba_outputs.safetensors")).tensors
        var ambaState = amba.stateDict()
        for k in ambaState.keys where k.hasPrefix("mlp_head.") { ambaState[k] = try XCTUnwrap(ssambaOutputs[k]) }
        try amba.load(stateDict: ambaState)
        // Parameter-efficient runs of the same SSAST: every wiring, mixture and prompt path. Deep prompts
        // need a second block (every weight set by formula there: the release has one).
        func adapted(_ method: PEFTConfig.Method, depth: Int = 1, _ options: (inout PEFTConfig) -> Void) throws -> AST {
            var c2 = c
            c2.depth = depth
            let model = Random.withoutInitialisation { AST(c2) }
            if depth == 1 { try pre.initialise(model) } else { setByFormula(model) { _ in true } }
            var peft = PEFTConfig(method: method)
            options(&peft)
            try peft.apply(to: model)
            setByFormula(model) { $0.hasPrefix("mlp_head.") || $0.contains("adapter") || $0.contains("prefix_") || $0.contains("prompts") }
            return model
        }
        let fbank = FeaturePipeline.astFbank(bins: 128, targetFrames: 64, mean: -4.2677393, std: 4.5689974)
        let peftModels: [(String, AST)] = [
            ("ssast_houlsby_conformer", try adapted(.conformer) { ($0.adapterKind, $0.placement, $0.adapterResidual, $0.reductionRate) = (.houlsby, .sequential, true, 16) }),
            ("ssast_adapter_before", try adapted(.adapter) { ($0.placement, $0.adapterInit, $0.reductionRate) = (.before, .standard, 16) }),
            ("ssast_moa_dense_echo", try adapted(.moa) { ($0.experts, $0.reductionRate) = (3, 32) }),
            ("ssast_moa_soft_mlp", try adapted(.moa) { ($0.mixture, $0.slots, $0.normalizeSlots, $0.mixtureLocation, $0.experts, $0.reductionRate) = (.soft, 2, true, .mlp, 3, 32) }),
            ("ssast_prefix", try adapted(.prefix) { $0.prefixTokens = 6 }),
            ("ssast_prompt_deep", try adapted(.prompt, depth: 2) { $0.promptTokens = 3 }),
        ]
        // SSAMBA with adapters beside its mixers: a conformer one (its convolution sees the tokens in their
        // own order in the flipped layer too) and a dense mixture.
        func adaptedAMBA(_ method: PEFTConfig.Method, _ options: (inout PEFTConfig) -> Void) throws -> AMBA {
            let model = try XCTUnwrap(try ModelRegistry.start(modelFixtures.appendingPathComponent("ssamba_release.pth"))
                .build(ModelShape(frames: 80, outputs: 5)) as? AMBA)
            var peft = PEFTConfig(method: method)
            options(&peft)
            try peft.apply(to: model)
            setByFormula(model) { $0.hasPrefix("mlp_head.") || $0.contains("adapter") }
            return model
        }
        let ambaFbank = FeaturePipeline.astFbank(bins: 32, targetFrames: 80, mean: -4.2677393, std: 4.5689974)
        let labels = ["a", "b", "c"], five = ["a", "b", "c", "d", "e"]
        return [("hf_ast", try XCTUnwrap(hf.model as? AST), hf.classes, hf.pipeline, hf.multiLabel),
                ("ssast_patch", ssast, ["a", "b", "c"], .astFbank(bins: 128, targetFrames: 64, mean: -4.2677393, std: 4.5689974), false),
                ("panns_cnn14", try XCTUnwrap(cnn14.model as? PANNs), cnn14.classes, cnn14.pipeline, true),
                ("panns_cnn14_dlm", dlm, cnn14.classes, cnn14.pipeline, true),
                ("panns_cnn6", cnn6, (0..<cnn6.outputs).map(String.init), raw, true),
                ("ssamba", amba, five, ambaFbank, false),
                ("ssamba_conformer", try adaptedAMBA(.conformer) { $0.reductionRate = 8 }, five, ambaFbank, false),
                ("ssamba_moa_dense", try adaptedAMBA(.moa) { ($0.experts, $0.reductionRate) = (2, 8) }, five, ambaFbank, false)]
            + peftModels.map { ($0.0, $0.1 as any ONNXExportable, labels, fbank, false) }
    }

    func testExportsRunInONNXRuntimeAsTheModelDoes() throws {
        let keep = ProcessInfo.processInfo.environment["EARSHOT_ONNX_FIXTURES"].map { URL(fileURLWithPath: $0) }
        if let keep {   // regenerating: write the exports for tools/check_onnx_export.py, compare nothing
            try FileManager.default.createDirectory(at: keep, withIntermediateDirectories: true)
            for m in try models() {
                m.model.eval()
                try ONNXExport.model(m.model, classes: m.classes, pipeline: m.pipeline, multiLabel: m.multiLabel)
                    .write(to: keep.appendingPathComponent("\(m.name).onnx"))
            }
            return
        }
        let fixture = try fixture()
        for (name, model, classes, pipeline, multiLabel) in try models() {
            model.eval()
            let full = try ONNXExport.model(model, classes: classes, pipeline: pipeline, multiLabel: multiLabel)
            let bare = try ONNXExport.model(model, classes: classes, pipeline: pipeline, multiLabel: multiLabel, withMetadata: false)
            XCTAssertEqual(full.prefix(bare.count), bare, "\(name): the metadata is written last")
            let hash = String(format: "%016llx", bare.withUnsafeBytes { FeatureCache.fnv1a($0) })
            XCTAssertEqual(hash, fixture.metadata["\(name).hash"],
                           "\(name): the export changed since onnxruntime ran it; check it again with tools/check_onnx_export.py (see its usage)")
            let x = try XCTUnwrap(fixture.tensors["\(name).input"])
            let (logits, embedding) = try GradMode.noGrad { try model.logitsAndEmbedding(x) }
            XCTAssertLessThanOrEqual(maxAbs(logits, try XCTUnwrap(fixture.tensors["\(name).logits"])), 1e-4, name)
            XCTAssertLessThanOrEqual(maxAbs(embedding, try XCTUnwrap(fixture.tensors["\(name).embedding"])), 1e-4, name)
            // A decision-level PANNs also gives frame-wise scores (tag --frames'), checked in onnxruntime against the reference's.
            if let panns = model as? PANNs, panns.config.decisionLevelMax {
                let framewise = try GradMode.noGrad { try panns.framewise(x) }
                XCTAssertLessThanOrEqual(maxAbs(framewise, try XCTUnwrap(fixture.tensors["\(name).framewise"])), 1e-4, name)
            } else {
                XCTAssertNil(fixture.tensors["\(name).framewise"], "\(name): only a decision-level model has frame-wise scores")
            }
        }
    }

    /// What the graph cannot hold is refused by name: a wrapped block (an adapter), prompts, another family.
    func testWrappedModelsAreRefused() throws {
        // An unmerged LoRA (a run merges it when it loads; a live model in a program may not have).
        let (_, model, classes, pipeline, multiLabel) = try models()[1]
        try PEFTConfig(method: .lora).apply(to: model)
        XCTAssertThrowsError(try ONNXExport.model(model, classes: classes, pipeline: pipeline, multiLabel: multiLabel)) {
            XCTAssertTrue("\($0)".contains("v.blocks.0.attn.qkv is a LoRALinear, not a plain Linear"), "\($0)")
        }
        let amba = AMBA(AMBAConfig(dim: 64, depth: 2, labelDim: 2))
        try PEFTConfig(method: .lora).apply(to: amba)
        XCTAssertThrowsError(try ONNXExport.model(amba, classes: ["a", "b"], pipeline: pipeline, multiLabel: true)) {
            XCTAssertTrue("\($0)".contains("v.layers.0.mixer.in_proj is a LoRALinear"), "\($0)")
        }
        XCTAssertThrowsError(try ONNXExport.model(NoExporter(), classes: ["a"], pipeline: pipeline, multiLabel: true)) {
            XCTAssertTrue("\($0)".contains("a none-such model has no exporter"), "\($0)")
        }
    }

    /// SSAMBA's graph takes clips of any length from its trained frames up, as the model does (positions
    /// resized along time in the graph; the fixture's adapted SSAMBAs ran at 100 frames in onnxruntime, 80
    /// trained); the scans are Scan loops.
    func testSSAMBAGraphTakesAnyLength() throws {
        let (_, model, classes, pipeline, multiLabel) = try XCTUnwrap(try models().first { $0.name == "ssamba" })
        model.eval()
        let bytes = try ONNXExport.model(model, classes: classes, pipeline: pipeline, multiLabel: multiLabel)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("features [batch, frames (any number from 80), 32]"), "a free frames axis in the metadata")
        // 4 layers x 2 branches: 8 Scan nodes, each with its body.
        XCTAssertEqual(text.components(separatedBy: "Scan").count - 1, 8)
        XCTAssertEqual(text.components(separatedBy: ".scan_step").count - 1, 8)
        XCTAssertEqual(try XCTUnwrap(try fixture().tensors["ssamba_conformer.input"]).shape, [2, 100, 32])
    }
}

/// Sets the parameters whose key `selected` picks to fixed formula values (no random draw, so an export is
/// the same bytes on every run; far from PETL_AST's zero adapters, so every adapter path changes the output).
func setByFormula(_ model: Module, _ selected: (String) -> Bool) {
    for (n, (k, t)) in model.namedParameters().enumerated() where selected(k) {
        let unit: Float = k.hasSuffix(".weight") && (k.contains("norm") || k.hasSuffix("bn.weight")) ? 1 : 0   // norms near the identity
        for i in 0..<t.count { t.data[i] = 0.2 * Float(sin(Double(7 * i + 3 * n + 1))) + unit }
    }
}

/// A model of a family with no exporter.
private final class NoExporter: Module, AudioClassifierModel {
    let head = Linear(2, 1)
    var architecture: ModelArchitecture { ModelArchitecture(family: "none-such", config: "{}") }
    var inputFrames: Int { 4 }
    var inputBins: Int { 2 }
    var embeddingWidth: Int { 2 }
    var outputs: Int { 1 }
    var headPrefixes: [String] { ["head."] }
    var blockPattern: String { "" }
    var encoder: any AudioEncoder { fatalError("not used") }
    var finalNormPrefix: String? { nil }
    func logits(_ features: Tensor) throws -> Tensor { try head(features.mean(axis: 1)) }
    func embedding(_ features: Tensor) throws -> Tensor { try features.mean(axis: 1) }
}
