import Foundation
import XCTest
import Audio
import Engine
@testable import Inference
@testable import Models
import NN
import CLAP

/// A checkpoint whose metadata was damaged or edited loads as an error naming the file and the key, never
/// as a crash or as scores that are silently wrong (class names shifted onto other outputs, NaN from a
/// std of 0, an allocation for a clip length whose digits were corrupted).
final class DamagedCheckpointTests: XCTestCase {
    func testDamagedMetadataIsANamedError() throws {
        let dir = try temporaryFolder("damaged")
        Random.seed(3)
        let classifier = try ModelRegistry.entry(named: "ast-tiny").classifier(ModelShape(frames: 32, outputs: 3, depth: 1))
        let pipeline = FeaturePipeline.astFbank(targetFrames: 32, mean: -5, std: 4)
        let good: [String: String] = classifier.architecture.metadata.merging([
            "classes": "[\"a\",\"b\",\"c\"]", "multi_label": "false",
            "pipeline": String(data: try JSONEncoder().encode(pipeline), encoding: .utf8)!,
        ]) { $1 }
        func write(_ name: String, _ edit: (inout [String: String]) throws -> Void) throws -> URL {
            var metadata = good
            try edit(&metadata)
            let url = dir.appendingPathComponent("\(name).safetensors")
            try classifier.save(to: url, metadata: metadata)
            return url
        }
        func expect(_ name: String, _ fragment: String, line: UInt = #line, _ edit: (inout [String: String]) throws -> Void) throws {
            let url = try write(name, edit)
            XCTAssertThrowsError(try Classifier.load(url), line: line) { error in
                XCTAssertTrue("\(error)".contains("\(name).safetensors"), "names the file: \(error)", line: line)
                XCTAssertTrue("\(error)".contains(fragment), "expected '\(fragment)' in: \(error)", line: line)
            }
        }
        func editConfig(_ m: inout [String: String], _ key: String, _ value: Any) throws {
            var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(m["config"]!.utf8)) as? [String: Any])
            config[key] = value
            m["config"] = String(data: try JSONSerialization.data(withJSONObject: config), encoding: .utf8)!
        }
        func editPipeline(_ m: inout [String: String], _ edit: (inout FeaturePipeline) -> Void) throws {
            var p = pipeline
            edit(&p)
            m["pipeline"] = String(data: try JSONEncoder().encode(p), encoding: .utf8)!
        }

        let loaded = try Classifier.load(try write("good") { _ in })
        XCTAssertEqual(loaded.classes, ["a", "b", "c"])

        try expect("two-names", "metadata 'classes' names 2 classes but the model has 3 outputs") { $0["classes"] = "[\"a\",\"b\"]" }
        try expect("classes-not-json", "metadata 'classes' is not a JSON list") { $0["classes"] = "a,b,c" }
        try expect("pipeline-not-json", "metadata 'pipeline' is not a feature pipeline") { $0["pipeline"] = "{oops" }
        try expect("std-zero", "std 0.0 must be positive") { try editPipeline(&$0) { $0.std = 0 } }
        try expect("std-negative", "std -4.0 must be positive") { try editPipeline(&$0) { $0.std = -4 } }
        try expect("no-frames", "target length 0 frames") { try editPipeline(&$0) { $0.targetFrames = 0 } }
        // Beyond any allocation: refused from the config alone, before a tensor is made.
        try expect("absurd-length", "the positional table of 12 x 99999999999999 x 192 is beyond any model's size") {
            try editConfig(&$0, "inputTdim", 1_000_000_000_000_000)
        }
        // Within reach (120k patches, 92 MB of positions, in pages no one touches): built, then the
        // checkpoint's own positional table disagrees with it.
        try expect("long-length", "'v.pos_embed' has shape [1, 26, 192] in the checkpoint but [1, 119990, 192]") {
            try editConfig(&$0, "inputTdim", 100_000)
        }
    }

    /// A model whose outputs are NaN (weights a diverged run left) is scored as wrong on every clip,
    /// and the evaluation ends: the largest score of a NaN row was class 0, counted right for class-0 clips.
    func testNaNScoresCountAsWrongAndEvaluationEnds() throws {
        let dir = try temporaryFolder("nan-scores")
        Random.seed(4)
        let model = try ModelRegistry.entry(named: "ast-tiny").classifier(ModelShape(frames: 32, outputs: 2, depth: 1))
        let bias = try XCTUnwrap(model.namedParameters().first { $0.0.hasSuffix("bias") && model.isHead($0.0) }?.1)
        for i in 0..<bias.count { bias.data[i] = .nan }
        model.eval()
        let classifier = Classifier(model: model, classes: ["a", "b"], pipeline: .astFbank(targetFrames: 32, mean: -5, std: 4), multiLabel: false)
        var records: [ClipRecord] = []
        for i in 0..<4 {
            let url = dir.appendingPathComponent("\(i).wav")
            try writeTone(url, frequency: 300 + 200 * Double(i), samples: 8000)
            records.append(ClipRecord(path: url.path, labels: [i % 2 == 0 ? "a" : "b"]))
        }
        let (result, _) = try evaluate(classifier, on: Dataset(records: records, layout: "tones"))
        XCTAssertEqual(result.clips, 4)
        XCTAssertEqual(result.accuracy, 0)
    }

    /// A path that is not there, or an audio file given where the model belongs (arguments swapped), is
    /// named as such: the WAV was reported as a safetensors header claiming 137594751306066 bytes.
    func testMissingPathsAndAudioGivenAsAModelAreNamed() throws {
        let dir = try temporaryFolder("not-a-model")
        let wav = dir.appendingPathComponent("clip.wav")
        try writeTone(wav, frequency: 440, samples: 4000)
        XCTAssertThrowsError(try Classifier.load(wav)) { XCTAssertTrue("\($0)".contains("clip.wav: a WAV audio file, not a model"), "\($0)") }
        let flac = dir.appendingPathComponent("clip.flac")
        try AudioFile.write([[Float](repeating: 0.1, count: 4000)], sampleRate: 16000, to: flac, encoding: .flac)
        XCTAssertThrowsError(try Classifier.loadEmbedder(flac)) { XCTAssertTrue("\($0)".contains("a FLAC audio file, not a model"), "\($0)") }
        let missing = dir.appendingPathComponent("no-such-run")
        XCTAssertThrowsError(try Classifier.load(missing)) { XCTAssertTrue("\($0)".contains("no-such-run: no such file or folder"), "\($0)") }
    }

    /// One family's model given where another's belongs: a ClapModel folder as a fine-tuning start read as
    /// an AST folder missing 'num_attention_heads'; a classifier's run folder given to zeroshot read as a
    /// ClapModel config without model_type. Each is named for what it is.
    func testAnotherFamilysModelIsNamedForWhatItIs() throws {
        let clapFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("CLAPTests/Fixtures/clap_tiny")
        XCTAssertThrowsError(try ASTConfig.fromHuggingFace(clapFolder.appendingPathComponent("config.json"))) {
            XCTAssertTrue("\($0)".contains("model_type 'clap' is not an Audio Spectrogram Transformer"), "\($0)")
        }
        let run = try temporaryFolder("classifier-run")
        let classifier = try ModelRegistry.entry(named: "ast-tiny").classifier(ModelShape(frames: 32, outputs: 2, depth: 1))
        try classifier.save(to: run.appendingPathComponent("best.safetensors"), metadata: classifier.architecture.metadata)
        try Data("{}".utf8).write(to: run.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try CLAP.load(model: run)) {
            XCTAssertTrue("\($0)".contains("an Earshot run folder with no exported CLAP in clap/"), "\($0)")
        }
    }
}
