import Foundation
import XCTest
import Audio
import Engine
@testable import Inference
@testable import Models
import NN
@testable import Training

/// Checkpoints written before `architecture`/`config` metadata existed (`ast_config`, `ssast_config`,
/// `pretrain_config`) still load: as classifiers, as embedders and as fine-tuning starts.
final class LegacyCheckpointTests: XCTestCase {
    func testCheckpointsWithTheOldMetadataStillLoad() throws {
        let dir = try temporaryFolder("legacy")
        Random.seed(2)
        let shape = ModelShape(frames: 32, outputs: 3, depth: 1)
        let classifier = try ModelRegistry.entry(named: "ssast-tiny-frame").classifier(shape)
        let config = try XCTUnwrap(classifier as? AST).config
        let pipeline = FeaturePipeline.astFbank(targetFrames: 32, mean: -5, std: 4)
        let enc = JSONEncoder()
        let old = dir.appendingPathComponent("old-classifier.safetensors")
        try classifier.save(to: old, metadata: ["ast_config": String(data: try enc.encode(config), encoding: .utf8)!,
                                                "classes": "[\"a\",\"b\",\"c\"]",
                                                "pipeline": String(data: try enc.encode(pipeline), encoding: .utf8)!,
                                                "multi_label": "false", "epoch": "3"])
        let loaded = try Classifier.load(old)
        XCTAssertEqual(loaded.classes, ["a", "b", "c"])
        XCTAssertEqual(loaded.model.architecture.family, "ast")
        classifier.eval()
        let x = Tensor.randn([2, 32, 128])
        let expected = try GradMode.noGrad { try classifier.logits(x) }.toArray()
        let got = try GradMode.noGrad { try loaded.model.logits(x) }.toArray()
        XCTAssertEqual(expected, got)

        // An old SSAST pretraining checkpoint: an embedder with the features its pretrain_config names, and a start.
        let pretrainer = try XCTUnwrap(try ModelRegistry.entry(named: "ssast-tiny-frame").pretrainer)(ModelShape(frames: 32, depth: 1))
        let ssastConfig = try XCTUnwrap(pretrainer as? SSAST).config
        let oldPre = dir.appendingPathComponent("old-pretrain.safetensors")
        try pretrainer.save(to: oldPre, metadata: ["ssast_config": String(data: try enc.encode(ssastConfig), encoding: .utf8)!,
                                                   "pretrain_config": "{\"inputTdim\": 32, \"mean\": -5, \"std\": 4, \"size\": \"tiny\", \"variant\": \"frame\"}",
                                                   "epoch": "0"])
        let embedder = try Classifier.loadEmbedder(oldPre)
        XCTAssertEqual(embedder.pipeline, FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 32, mean: -5, std: 4))
        XCTAssertEqual(embedder.classes, [])
        let start = try ModelRegistry.start(oldPre)
        XCTAssertEqual(start.modelName, "ssast-tiny-frame")
        XCTAssertEqual(start.kind, "SSAST")
        let tuned = try start.build(ModelShape(frames: 48, outputs: 2))
        XCTAssertEqual(tuned.inputFrames, 48)
        let weight = try XCTUnwrap(tuned.namedParameters().first { $0.0 == "v.blocks.0.attn.qkv.weight" }?.1)
        let original = try XCTUnwrap(pretrainer.namedParameters().first { $0.0 == "v.blocks.0.attn.qkv.weight" }?.1)
        XCTAssertEqual(weight.toArray(), original.toArray(), "the encoder's weights are copied into the classifier")
        XCTAssertThrowsError(try start.build(ModelShape(frames: 48, outputs: 2))) { XCTAssertTrue("\($0)".contains("already used"), "\($0)") }
    }
}
