import Foundation
import XCTest
import Engine
import NN
import Models
@testable import CLAP

/// A LAION-CLAP `.pt` (tools/make_clap_fixtures.py with LAION's own htsat.py: `{"state_dict":
/// {"module.audio_branch…"}}`, qkv fused, STFT/mel buffers, attn_mask buffers, the AudioSet head, the
/// MLP transforms and an old `position_ids` buffer) loads, and gives LAION's embeddings.
final class LAIONCheckpointTests: XCTestCase {
    var pt: URL { clapFixtures.appendingPathComponent("laion_tiny.pt") }

    func testLAIONCheckpointMatchesLAIONsHTSATAndEmbeddings() throws {
        let fx = try clapOutputs()
        let expected = try SafeTensors.read(clapFixtures.appendingPathComponent("laion_outputs.safetensors")).tensors
        let model = try LAIONCheckpoint.load(pt, textHeads: 2)
        let a = model.config.audio
        XCTAssertEqual([a.melBins, a.specSize, a.patchSize, a.patchDim, a.window], [32, 128, 8, 8, 4], "read off the shapes")
        XCTAssertEqual(a.depths, [2, 2]); XCTAssertEqual(a.heads, [2, 2]); XCTAssertEqual(a.mlpRatio, 2)
        XCTAssertEqual(model.config.text.layers, 1); XCTAssertEqual(model.config.text.layerNormEps, 1e-5)
        XCTAssertEqual(model.layers(), [[0, 2], [0, 2]])
        let m = try clapOutputs()["input_ids"]!, mask = try XCTUnwrap(fx["attention_mask"]).toArray()
        let n = m.shape[1]
        let lengths = (0..<3).map { i in (0..<n).reduce(0) { $0 + Int(mask[i * n + $1]) } }
        let features = try XCTUnwrap(fx["input_features"])
        let (pooled, audio, text) = try GradMode.noGrad {
            (try model.audioEncoder.embedding(features), try model.audioEmbeddings(features),
             try model.textEmbeddings(ids: m.toArray().map { Int($0) }, batch: 3, length: n, lengths: lengths))
        }
        let errors = [("embedding", maxAbs(pooled, try XCTUnwrap(expected["audio_embedding"]))),
                      ("audio", maxAbs(audio, try XCTUnwrap(expected["audio_embeds"]))),
                      ("text", maxAbs(text, try XCTUnwrap(expected["text_embeds"])))]
        print("LAION parity: " + errors.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        for (name, e) in errors { XCTAssertLessThanOrEqual(e, 1e-4, name) }
        XCTAssertEqual(try model.audioLogitScale.item(), 10, accuracy: 0.01)
    }

    func testBadLAIONFilesAreNamed() throws {
        var raw = try TorchCheckpoint.read(pt)
        XCTAssertThrowsError(try LAIONCheckpoint.convert(raw)) { XCTAssertTrue("\($0)".contains("textHeads"), "\($0)") }
        let key = try XCTUnwrap(raw.keys.first { $0.hasSuffix("layers.1.blocks.1.attn_mask") })
        let mask = try XCTUnwrap(raw[key]).copy()
        mask.data[1] = mask.data[1] == 0 ? -100 : 0
        raw[key] = mask
        XCTAssertThrowsError(try LAIONCheckpoint.convert(raw, textHeads: 2)) { XCTAssertTrue("\($0)".contains("shifted-window mask"), "\($0)") }
        raw = try TorchCheckpoint.read(pt)
        raw["state_dict.module.audio_branch.patch_embed.mel_conv2d.weight"] = Tensor.zeros([1])
        XCTAssertThrowsError(try LAIONCheckpoint.convert(raw, textHeads: 2)) { XCTAssertTrue("\($0)".contains("fused"), "\($0)") }
        XCTAssertThrowsError(try LAIONCheckpoint.load(clapFolder.appendingPathComponent("model.safetensors"))) { _ in }
    }
}

extension CLAPModel {
    /// Shifts per stage, for the assertions.
    func layers() -> [[Int]] { audioEncoder.layers.map { $0.blocks.map(\.shift) } }
}
