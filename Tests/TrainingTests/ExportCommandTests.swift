import Foundation
import Engine
import XCTest
import CLAP
import Inference
import Models
@testable import Training

/// `earshot export`: the ONNX model the library writes for the classifier `classify` loads (its
/// correctness against onnxruntime is ONNXExportTests'), an encoder's embedding, and what has no exporter refused by name.
final class ExportCommandTests: XCTestCase {
    func testExportWritesTheClassifiersGraph() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures")
        let dir = try temporaryFolder("export")
        let out = dir.appendingPathComponent("ast.onnx")
        let hf = fixtures.appendingPathComponent("hf_ast_release")
        let run = try runEarshot(["export", hf.path, "--out", out.path])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("3 outputs, input [batch, 112, 40]"), run.output)
        let clf = try Classifier.load(hf)
        let expected = try ONNXExport.model(clf.model, classes: clf.classes, pipeline: clf.pipeline, multiLabel: clf.multiLabel)
        XCTAssertEqual(try Data(contentsOf: out), expected)
        // --out that is not an .onnx file (here the model's own weights) is refused, and the file kept.
        let weights = hf.appendingPathComponent("model.safetensors")
        let before = try Data(contentsOf: weights)
        let slip = try runEarshot(["export", hf.path, "--out", weights.path])
        XCTAssertNotEqual(slip.status, 0)
        XCTAssertTrue(slip.output.contains("ends in .onnx"), slip.output)
        XCTAssertEqual(try Data(contentsOf: weights), before)
        // A CLAP with --zeroshot-labels: the zero-shot classifier the library writes for those labels.
        let clap = fixtures.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("CLAPTests/Fixtures/clap_tiny")
        let zs = dir.appendingPathComponent("zs.onnx")
        let zeroShot = try runEarshot(["export", clap.path, "--zeroshot-labels", "dog, rain", "--prompt", "the sound of {}", "--out", zs.path])
        XCTAssertEqual(zeroShot.status, 0, zeroShot.output)
        XCTAssertTrue(zeroShot.output.contains("zero-shot CLAP classifier into 2 labels"), zeroShot.output)
        let library = try ZeroShotClassifier(clap: try CLAP.load(model: clap), labels: ["dog", "rain"], templates: ["the sound of {}"])
        XCTAssertEqual(try Data(contentsOf: zs), try library.onnx())
        // --text: the CLAP's text side, as the library writes it.
        let textOut = dir.appendingPathComponent("text.onnx")
        let textRun = try runEarshot(["export", clap.path, "--text", "--out", textOut.path])
        XCTAssertEqual(textRun.status, 0, textRun.output)
        XCTAssertTrue(textRun.output.contains("(pooler pooling)"), textRun.output)
        XCTAssertEqual(try Data(contentsOf: textOut), try CLAP.load(model: clap).textONNX())
        // An encoder without a head (the shipped SSAST-tiny): the embedding is the graph's one output.
        let encoder = dir.appendingPathComponent("encoder.onnx")
        let shipped = try runEarshot(["export", "earshot-ssast-tiny", "--out", encoder.path])
        XCTAssertEqual(shipped.status, 0, shipped.output)
        XCTAssertTrue(shipped.output.contains("an encoder (embedding 192 wide)"), shipped.output)
        let embedder = try Classifier.loadEmbedder(ShippedModels.resolve("earshot-ssast-tiny"))
        embedder.model.eval()
        XCTAssertEqual(try Data(contentsOf: encoder), try ONNXExport.model(embedder.model, classes: [], pipeline: embedder.pipeline,
                                                                           multiLabel: false, embeddingOnly: true))
        let withHead = try ONNXExport.model(embedder.model, classes: [], pipeline: embedder.pipeline, multiLabel: false)
        XCTAssertGreaterThan(withHead.count, try Data(contentsOf: encoder).count, "the logits output and its identity node are left out")
        XCTAssertFalse(String(decoding: try Data(contentsOf: encoder), as: UTF8.self).contains("mlp_head"), "and the head no output reads")
        XCTAssertTrue(String(decoding: withHead, as: UTF8.self).contains("mlp_head.1.weight"))
        // A released PANNs takes any number of frames: so does its graph.
        let panns = try runEarshot(["export", fixtures.appendingPathComponent("panns_cnn14_8k.pth").path, "--out", dir.appendingPathComponent("p.onnx").path])
        XCTAssertEqual(panns.status, 0, panns.output)
        XCTAssertTrue(panns.output.contains("input [batch, frames, 64]"), panns.output)
        XCTAssertFalse(panns.output.contains("framewise"), panns.output)
        // Read as Cnn14_DecisionLevelMax (the release's file name says which): frame-wise scores too.
        let dlmFile = dir.appendingPathComponent("Cnn14_DecisionLevelMax_8k.pth")
        try FileManager.default.createSymbolicLink(at: dlmFile, withDestinationURL: fixtures.appendingPathComponent("panns_cnn14_8k.pth"))
        let dlm = try runEarshot(["export", dlmFile.path, "--out", dir.appendingPathComponent("dlm.onnx").path])
        XCTAssertEqual(dlm.status, 0, dlm.output)
        XCTAssertTrue(dlm.output.contains("5 outputs and frame-wise scores (framewise)"), dlm.output)
        // An SSAMBA release (an encoder): its embedding, of clips of any length (the scans are Scan loops).
        let ssamba = try runEarshot(["export", fixtures.appendingPathComponent("ssamba_release.pth").path, "--out", dir.appendingPathComponent("s.onnx").path])
        XCTAssertEqual(ssamba.status, 0, ssamba.output)
        XCTAssertTrue(ssamba.output.contains("input [batch, frames, 32]"), ssamba.output)
        XCTAssertTrue(ssamba.output.contains("an encoder (embedding 24 wide)"), ssamba.output)
    }

    /// `--format hf`: a Hugging Face folder `classify` reads back to the same scores; an existing model's files are not
    /// written over, and a model HF's class cannot compute is refused with nothing written.
    func testExportWritesAHuggingFaceFolder() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures")
        let hf = fixtures.appendingPathComponent("hf_ast_release")
        let dir = try temporaryFolder("export-hf")
        let out = dir.appendingPathComponent("hf")
        let run = try runEarshot(["export", hf.path, "--format", "hf", "--out", out.path])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("config.json, model.safetensors, preprocessor_config.json, README.md (ASTForAudioClassification, 3 classes, 112 frames)"), run.output)
        let card = try String(contentsOf: out.appendingPathComponent("README.md"), encoding: .utf8)
        XCTAssertTrue(card.hasPrefix("---\nlibrary_name: transformers\npipeline_tag: audio-classification"), card)
        XCTAssertTrue(card.contains("exported by `earshot export --format hf` from `hf_ast_release`"), card)
        XCTAssertFalse(card.contains("Test result"), "a release has no run's test line")
        let (a, b) = (try Classifier.load(hf), try Classifier.load(out))
        XCTAssertEqual(a.classes, b.classes)
        XCTAssertEqual(a.pipeline, b.pipeline)
        XCTAssertEqual(a.multiLabel, b.multiLabel)
        let x = try Tensor(Array(0..<(112 * 40)).map { Float(sin(Double($0) * 0.01)) }, shape: [1, 112, 40])
        XCTAssertEqual(try a.probabilities(x).toArray(), try b.probabilities(x).toArray())
        let again = try runEarshot(["export", hf.path, "--format", "hf", "--out", out.path])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.output.contains("already holds config.json"), again.output)
        let bogus = try runEarshot(["export", hf.path, "--format", "tflite", "--out", dir.appendingPathComponent("x").path])
        XCTAssertTrue(bogus.output.contains("--format tflite: onnx or hf"), bogus.output)
        let panns = try runEarshot(["export", fixtures.appendingPathComponent("panns_cnn14_8k.pth").path, "--format", "hf", "--out", dir.appendingPathComponent("p").path])
        XCTAssertNotEqual(panns.status, 0)
        XCTAssertTrue(panns.output.contains("Hugging Face folders are written for AST classifiers"), panns.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("p").path))
    }

    /// An export from a run carries the run's test result in its model card; a README already in the folder is kept.
    func testModelCardCarriesTheRunsTestResult() throws {
        let dir = try temporaryFolder("export-card")
        let (_, manifest) = try toneManifest(in: dir)
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures")
        let run = dir.appendingPathComponent("run").path
        let ft = try runEarshot(["finetune", "--data", manifest.path, "--init-from", fixtures.appendingPathComponent("hf_ast_release").path,
                                 "--epochs", "1", "--batch-size", "4", "--out", run])
        XCTAssertEqual(ft.status, 0, ft.output)
        let out = dir.appendingPathComponent("hf")
        XCTAssertEqual(try runEarshot(["export", run, "--format", "hf", "--out", out.path]).status, 0)
        let card = try String(contentsOf: out.appendingPathComponent("README.md"), encoding: .utf8)
        XCTAssertTrue(card.contains("**Classes** (2, single-label: softmax scores): high, low"), card)
        let test = try XCTUnwrap(RunDirectory(URL(fileURLWithPath: run)).closingTestLine)
        XCTAssertTrue(card.contains(String(format: "accuracy %.3f", test["test_accuracy"] as! Double)), card)
        XCTAssertTrue(card.contains("scored once on epoch \(test["scored_once_on_epoch"] as! Int)"), card)
        // The user's own README stays.
        let mine = dir.appendingPathComponent("mine")
        try FileManager.default.createDirectory(at: mine, withIntermediateDirectories: true)
        try "my notes".write(to: mine.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try runEarshot(["export", run, "--format", "hf", "--out", mine.path]).status, 0)
        XCTAssertEqual(try String(contentsOf: mine.appendingPathComponent("README.md"), encoding: .utf8), "my notes")
    }
}
