import Foundation
import XCTest
import Engine
import NN
@testable import CLAP

/// The contrastive loss: Hugging Face's `return_loss=True` value (text-major twice, its quirk), LAION's
/// symmetric one-scale loss written out by hand, and gradients that reach both towers and the scales.
final class ContrastiveLossTests: XCTestCase {
    func inputs(_ fx: [String: Tensor]) throws -> (features: Tensor, ids: [Int], length: Int, lengths: [Int]) {
        let ids = try XCTUnwrap(fx["input_ids"]), mask = try XCTUnwrap(fx["attention_mask"])
        let n = ids.shape[1]
        let firstTwo = Array(ids.toArray().prefix(2 * n)).map { Int($0) }
        let m = mask.toArray()
        let lengths = (0..<2).map { i in (0..<n).reduce(0) { $0 + Int(m[i * n + $1]) } }
        return (try XCTUnwrap(fx["input_features"]), firstTwo, n, lengths)
    }

    func testLossMatchesTransformersAndLAIONVariant() throws {
        let fx = try clapOutputs()
        let model = try CLAPCheckpoint.loadHuggingFace(clapFolder)
        let (features, ids, n, lengths) = try inputs(fx)
        let (a, t) = try GradMode.noGrad {
            (try model.audioEmbeddings(features), try model.textEmbeddings(ids: ids, batch: 2, length: n, lengths: lengths))
        }
        let expected = try XCTUnwrap(fx["loss_first_two_captions"]).toArray()[0]
        let hf = try GradMode.noGrad { try model.contrastiveLoss(audio: a, text: t, .huggingFace) }
        print("CLAP contrastive loss (HF return_loss): \(try hf.item()) vs transformers \(expected)")
        XCTAssertEqual(try hf.item(), expected, accuracy: 1e-5)
        // LAION: exp(s_a) both ways, by hand.
        let sa = try model.audioLogitScale.item()
        let (av, tv) = (a.toArray(), t.toArray())
        func dot(_ i: Int, _ j: Int) -> Float { (0..<16).reduce(0) { $0 + av[i * 16 + $1] * tv[j * 16 + $1] } }
        func ce(_ logits: [[Float]]) -> Float {
            logits.enumerated().map { i, row in
                let m = row.max()!
                return -(row[i] - m - Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +)))
            }.reduce(0, +) / Float(logits.count)
        }
        let perAudio = (0..<2).map { i in (0..<2).map { j in sa * dot(i, j) } }
        let perText = (0..<2).map { i in (0..<2).map { j in sa * dot(j, i) } }
        let laion = try GradMode.noGrad { try model.contrastiveLoss(audio: a, text: t) }
        XCTAssertEqual(try laion.item(), (ce(perAudio) + ce(perText)) / 2, accuracy: 1e-5)
        XCTAssertNotEqual(try laion.item(), try hf.item(), accuracy: 1e-3, "different losses on this batch")
        XCTAssertThrowsError(try model.contrastiveLoss(audio: a, text: try t.slice(axis: 0, start: 0, end: 1)))
    }

    func testLossTrainsBothTowersAndTheScales() throws {
        let fx = try clapOutputs()
        let model = try CLAPCheckpoint.loadHuggingFace(clapFolder)
        model.train()
        model.unfreeze()
        let (features, ids, n, lengths) = try inputs(fx)
        let loss = try model.contrastiveLoss(audio: model.audioEmbeddings(features),
                                             text: model.textEmbeddings(ids: ids, batch: 2, length: n, lengths: lengths))
        try loss.backward()
        for key in ["audio_model.audio_encoder.layers.0.blocks.1.attention.self.relative_position_bias_table",
                    "audio_model.audio_encoder.patch_embed.proj.weight", "audio_projection.linear2.weight",
                    "text_model.embeddings.word_embeddings.weight", "text_projection.linear1.weight", "logit_scale_a"] {
            let p = try XCTUnwrap(model.namedParameters().first { $0.0 == key }?.1, key)
            let g = try XCTUnwrap(p.grad, key).toArray()
            XCTAssertTrue(g.allSatisfy(\.isFinite), key)
            XCTAssertGreaterThan(g.map(abs).max() ?? 0, 0, key)
        }
        // LAION's loss uses exp(s_a) only; Hugging Face's also exp(s_t).
        XCTAssertNil(model.logitScaleT.grad, "s_t is not in LAION's loss")
        model.zeroGrad()
        let hf = try model.contrastiveLoss(audio: model.audioEmbeddings(features),
                                           text: model.textEmbeddings(ids: ids, batch: 2, length: n, lengths: lengths), .huggingFace)
        try hf.backward()
        XCTAssertNotEqual(try XCTUnwrap(model.logitScaleT.grad).toArray()[0], 0)
    }
}
