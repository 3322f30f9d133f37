import Audio
import Foundation
import XCTest
import Engine
import NN
@testable import Models

/// AST classifiers written as Hugging Face `ASTForAudioClassification` folders: the weights transformers
/// saved (tools/make_ast_fixtures.py's hf_ast_tiny) come back out key for key and value for value, the
/// config with transformers' fields, and a folder written here loads back to the same logits; what the class
/// cannot compute is refused by name, nothing written.
final class ASTHuggingFaceExportTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func json(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    func testTransformersFolderComesBackOutAsTransformersSavedIt() throws {
        let source = modelFixtures.appendingPathComponent("hf_ast_tiny")
        let loaded = try ASTFamily.huggingFace(source, ReleasedCheckpointOptions())
        let model = try XCTUnwrap(loaded.model as? AST)
        let out = root.appendingPathComponent("out")
        let written = try ASTHuggingFaceExport.save(model, classes: loaded.classes, pipeline: loaded.pipeline, multiLabel: loaded.multiLabel, to: out)
        XCTAssertEqual(written.notes, [], "HF's own folder: one eps throughout")

        let theirs = try SafeTensors.read(source.appendingPathComponent("model.safetensors"))
        let ours = try SafeTensors.read(out.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(Set(ours.tensors.keys), Set(theirs.tensors.keys))
        for (key, t) in theirs.tensors {
            let o = try XCTUnwrap(ours.tensors[key], key)
            XCTAssertEqual(o.shape, t.shape, key)
            XCTAssertEqual(o.toArray(), t.toArray(), key)
        }
        XCTAssertEqual(ours.metadata["format"], "pt", "transformers refuses safetensors without it")

        let config = try json(out.appendingPathComponent("config.json")), reference = try json(source.appendingPathComponent("config.json"))
        for key in ["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                    "layer_norm_eps", "patch_size", "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins"] {
            XCTAssertEqual(config[key] as? NSObject, reference[key] as? NSObject, key)
        }
        XCTAssertEqual(config["architectures"] as? [String], ["ASTForAudioClassification"])
        XCTAssertEqual(config["id2label"] as? [String: String], reference["id2label"] as? [String: String])
        XCTAssertEqual(config["label2id"] as? [String: Int], reference["label2id"] as? [String: Int])
    }

    func testAWrittenFolderLoadsBackToTheSameClassifier() throws {
        var c = ASTConfig(dim: 32, depth: 2, heads: 4, mlpHidden: 64, labelDim: 3)
        (c.inputTdim, c.inputFdim, c.fstride, c.tstride, c.eps, c.headEps) = (96, 64, 12, 8, 1e-6, 1e-6)
        let model = AST(c)
        model.eval()
        var fbank = KaldiFbankConfig.ast
        fbank.numMelBins = 64
        let pipeline = FeaturePipeline(kind: .kaldiFbank(fbank), targetFrames: 96, mean: -5.5, std: 3.25)
        let classes = ["dog", "rain", "siren"]
        _ = try ASTHuggingFaceExport.save(model, classes: classes, pipeline: pipeline, multiLabel: false, to: root)

        let back = try ASTFamily.huggingFace(root, ReleasedCheckpointOptions())
        XCTAssertEqual(back.classes, classes)
        XCTAssertFalse(back.multiLabel)
        XCTAssertEqual(back.pipeline, pipeline)
        let again = try XCTUnwrap(back.model as? AST)
        for field in [\ASTConfig.dim, \.depth, \.heads, \.mlpHidden, \.labelDim, \.inputTdim, \.inputFdim, \.fstride, \.tstride, \.fshape] {
            XCTAssertEqual(again.config[keyPath: field], c[keyPath: field])
        }
        var generator = RandomGenerator(seed: 3)
        let x = Tensor.randn([2, 96, 64], generator: &generator)
        let (a, b) = try GradMode.noGrad { (try model(x), try again(x)) }
        XCTAssertLessThanOrEqual(maxAbs(a, b), 1e-5)
        XCTAssertEqual(try json(root.appendingPathComponent("preprocessor_config.json"))["feature_extractor_type"] as? String, "ASTFeatureExtractor")

        // An original AST's head eps (1e-5 against the encoder's 1e-6) is said, and the logits barely move.
        var original = c
        original.headEps = 1e-5
        let second = AST(original)
        _ = try second.load(stateDict: model.stateDict())
        second.eval()
        let notes = try ASTHuggingFaceExport.save(second, classes: classes, pipeline: pipeline, multiLabel: true, to: root.appendingPathComponent("o")).notes
        XCTAssertEqual(notes.count, 1)
        XCTAssertTrue(notes[0].contains("eps"), notes[0])
        let reloaded = try ASTFamily.huggingFace(root.appendingPathComponent("o"), ReleasedCheckpointOptions())
        XCTAssertTrue(reloaded.multiLabel)
        XCTAssertLessThanOrEqual(maxAbs(try GradMode.noGrad { try second(x) }, try GradMode.noGrad { try reloaded.model.logits(x) }), 1e-4)
    }

    func testWhatHuggingFaceCannotComputeIsRefusedAndNothingWritten() throws {
        var c = ASTConfig(dim: 16, depth: 1, heads: 2, mlpHidden: 32, labelDim: 2)
        (c.inputTdim, c.inputFdim) = (32, 32)
        var fbank = KaldiFbankConfig.ast
        fbank.numMelBins = 32
        let pipeline = FeaturePipeline(kind: .kaldiFbank(fbank), targetFrames: 32, mean: 0, std: 1)
        func refused(_ model: AST, classes: [String] = ["a", "b"], pipeline p: FeaturePipeline? = nil, _ message: String) {
            let folder = root.appendingPathComponent(UUID().uuidString)
            XCTAssertThrowsError(try ASTHuggingFaceExport.save(model, classes: classes, pipeline: p ?? pipeline, multiLabel: false, to: folder)) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder.path), "nothing written")
        }
        var mean = c
        mean.pooling = .meanTokens
        refused(AST(mean), "pools the mean of its patch tokens")
        refused(AST(c), classes: ["a", "a"], "class names repeat")
        refused(AST(c), classes: ["a"], "1 class names for 2 outputs")
        refused(AST(c), pipeline: FeaturePipeline(kind: .logMel(.panns), targetFrames: 32), "log-mel")
        var dithered = fbank
        dithered.dither = 1
        refused(AST(c), pipeline: FeaturePipeline(kind: .kaldiFbank(dithered), targetFrames: 32, mean: 0, std: 1), "differ from AST's")
        XCTAssertThrowsError(try ASTHuggingFaceExport.huggingFaceState(AST(c).stateDict().merging(["v.blocks.0.adapter.down.weight": Tensor.zeros([4, 16])]) { a, _ in a })) {
            XCTAssertTrue("\($0)".contains("'v.blocks.0.adapter.down.weight' has no place"), "\($0)")
        }
    }
}
