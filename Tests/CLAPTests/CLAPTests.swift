import Foundation
import XCTest
import Audio
import Engine
import NN
import Models
import Text
@testable import CLAP

/// The whole CLAP model against transformers' `ClapModel` on the tiny random folder of
/// tools/make_clap_fixtures.py (float16 weights, the tiny byte-level BPE of the text fixtures).
final class CLAPParityTests: XCTestCase {
    func fixtureIDs(_ fx: [String: Tensor]) throws -> (ids: [Int], batch: Int, length: Int, lengths: [Int]) {
        let ids = try XCTUnwrap(fx["input_ids"]), mask = try XCTUnwrap(fx["attention_mask"])
        let (b, n) = (ids.shape[0], ids.shape[1])
        let m = mask.toArray()
        let lengths = (0..<b).map { i in (0..<n).reduce(0) { $0 + Int(m[i * n + $1]) } }
        return (ids.toArray().map { Int($0) }, b, n, lengths)
    }

    func testEmbeddingsAndLogitsMatchTransformers() throws {
        let fx = try clapOutputs()
        let clap = try CLAP.load(clapFolder)
        let model = clap.model
        XCTAssertEqual(model.projectionDim, 16)
        XCTAssertEqual(model.textConfig.layerNormEps, 1e-12, "HF CLAP's text eps, from its config")
        let (ids, b, n, lengths) = try fixtureIDs(fx)
        let (audio, text, logits) = try GradMode.noGrad {
            let a = try model.audioEmbeddings(try XCTUnwrap(fx["input_features"]))
            let t = try model.textEmbeddings(ids: ids, batch: b, length: n, lengths: lengths)
            return (a, t, try model.logits(audio: a, text: t))
        }
        let errors = [
            ("audio_embeds", maxAbs(audio, try XCTUnwrap(fx["audio_embeds"]))),
            ("text_embeds", maxAbs(text, try XCTUnwrap(fx["text_embeds"]))),
            ("logits_per_audio", maxAbs(logits.perAudio, try XCTUnwrap(fx["logits_per_audio"]))),
            ("logits_per_text", maxAbs(logits.perText, try XCTUnwrap(fx["logits_per_text"]))),
        ]
        print("CLAP parity: " + errors.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        for (name, e) in errors { XCTAssertLessThanOrEqual(e, 1e-4, name) }
        XCTAssertEqual(try model.audioLogitScale.item(), 10, accuracy: 0.01, "exp(logit_scale_a), ln 10 in float16")
        XCTAssertEqual(try model.textLogitScale.item(), 20, accuracy: 0.02, "exp(logit_scale_t), ln 20 in float16")
        for r in 0..<b { XCTAssertEqual(try text.slice(axis: 0, start: r, end: r + 1).square().sum().item(), 1, accuracy: 1e-5) }
    }

    /// The folder's tokenizer (vocab.json + merges.txt) gives the ids the reference was run on.
    func testTheFolderTokenizerGivesTheReferenceIDs() throws {
        let fx = try clapOutputs()
        let clap = try CLAP.load(clapFolder)
        XCTAssertEqual(clap.tokenizer.maxLength, 77)
        let captions = try JSONDecoder().decode([String].self, from: Data(contentsOf: clapFixtures.appendingPathComponent("clap_captions.json")))
        let batch = clap.tokenizer.encode(batch: captions)
        let (ids, _, n, lengths) = try fixtureIDs(fx)
        XCTAssertEqual(batch.length, n)
        XCTAssertEqual(batch.ids, ids)
        XCTAssertEqual(batch.lengths, lengths)
        let (embedded, truncated) = try clap.embed(texts: captions)
        XCTAssertEqual(truncated, 0)
        XCTAssertLessThanOrEqual(maxAbs(embedded, try XCTUnwrap(fx["text_embeds"])), 1e-4)
    }

    /// Waveform in: repeat-pad to the clip, Slaney log-mel (our `LogMel`), against `ClapFeatureExtractor`
    /// (rand_trunc / repeatpad at 48 kHz, 32 bins, a 1 s clip: 101 frames), then through the model.
    func testWaveformFrontEndMatchesClapFeatureExtractor() throws {
        let fx = try clapOutputs()
        let config = LogMelConfig(sampleRate: 48000, nFFT: 1024, hop: 480, nMels: 32, fMin: 50, fMax: 14000)
        let waves = [try XCTUnwrap(fx["wave0"]).toArray(), try XCTUnwrap(fx["wave1"]).toArray()]
        XCTAssertEqual(waves.map(\.count), [12000, 21600])
        let ours = try Tensor.stack(waves.map { try CLAPAudio.features($0, config: config, clipSamples: 48000) })
        let reference = try XCTUnwrap(fx["input_features"])
        XCTAssertEqual(ours.shape, reference.shape)
        let melErr = maxAbs(ours, reference)
        let model = try CLAPCheckpoint.loadHuggingFace(clapFolder)
        let (a, r) = try GradMode.noGrad { (try model.audioEmbeddings(ours), try XCTUnwrap(fx["audio_embeds"])) }
        let embErr = maxAbs(a, r)
        print("CLAP front end: log-mel max error \(melErr) dB, audio embeddings from our features \(embErr)")
        XCTAssertLessThanOrEqual(melErr, 2e-3, "dB")
        XCTAssertLessThanOrEqual(embErr, 1e-4)
    }

    func testRepeatPadAndCrop() throws {
        XCTAssertEqual(CLAPAudio.repeatPad([1, 2, 3], to: 8), [1, 2, 3, 1, 2, 3, 0, 0])
        XCTAssertEqual(CLAPAudio.repeatPad([1, 2, 3], to: 3), [1, 2, 3])
        XCTAssertEqual(CLAPAudio.int16RoundTrip([0.5, -2, 1e-6]), [Float(16383) / 32767, -1, 0])
        let config = LogMelConfig(sampleRate: 48000, nFFT: 1024, hop: 480, nMels: 32, fMin: 50, fMax: 14000)
        let long = (0..<6000).map { Float(sin(Double($0) * 0.05)) }
        let crop = try CLAPAudio.features(long, config: config, clipSamples: 4800, start: 1000)
        XCTAssertEqual(crop.shape, [11, 32])
        XCTAssertLessThanOrEqual(maxAbs(crop, try LogMel(config)(Array(long[1000..<5800]))), 0)
        XCTAssertThrowsError(try CLAPAudio.features(long, config: config, clipSamples: 4800, start: 1201))
        XCTAssertThrowsError(try CLAPAudio.features([], config: config))
    }

    func testBadFoldersAndConfigsAreNamed() throws {
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: clapFolder.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertNoThrow(try CLAPConfig.fromHuggingFace(json))
        var audio = try XCTUnwrap(json["audio_config"] as? [String: Any])
        audio["enable_fusion"] = true
        audio["fusion_type"] = "channel_map"   // fusion is the AFF block; the other fusion types are refused
        json["audio_config"] = audio
        XCTAssertThrowsError(try CLAPConfig.fromHuggingFace(json)) { XCTAssertTrue("\($0)".contains("fusion"), "\($0)") }
        XCTAssertThrowsError(try CLAPConfig.fromHuggingFace(["model_type": "roberta"])) { XCTAssertTrue("\($0)".contains("clap"), "\($0)") }
        // A tokenizer of another model (MiniLM's 30522-token WordPiece) for the 600-token text tower.
        let model = try CLAPCheckpoint.loadHuggingFace(clapFolder)
        let vocab = clapFixtures.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TextTests/Fixtures/minilm_vocab.txt")
        let wrong = try WordPieceTokenizer.load(vocabTxt: vocab)
        XCTAssertThrowsError(try CLAP(model: model, tokenizer: wrong)) { XCTAssertTrue("\($0)".contains("not from the same model"), "\($0)") }
        var state = try SafeTensors.read(clapFolder.appendingPathComponent("model.safetensors")).tensors
        state.removeValue(forKey: "logit_scale_a")
        XCTAssertThrowsError(try CLAPCheckpoint.load(state, config: model.config)) { XCTAssertTrue("\($0)".contains("logit_scale_a"), "\($0)") }
        XCTAssertThrowsError(try CLAPCheckpoint.loadHuggingFace(clapFixtures)) { XCTAssertTrue("\($0)".contains("config.json"), "\($0)") }
    }
}

/// Zero-shot classification on the tiny model: it runs, each row is a distribution, it equals the
/// computation written out by hand, and its ranking follows the logits.
final class ZeroShotTests: XCTestCase {
    func testZeroShotEqualsTheManualComputation() throws {
        let fx = try clapOutputs()
        let clap = try CLAP.load(clapFolder)
        let labels = ["dog barking", "rain", "siren", "birds"]
        let zs = try ZeroShotClassifier(clap: clap, labels: labels)
        XCTAssertEqual(ZeroShotClassifier.caption("rain", template: zs.templates[0]), "This is a sound of rain.")
        let features = try XCTUnwrap(fx["input_features"])
        let p = try zs.probabilities(features: features)
        XCTAssertEqual(p.shape, [2, 4])
        // By hand: captions → text embeddings, audio embeddings, softmax(exp(s_a) a·t).
        let (t, _) = try clap.embed(texts: labels.map { "This is a sound of \($0)." })
        let a = try clap.embed(features: features)
        let scale = try clap.model.logitScaleA.exp().item()
        let (av, tv, pv) = (a.toArray(), t.toArray(), p.toArray())
        for b in 0..<2 {
            let logits = (0..<4).map { k in (0..<16).reduce(Float(0)) { $0 + av[b * 16 + $1] * tv[k * 16 + $1] } * scale }
            let m = logits.max()!, e = logits.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
            for k in 0..<4 { XCTAssertEqual(pv[b * 4 + k], e[k] / z, accuracy: 1e-5) }
            XCTAssertEqual((0..<4).reduce(Float(0)) { $0 + pv[b * 4 + $1] }, 1, accuracy: 1e-5)
            let ranked = try zs.ranked(features: features.slice(axis: 0, start: b, end: b + 1))[0]
            XCTAssertEqual(ranked.map(\.label), labels.indices.sorted { logits[$0] > logits[$1] }.map { labels[$0] })
            XCTAssertEqual(ranked.first?.probability ?? 0, pv[b * 4 + labels.firstIndex(of: ranked[0].label)!], accuracy: 1e-6)
        }
        XCTAssertEqual(try zs.ranked(features: features, top: 2).map(\.count), [2, 2])
        // The same clip twice gives the same ranking (deterministic, eval mode).
        let again = try zs.probabilities(features: features)
        XCTAssertEqual(maxAbs(again, p), 0)
    }

    func testTemplateEnsembleAveragesUnitCaptionEmbeddings() throws {
        let clap = try CLAP.load(clapFolder)
        let templates = ["This is a sound of {label}.", "the sound of {}"]
        let zs = try ZeroShotClassifier(clap: clap, labels: ["rain", "dog"], templates: templates)
        let (t1, _) = try clap.embed(texts: ["This is a sound of rain.", "This is a sound of dog."])
        let (t2, _) = try clap.embed(texts: ["the sound of rain", "the sound of dog"])
        let expected = try GradMode.noGrad { try (t1 + t2).l2Normalized() }
        XCTAssertLessThanOrEqual(maxAbs(zs.textEmbeddings, expected), 1e-6)
    }

    func testBadLabelsAndTemplatesAreNamed() throws {
        let clap = try CLAP.load(clapFolder)
        XCTAssertThrowsError(try ZeroShotClassifier(clap: clap, labels: [])) { XCTAssertTrue("\($0)".contains("no labels"), "\($0)") }
        XCTAssertThrowsError(try ZeroShotClassifier(clap: clap, labels: ["dog", " "])) { XCTAssertTrue("\($0)".contains("label 2 is empty"), "\($0)") }
        XCTAssertThrowsError(try ZeroShotClassifier(clap: clap, labels: ["dog", "dog"])) { XCTAssertTrue("\($0)".contains("more than once"), "\($0)") }
        XCTAssertThrowsError(try ZeroShotClassifier(clap: clap, labels: ["dog"], templates: ["a sound"])) { XCTAssertTrue("\($0)".contains("{label}"), "\($0)") }
        XCTAssertThrowsError(try clap.embed(texts: [])) { XCTAssertTrue("\($0)".contains("no texts"), "\($0)") }
        // A label past the text limit is cut and counted.
        let long = String(repeating: "dog ", count: 200)
        let zs = try ZeroShotClassifier(clap: clap, labels: [long, "rain"])
        XCTAssertEqual(zs.truncatedCaptions, 1)
    }
}
