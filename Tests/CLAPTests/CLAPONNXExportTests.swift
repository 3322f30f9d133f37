import Foundation
import XCTest
import Audio
import Engine
import Models
import NN
import Text
@testable import CLAP

/// A CLAP audio classifier (the tiny Hugging Face CLAP's tower and projection, a head set by formula)
/// exported to ONNX and run in onnxruntime by tools/check_onnx_export.py, whose pooled-and-projected
/// embedding it checked against transformers' `ClapModel.get_audio_features` there. Here: the export must
/// be the bytes onnxruntime ran, and the model's own outputs must equal onnxruntime's (as ONNXExportTests).
final class CLAPONNXExportTests: XCTestCase {
    override func setUp() { CLAPAudioFamily.register() }

    /// The tiny CLAP's tower with a head set by formula; with `peft`, its adapters too (a parameter-efficient
    /// run on HTSAT's Swin blocks).
    func model(frames: Int, peft: PEFTConfig? = nil) throws -> CLAPAudioClassifier {
        let model = try XCTUnwrap(try ModelRegistry.start(clapFolder).build(ModelShape(frames: frames, outputs: 3)) as? CLAPAudioClassifier)
        try peft?.apply(to: model)
        for (n, (k, t)) in model.namedParameters().enumerated() where k.hasPrefix("head.") || k.contains("adapter.") {
            let unit: Float = k.hasSuffix("bn.weight") ? 1 : 0
            for i in 0..<t.count { t.data[i] = 0.3 * Float(sin(Double(2 * i + 1 + n))) + unit }
        }
        model.eval()
        return model
    }

    /// Zero-shot classification of the tiny CLAP into three labels (LAION's caption template).
    func zeroShot() throws -> ZeroShotClassifier {
        try ZeroShotClassifier(clap: try CLAP.load(model: clapFolder), labels: ["dog", "rain", "siren"])
    }

    /// The zero-shot export: the CLAP's own logits on the fixture's input equal onnxruntime's (which
    /// tools/check_onnx_export.py --clap checked against transformers' logits_per_audio, captions through
    /// its tokenizer and text tower).
    func testTheZeroShotExportRunsInONNXRuntimeAsTheCLAPDoes() throws {
        guard ProcessInfo.processInfo.environment["EARSHOT_ONNX_FIXTURES"] == nil else { return }
        let fixture = try SafeTensors.read(clapFixtures.appendingPathComponent("onnx_clap.safetensors"))
        let classifier = try zeroShot()
        // The caption embeddings come from the text tower, whose last bits depend on the host's kernels: the
        // export is rebuilt with the fixture's (equal to this host's within 1e-5) for the hash.
        let recorded = try XCTUnwrap(fixture.tensors["clap_zeroshot.label_embeddings"])
        XCTAssertLessThanOrEqual(zip(classifier.textEmbeddings.toArray(), recorded.toArray()).map { abs($0 - $1) }.max()!, 1e-5)
        let pinned = ZeroShotClassifier(clap: classifier.clap, labels: classifier.labels, templates: classifier.templates, textEmbeddings: recorded)
        XCTAssertEqual(String(format: "%016llx", try pinned.onnx(withMetadata: false).withUnsafeBytes { FeatureCache.fnv1a($0) }),
                       fixture.metadata["clap_zeroshot.hash"], "the export changed since onnxruntime ran it; check it again with tools/check_onnx_export.py")
        let x = try XCTUnwrap(fixture.tensors["clap_zeroshot.input"])
        let (unit, logits) = try GradMode.noGrad { () -> (Tensor, Tensor) in
            let a = try classifier.clap.embed(features: x)
            return (a, try classifier.logits(audioEmbeddings: a))
        }
        for (ours, key) in [(logits, "logits"), (unit, "embedding")] {
            let theirs = try XCTUnwrap(fixture.tensors["clap_zeroshot.\(key)"])
            XCTAssertLessThanOrEqual(zip(ours.toArray(), theirs.toArray()).map { abs($0 - $1) }.max()!, 1e-4, key)
        }
    }

    func testTheExportRunsInONNXRuntimeAsTheModelDoes() throws {
        // 400 frames stretch to the image's 512 (the bicubic matrix); 512 do not.
        // And Houlsby conformer adapters, and PETL_AST's default mixture (dense, beside the attention, added
        // twice), on the Swin blocks (not compared with transformers: the stems do not start with clap).
        var houlsby = PEFTConfig(method: .conformer)
        (houlsby.adapterKind, houlsby.reductionRate) = (.houlsby, 16)
        var moa = PEFTConfig(method: .moa)
        (moa.experts, moa.reductionRate) = (2, 16)
        let cases: [(String, Int, PEFTConfig?)] = [("clap_audio", 400, nil), ("clap_audio_full", 512, nil), ("swin_conformer_adapters", 512, houlsby),
                                                   ("swin_moa_echo", 512, moa)]
        let pipeline = FeaturePipeline(kind: .logMel(try CLAP.load(model: clapFolder).melConfig), targetFrames: nil)
        if let keep = ProcessInfo.processInfo.environment["EARSHOT_ONNX_FIXTURES"].map({ URL(fileURLWithPath: $0) }) {
            try FileManager.default.createDirectory(at: keep, withIntermediateDirectories: true)
            for (name, frames, peft) in cases {
                try ONNXExport.model(try model(frames: frames, peft: peft), classes: ["a", "b", "c"], pipeline: pipeline, multiLabel: false)
                    .write(to: keep.appendingPathComponent("\(name).onnx"))
            }
            try zeroShot().onnx().write(to: keep.appendingPathComponent("clap_zeroshot.onnx"))
            try CLAP.load(model: clapFolder).textONNX().write(to: keep.appendingPathComponent("clap_text.onnx"))
            try bertCLAP().textONNX().write(to: keep.appendingPathComponent("text_bert_mean.onnx"))
            return
        }
        let fixture = try SafeTensors.read(clapFixtures.appendingPathComponent("onnx_clap.safetensors"))
        for (name, frames, peft) in cases {
            let m = try model(frames: frames, peft: peft)
            let bare = try ONNXExport.model(m, classes: ["a", "b", "c"], pipeline: pipeline, multiLabel: false, withMetadata: false)
            XCTAssertEqual(String(format: "%016llx", bare.withUnsafeBytes { FeatureCache.fnv1a($0) }), fixture.metadata["\(name).hash"],
                           "\(name): the export changed since onnxruntime ran it; check it again with tools/check_onnx_export.py")
            let x = try XCTUnwrap(fixture.tensors["\(name).input"])
            let (logits, embedding) = try GradMode.noGrad { try m.logitsAndEmbedding(x) }
            for (ours, key) in [(logits, "logits"), (embedding, "embedding")] {
                let theirs = try XCTUnwrap(fixture.tensors["\(name).\(key)"])
                XCTAssertLessThanOrEqual(zip(ours.toArray(), theirs.toArray()).map { abs($0 - $1) }.max()!, 1e-4, "\(name) \(key)")
            }
        }
    }

    /// A CLAP whose text tower is the tiny BERT of TextTests (BERT positions, the masked mean: an Earshot
    /// contrastive run's MiniLM-style tower), its projection set by formula.
    func bertCLAP() throws -> CLAP {
        let textFixtures = clapFixtures.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("TextTests/Fixtures")
        let bert = try TextCheckpoint.loadHuggingFace(textFixtures.appendingPathComponent("bert_tiny"))
        let model = AudioTextModel(audioTower: try CLAP.load(model: clapFolder).model.audioTower, textModel: bert, textPooling: .mean, projectionDim: 8)
        for (n, (k, t)) in model.namedParameters().enumerated() where k.hasPrefix("text_projection.") {
            for i in 0..<t.count { t.data[i] = 0.3 * Float(sin(Double(5 * i + n + 1))) }
        }
        model.eval()
        return try CLAP(model: model, tokenizer: try TokenizerFiles.load(folder: textFixtures.appendingPathComponent("wordpiece_tiny")))
    }

    /// The mean-pooled BERT text side: onnxruntime ran it on seeded right-padded ids (BERT's text tower is
    /// checked against transformers in TextTests); the CLAP's own text embeddings of those ids equal its.
    func testABertTextExportRunsInONNXRuntimeAsTheCLAPDoes() throws {
        guard ProcessInfo.processInfo.environment["EARSHOT_ONNX_FIXTURES"] == nil else { return }
        let fixture = try SafeTensors.read(clapFixtures.appendingPathComponent("onnx_clap.safetensors"))
        let clap = try bertCLAP()
        XCTAssertEqual(String(format: "%016llx", try clap.textONNX(withMetadata: false).withUnsafeBytes { FeatureCache.fnv1a($0) }),
                       fixture.metadata["text_bert_mean.hash"], "the export changed since onnxruntime ran it; check it again with tools/check_onnx_export.py")
        try assertTextEmbeddingsMatch(clap, fixture, "text_bert_mean")
    }

    func assertTextEmbeddingsMatch(_ clap: CLAP, _ fixture: SafeTensors.File, _ stem: String) throws {
        let ids = try XCTUnwrap(fixture.tensors["\(stem).input_ids"]), mask = try XCTUnwrap(fixture.tensors["\(stem).attention_mask"])
        let (b, n) = (ids.shape[0], ids.shape[1])
        let lengths = (0..<b).map { i in Int((0..<n).map { mask.data[i * n + $0] }.reduce(0, +)) }
        XCTAssertGreaterThan(Set(lengths).count, 1, "texts of different lengths: padding is masked")
        let ours = try GradMode.noGrad { try clap.model.textEmbeddings(ids: ids.toArray().map { Int($0) }, batch: b, length: n, lengths: lengths) }
        let theirs = try XCTUnwrap(fixture.tensors["\(stem).text_embedding"])
        XCTAssertLessThanOrEqual(zip(ours.toArray(), theirs.toArray()).map { abs($0 - $1) }.max()!, 1e-4, stem)
    }

    /// The text side (`earshot export <clap> --text`): transformers' tokenizer ids of three captions (right
    /// padded) through the export gave transformers' own text features in onnxruntime
    /// (tools/check_onnx_export.py --clap); the CLAP's text embeddings of the same ids must equal them.
    func testTheTextExportRunsInONNXRuntimeAsTheCLAPDoes() throws {
        guard ProcessInfo.processInfo.environment["EARSHOT_ONNX_FIXTURES"] == nil else { return }
        let fixture = try SafeTensors.read(clapFixtures.appendingPathComponent("onnx_clap.safetensors"))
        let clap = try CLAP.load(model: clapFolder)
        XCTAssertEqual(String(format: "%016llx", try clap.textONNX(withMetadata: false).withUnsafeBytes { FeatureCache.fnv1a($0) }),
                       fixture.metadata["clap_text.hash"], "the export changed since onnxruntime ran it; check it again with tools/check_onnx_export.py")
        try assertTextEmbeddingsMatch(clap, fixture, "clap_text")
    }
}
