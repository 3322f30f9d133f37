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
        XCTAssertThrowsError(try LAIONCheckpoint.convert(raw, textHeads: 2)) { XCTAssertTrue("\($0)".contains("daf_2d"), "\($0)") }
        XCTAssertThrowsError(try LAIONCheckpoint.load(clapFolder.appendingPathComponent("model.safetensors"))) { _ in }
    }
}

/// A fused LAION-CLAP `.pt` (tools/make_clap_fusion_fixtures.py with LAION's own htsat.py and
/// training/data.py: `HTSAT_Swin_Transformer(enable_fusion=True, fusion_type="aff_2d")`, keys as
/// `630k-audioset-fusion-best.pt`) loads and gives LAION's embeddings from the waveform, through LAION's
/// hook path (int16 round trip, HTK log-mel, antialiased global view, crops at the starts LAION drew).
final class LAIONFusionTests: XCTestCase {
    var pt: URL { clapFixtures.appendingPathComponent("laion_fused_tiny.pt") }
    let tokenizer = clapFixtures.appendingPathComponent("clap_fused_tiny")   // the same tiny BPE

    func testFusedLAIONCheckpointMatchesLAIONFromTheWaveform() throws {
        let fx = try SafeTensors.read(clapFixtures.appendingPathComponent("laion_fused_outputs.safetensors")).tensors
        let clap = try CLAP.load(model: pt, tokenizer: tokenizer, textHeads: 2)
        XCTAssertEqual(clap.origin, .laion)
        XCTAssertTrue(clap.isFused)
        let htsat = try XCTUnwrap(clap.model.audioTower as? HTSAT)
        let a = htsat.config
        XCTAssertEqual([a.melBins, a.specSize, a.patchSize, a.patchDim, a.window, a.affRatio], [64, 256, 8, 8, 8, 4], "read off the shapes")
        XCTAssertEqual(a.depths, [2, 2])
        let starts = try XCTUnwrap(fx["crop_starts"]).toArray().map { Int($0) }
        // The two clips: 2.5 s (repeat-padded, not longer) and 13.7 s (longer: fused), 48 kHz.
        let short = try clap.features(waveform: FusionTests.clip(seconds: 2.5, f0: 440))
        let long = try clap.features(waveform: FusionTests.clip(seconds: 13.7, f0: 1250), cropStarts: starts)
        let feats = try Tensor.stack([short, long])
        let longer = HTSAT.longerClips(feats)
        XCTAssertEqual(longer, try XCTUnwrap(fx["longer"]).toArray().map { $0 != 0 })
        let (pooled, embeds, globalOnly) = try GradMode.noGrad {
            (try htsat.embedding(feats, longer: longer), try clap.embed(features: feats),
             try clap.model.audioProjection(htsat.embedding(feats, longer: [false, false])).l2Normalized())
        }
        let every40th = try feats.slice(axis: 2, start: 0, end: 1001, step: 40)
        let melError = maxAbs(every40th, try XCTUnwrap(fx["features_every_40th_frame"]))
        let errors = [("embedding", maxAbs(pooled, try XCTUnwrap(fx["audio_embedding"]))),
                      ("audio_embeds", maxAbs(embeds, try XCTUnwrap(fx["audio_embeds"]))),
                      ("global view only", maxAbs(globalOnly, try XCTUnwrap(fx["audio_embeds_global_only"])))]
        print("fused LAION parity: mel_fusion every 40th frame \(melError) dB, " + errors.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        // LAION's torchaudio mel is float32; at a bin 76 dB below the peak of the long clip's global view it
        // is 0.06 dB from Hugging Face's float64 extractor too (same crops, same antialiased resize).
        XCTAssertLessThanOrEqual(melError, 0.1)
        // Embeddings (unit length) within 1e-4; the pooled feature (up to 1.6 here) within 1e-4 of its scale.
        let scale = max(1, try XCTUnwrap(fx["audio_embedding"]).toArray().map(abs).max()!)
        for (name, e) in errors { XCTAssertLessThanOrEqual(e, name == "embedding" ? 1e-4 * scale : 1e-4, name) }
        // Fusion and LAION's own steps matter: without the crops, or with HF's front end (no int16, plain
        // bilinear global view), the long clip's embedding moves far more than the tolerance.
        let (e, g) = (embeds.toArray(), globalOnly.toArray())
        XCTAssertGreaterThan((16..<32).map { abs(e[$0] - g[$0]) }.max()!, 1e-2)
        let hfLong = try CLAPAudio.fusedFeatures(FusionTests.clip(seconds: 13.7, f0: 1250), cropStarts: starts).features
        let hf = try clap.embed(features: Tensor.stack([short, hfLong]))
        XCTAssertGreaterThan(maxAbs(hf, try XCTUnwrap(fx["audio_embeds"])), 1e-3, "the antialiased global view is what LAION computes")
    }

    func testBadFusedLAIONFilesAreNamed() throws {
        let p = "state_dict.module.audio_branch.patch_embed."
        func fails(_ edit: (inout [String: Tensor]) -> Void, naming what: String, file: StaticString = #filePath, line: UInt = #line) throws {
            var raw = try TorchCheckpoint.read(pt)
            XCTAssertNotNil(raw[p + "mel_conv2d.weight"], "keys as LAION saves them", file: file, line: line)
            edit(&raw)
            XCTAssertThrowsError(try LAIONCheckpoint.load(state: raw, textHeads: 2), file: file, line: line) {
                XCTAssertTrue("\($0)".contains(what), "\($0)", file: file, line: line)
            }
        }
        // A missing AFF weight, an unexpected one, a wrong mel_conv2d: named as the model names them.
        try fails({ $0[p + "fusion_model.global_att.4.weight"] = nil }, naming: "missing keys: audio_model.audio_encoder.patch_embed.fusion_model.global_att.4.weight")
        try fails({ $0[p + "fusion_model.local_att.9.weight"] = Tensor.zeros([8]) }, naming: "unexpected keys: audio_model.audio_encoder.patch_embed.fusion_model.local_att.9.weight")
        try fails({ $0[p + "mel_conv2d.weight"] = Tensor.zeros([8, 1, 8, 8]) }, naming: "mel_conv2d.weight has shape [8, 1, 8, 8], expected [8, 1, 8, 24]")
        try fails({ $0[p + "fusion_model.local_att.0.weight"] = Tensor.zeros([3, 8, 1, 1]) }, naming: "local_att.0.weight has shape [3, 8, 1, 1]")
        // LAION's other fusion types.
        try fails({ $0[p + "fusion_model.local_att2.0.weight"] = Tensor.zeros([2, 8, 1, 1]) }, naming: "iaff_2d")
        try fails({ raw in for k in raw.keys where k.hasPrefix(p + "fusion_model.") { raw[k] = nil } }, naming: "daf_2d")
        try fails({ $0["state_dict.module.audio_branch.mel_conv1d.0.weight"] = Tensor.zeros([1]) }, naming: "1-d feature fusion")
        try fails({ $0[p + "mel_conv2d.weight"] = nil; $0[p + "mel_conv2d.bias"] = nil }, naming: "fusion_model without")
    }
}

extension CLAPModel {
    /// Shifts per stage, for the assertions.
    func layers() -> [[Int]] { audioEncoder.layers.map { $0.blocks.map(\.shift) } }
}
