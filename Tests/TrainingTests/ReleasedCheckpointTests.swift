import Foundation
import XCTest
import Audio
import Engine
@testable import Models
import NN
@testable import Training
@testable import Inference

/// Released AST checkpoints as classifiers (what `earshot classify|embed|evaluate --model` load):
/// fixtures from tools/make_ast_fixtures.py, a tiny AST with strides 12 saved as a Hugging Face folder
/// (with its feature extractor's config) and as an original `.pth` named after its strides.
final class ReleasedCheckpointTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures")
    let reference = try? SafeTensors.read(fixtures.appendingPathComponent("ast_release.safetensors")).tensors
    func fx(_ key: String) throws -> Tensor { try XCTUnwrap(reference?[key], key) }

    func maxAbs(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        return a.shape == b.shape ? (0..<a.count).map { abs(a.data[$0] - b.data[$0]) }.max() ?? 0 : .infinity
    }

    /// Waveform in, logits out, against HF's ASTFeatureExtractor + ASTForAudioClassification: the
    /// folder's preprocessor config (bins, length, mean, std) and id2label reach the classifier.
    func testHuggingFaceFolderClassifiesLikeTransformers() throws {
        let clf = try Classifier.load(Self.fixtures.appendingPathComponent("hf_ast_release"), released: .init())
        XCTAssertEqual(clf.classes, ["Speech", "Dog bark", "Music, classical"])
        XCTAssertFalse(clf.multiLabel, "problem_type single_label_classification")
        XCTAssertEqual(clf.pipeline.bins, 40)
        XCTAssertEqual(clf.pipeline.targetFrames, 112)
        XCTAssertEqual(clf.pipeline.mean, -5.5)
        XCTAssertEqual(clf.pipeline.std, 3.25)
        let features = try clf.pipeline.features(try fx("wave").toArray()).unsqueeze(0)
        XCTAssertLessThanOrEqual(maxAbs(features, try fx("features")), 1e-4)
        let logits = try GradMode.noGrad { try clf.model.logits(features) }
        XCTAssertLessThanOrEqual(maxAbs(logits, try fx("logits")), 1e-4)
        // Options override what the folder says.
        var o = ReleasedCheckpointOptions()
        (o.multiLabel, o.mean) = (true, -4)
        let overridden = try Classifier.load(Self.fixtures.appendingPathComponent("hf_ast_release"), released: o)
        XCTAssertTrue(overridden.multiLabel)
        XCTAssertEqual(overridden.pipeline.mean, -4)
    }

    /// The same weights as an original `.pth`: strides from the file name, the architecture from the
    /// shapes, the clip length from the patch grid, class names from a class_labels_indices.csv.
    func testOriginalPthReadsItsShapeFromTheWeightsAndName() throws {
        var o = ReleasedCheckpointOptions()
        (o.shape.heads, o.shape.melBins, o.mean, o.std) = (4, 40, -5.5, 3.25)
        o.labels = Self.fixtures.appendingPathComponent("release_class_labels_indices.csv")
        let clf = try Classifier.load(Self.fixtures.appendingPathComponent("tiny_12_12_0.5000.pth"), released: o)
        let c = try XCTUnwrap(clf.model as? AST).config
        XCTAssertEqual([c.dim, c.depth, c.heads, c.mlpHidden, c.labelDim], [32, 2, 4, 64, 3])
        XCTAssertEqual([c.fstride, c.tstride, c.fGrid, c.tGrid], [12, 12, 3, 9])
        XCTAssertEqual(c.inputTdim, 112, "(9 - 1) x 12 + 16 frames")
        XCTAssertEqual(c.eps, 1e-6, "timm's LayerNorm, not HF's 1e-12")
        XCTAssertEqual(clf.classes, ["Speech", "Dog bark", "Music, classical"])
        XCTAssertTrue(clf.multiLabel, "AST's releases score with a sigmoid")
        let features = try clf.pipeline.features(try fx("wave").toArray()).unsqueeze(0)
        let logits = try GradMode.noGrad { try clf.model.logits(features) }
        // Against the original repository's forward (ast_models.py, timm's eps 1e-6, the head's 1e-5)
        // closely, and within 1e-4 of transformers though the eps differ (HF's 1e-12).
        XCTAssertLessThanOrEqual(maxAbs(logits, try fx("reference_logits")), 1e-5)
        XCTAssertLessThanOrEqual(maxAbs(logits, try fx("logits")), 1e-4)

        // `embed` takes the same release as a classifier (its cls-pair pooled embedding).
        let embedder = try Classifier.loadEmbedder(Self.fixtures.appendingPathComponent("tiny_12_12_0.5000.pth"), released: o)
        XCTAssertEqual(embedder.classes, clf.classes)
        XCTAssertEqual(maxAbs(try embedder.embedding(features), try clf.embedding(features)), 0)

        // Without the head count the width must be an AST size; a wrong stride cannot tile the positions.
        XCTAssertThrowsError(try Classifier.load(Self.fixtures.appendingPathComponent("tiny_12_12_0.5000.pth"), released: .init())) {
            XCTAssertTrue("\($0)".contains("--heads"), "\($0)")
        }
        var badHeads = o
        badHeads.shape.heads = 5
        XCTAssertThrowsError(try Classifier.load(Self.fixtures.appendingPathComponent("tiny_12_12_0.5000.pth"), released: badHeads)) {
            XCTAssertTrue("\($0)".contains("width 32 does not split into 5 heads"), "\($0)")
        }
        o.shape.fstride = 5
        XCTAssertThrowsError(try Classifier.load(Self.fixtures.appendingPathComponent("tiny_12_12_0.5000.pth"), released: o)) {
            XCTAssertTrue("\($0)".contains("v.pos_embed holds 29 positions"), "\($0)")
        }
    }

    func testReleaseNamesAndClassListsAndRefusals() throws {
        XCTAssertEqual(ASTRelease.stridesFromName("audioset_10_10_0.4593.pth").map { [$0.0, $0.1] }, [10, 10])
        XCTAssertEqual(ASTRelease.stridesFromName("audioset_16_16_0.4422.pth").map { [$0.0, $0.1] }, [16, 16])
        XCTAssertNil(ASTRelease.stridesFromName("ast_original.pth"))
        XCTAssertNil(ASTRelease.stridesFromName("model_2024_05.pth"))
        XCTAssertEqual(ASTRelease.statistics(URL(fileURLWithPath: "/m/speechcommands_10_10_0.9812.pth")), .speechCommands)
        XCTAssertEqual(ASTRelease.statistics(URL(fileURLWithPath: "/m/audioset_10_10_0.4593.pth")), .audioset)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-rel-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = dir.appendingPathComponent("names.txt")
        try "cat\n\ndog\n".write(to: list, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ASTFamily.readClassNames(list, count: 2), ["cat", "dog"])
        XCTAssertThrowsError(try ASTFamily.readClassNames(list, count: 3)) {
            XCTAssertTrue("\($0)".contains("2 class names for a model with 3 outputs"), "\($0)")
        }
        // An SSAST pretraining release has no head to classify with.
        XCTAssertThrowsError(try Classifier.load(Self.fixtures.appendingPathComponent("ssast_release_tiny.pth"), released: .init())) {
            XCTAssertTrue("\($0)".contains("SSAST pretraining checkpoint has no classifier head"), "\($0)")
        }
    }

    /// An SSAST release as a fine-tuning start: shape read from the weights, and the classifier's
    /// encoder gives SSAST's fine-tuning embedding (mean of the patch tokens) on the same input.
    func testSSASTReleaseInitialisesAClassifierLikeTheReference() throws {
        let url = Self.fixtures.appendingPathComponent("ssast_release_tiny.pth")
        let pre = try PretrainedEncoder.read(url)
        XCTAssertEqual(pre.source, .ssast)
        XCTAssertEqual(pre.ssastShape?.size, "tiny")
        XCTAssertEqual(pre.ssastShape?.variant, .patch)
        XCTAssertEqual([pre.config.depth, pre.config.inputFdim, pre.config.inputTdim, pre.config.fGrid, pre.config.tGrid], [1, 128, 64, 8, 4])
        let reference = try SafeTensors.read(Self.fixtures.appendingPathComponent("ssast_release.safetensors")).tensors
        var c = try XCTUnwrap(SSAST.config("tiny", variant: .patch, inputTdim: 64))
        (c.depth, c.labelDim) = (1, 4)
        let model = AST(c)
        try pre.initialise(model)
        model.eval()
        // The releasing form (what `earshot embed` and `finetune --init-from` use) copies the same encoder
        // and gives its weights up.
        var released = pre
        let same = AST(c)
        try released.initialiseReleasing(same)
        XCTAssertTrue(released.encoder.isEmpty)
        for (k, t) in model.stateDict() where k.hasPrefix("v.") { XCTAssertEqual(maxAbs(t, try XCTUnwrap(same.stateDict()[k])), 0, k) }
        let embedding = try GradMode.noGrad { try model.embed(XCTUnwrap(reference["input"])) }
        XCTAssertLessThanOrEqual(maxAbs(embedding, try XCTUnwrap(reference["embedding"])), 1e-4)

        // The same through the embedding loader `earshot embed` uses: encoder only, no classes.
        let embedder = try Classifier.loadEmbedder(url, released: .init())
        XCTAssertEqual(embedder.classes, [])
        XCTAssertEqual(embedder.pipeline.targetFrames, 64)
        let viaEmbedder = try embedder.embedding(XCTUnwrap(reference["input"]))
        XCTAssertLessThanOrEqual(maxAbs(viaEmbedder, try XCTUnwrap(reference["embedding"])), 1e-4)

        // Longer clips: positions interpolated from the 8 x 4 pretraining grid, as SSAST fine-tuning does.
        c.inputTdim = 128
        let longer = AST(c)
        try pre.initialise(longer)
        let expected = try ASTCheckpoint.adaptPositionalEmbedding(XCTUnwrap(pre.encoder["v.pos_embed"]), from: (8, 4), to: (8, 8))
        XCTAssertEqual(maxAbs(try XCTUnwrap(longer.stateDict()["v.pos_embed"]), expected), 0)
        // Another depth does not fit.
        c.depth = 2
        XCTAssertThrowsError(try pre.initialise(AST(c))) { XCTAssertTrue("\($0)".contains("does not match the classifier"), "\($0)") }
    }

    /// AST releases as starts (AST's own transfer recipe): the .pth and the Hugging Face folder of the
    /// same weights give the same encoder, with the release's strides; positions are cut to a shorter clip.
    func testASTReleasesAsFineTuningStarts() throws {
        let pth = try PretrainedEncoder.read(Self.fixtures.appendingPathComponent("tiny_12_12_0.5000.pth"),
                                             shape: ReleaseShape(heads: 4, melBins: 40))
        let hf = try PretrainedEncoder.read(Self.fixtures.appendingPathComponent("hf_ast_release"))
        for pre in [pth, hf] {
            XCTAssertEqual(pre.source, .ast)
            XCTAssertNil(pre.ssastShape)
            XCTAssertEqual([pre.config.fstride, pre.config.tstride, pre.config.fGrid, pre.config.tGrid], [12, 12, 3, 9])
        }
        // The features each was trained on, for `finetune` without --mean/--std: the folder's preprocessor
        // config, the .pth recipe's (AudioSet's unless its name says Speech Commands).
        XCTAssertEqual(hf.pipeline?.mean, -5.5)
        XCTAssertEqual(hf.pipeline?.std, 3.25)
        XCTAssertEqual(pth.pipeline?.mean, ASTInputConfig.audioset.mean)
        XCTAssertEqual(pth.pipeline?.bins, 40)
        let c = pth.classifierConfig(inputTdim: 64, labelDim: 2)
        XCTAssertEqual([c.tGrid, c.labelDim, c.inputFdim], [5, 2, 40])
        XCTAssertEqual(c.pooling, .clsPair)
        let (a, b) = (AST(c), AST(c))
        try pth.initialise(a)
        try hf.initialise(b)
        let (sa, sb) = (a.stateDict(), b.stateDict())
        for key in sa.keys where key.hasPrefix("v.") {
            XCTAssertEqual(maxAbs(try XCTUnwrap(sa[key]), try XCTUnwrap(sb[key])), 0, key)
        }
        let cut = try ASTCheckpoint.adaptPositionalEmbedding(XCTUnwrap(pth.encoder["v.pos_embed"]), from: (3, 9), to: (3, 5))
        XCTAssertEqual(maxAbs(try XCTUnwrap(sa["v.pos_embed"]), cut), 0)
    }
}
