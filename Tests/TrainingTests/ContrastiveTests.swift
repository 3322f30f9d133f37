import Audio
import CLAP
import Engine
import Foundation
import Models
import NN
import Text
import XCTest
@testable import Training

/// A tiny BERT text folder (config.json, model.safetensors, vocab.txt) whose vocabulary covers `words`.
func writeTinyTextFolder(_ dir: URL, words: [String], seed: UInt64 = 3) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + Array(Set(words)).sorted()
    try vocab.joined(separator: "\n").write(to: dir.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
    let json: [String: Any] = ["model_type": "bert", "vocab_size": vocab.count, "hidden_size": 16, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 80, "type_vocab_size": 2,
                               "hidden_dropout_prob": 0.0, "layer_norm_eps": 1e-12]
    try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
    Random.seed(seed)
    let model = BertModel(try BertConfig.fromHuggingFace(dir.appendingPathComponent("config.json")), pooler: true)
    // Word vectors of unit spread, so captions embed apart as a pretrained tower's do (the default
    // init's 0.02 leaves every caption at cosine 0.999 from every other).
    for (key, t) in model.namedParameters() where key.hasSuffix("word_embeddings.weight") { try t.assign(from: Tensor.randn(t.shape)) }
    try model.save(to: dir.appendingPathComponent("model.safetensors"))
    // Mean pooling, as sentence-transformers folders say (all-MiniLM-L6-v2).
    try FileManager.default.createDirectory(at: dir.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
    try #"{"pooling_mode_mean_tokens": true}"#.write(to: dir.appendingPathComponent("1_Pooling/config.json"), atomically: true, encoding: .utf8)
}

final class ContrastiveTests: XCTestCase {
    /// Four tone heights, `perClass` clips each (frequencies jittered), labels and captions.
    static let tones: [(label: String, hz: Double, caption: String)] = [
        ("low", 220, "a low hum"), ("mid", 700, "a middle beep"), ("high", 2000, "a high whistle"), ("top", 5000, "a shrill squeak")]

    func writeToneSet(_ dir: URL, perClass: Int, captions: Bool) throws -> URL {
        var rows = [captions ? "path,caption,label" : "path,label"]
        for (k, t) in Self.tones.enumerated() {
            for i in 0..<perClass {
                let name = "\(t.label)_\(i).wav"
                try writeTone(dir.appendingPathComponent(name), frequency: t.hz * (1 + 0.03 * Double(i - perClass / 2)), samples: 8000 + 400 * k)
                rows.append(captions ? "\(name),\(t.caption),\(t.label)" : "\(name),\(t.label)")
                // A second caption row for the same clip: grouped, one drawn per epoch.
                if captions && i % 2 == 0 { rows.append("\(name),\(t.label) sound,\(t.label)") }
            }
        }
        let csv = dir.appendingPathComponent("captions.csv")
        try rows.joined(separator: "\n").write(to: csv, atomically: true, encoding: .utf8)
        return csv
    }

    static var vocabulary: [String] {
        var words: [String] = []
        for t in tones { words += "\(t.caption) \(t.label) sound".split(separator: " ").map(String.init) }
        for template in KeywordCaptioner.defaultTemplates {
            words += template.replacingOccurrences(of: "{}", with: "").split(separator: " ").map(String.init)
        }
        return words
    }

    func config(text: URL) -> ContrastiveConfig {
        var c = ContrastiveConfig()
        (c.audioModel, c.depth, c.inputTdim, c.textModel, c.epochs, c.batchSize, c.lr, c.warmupSteps, c.projectionDim, c.cacheFeatures) =
            ("ssast-tiny-frame", 1, 64, text.path, 6, 8, 1e-3, 2, 16, true)
        return c
    }

    /// The tone set with captions in `dir`, a tiny text tower for its words, and a config training on both
    /// with a quarter of the clips for validation.
    func captionedToneSet(_ dir: URL, perClass: Int) throws -> (csv: URL, config: ContrastiveConfig) {
        let csv = try writeToneSet(dir, perClass: perClass, captions: true)
        let text = dir.appendingPathComponent("text")
        try writeTinyTextFolder(text, words: Self.vocabulary)
        var c = config(text: text)
        c.valFraction = 0.25
        return (csv, c)
    }

    /// The loss falls on a tiny synthetic caption set, the run exports a folder `CLAP.load` reads, and
    /// that folder embeds as the model did.
    func testLossFallsAndExportLoads() throws {
        let dir = try temporaryFolder("clap-train")
        var (csv, c) = try captionedToneSet(dir, perClass: 6)
        // Small batches, many steps: 18 training clips give 5 steps an epoch.
        (c.batchSize, c.epochs, c.lr) = (4, 15, 3e-4)
        let run = try RunDirectory(dir.appendingPathComponent("run"))
        let result = try trainContrastive(c, data: Dataset.load(csv), run: run, log: { _ in })
        let lines = run.metricsHistory(throughEpoch: c.epochs)
        XCTAssertEqual(lines.count, c.epochs)
        let losses = lines.compactMap { $0["train_loss"] as? Double }
        let recalls = lines.compactMap { $0["validation_mean_R@1"] as? Double }
        // Uniform logits give ln(4) = 1.386 in batches of 4 (also what a collapsed model reaches); the
        // captions of a batch can repeat (same tone height), so the floor is above 0.
        let message = "losses \(losses); validation mean R@1 \(recalls)"
        XCTAssertLessThan(losses.last!, 0.85 * Foundation.log(4.0), "the loss should fall below chance: " + message)
        XCTAssertLessThan(losses.last!, losses.first!, message)
        // Four tone heights: chance R@1 is about 0.25.
        XCTAssertGreaterThanOrEqual(recalls.max() ?? 0, 0.5, "validation retrieval should beat chance: " + message)
        XCTAssertGreaterThanOrEqual(result.bestEpoch, 1)

        // The exported folder: a CLAP with the run's front end, equal to the best checkpoint.
        let clap = try CLAP.load(result.exported)
        XCTAssertEqual(clap.frontEnd?.targetFrames, 64)
        let features = try clap.features(ofFile: dir.appendingPathComponent("low_0.wav")).unsqueeze(0)
        XCTAssertEqual(try clap.embed(features: features).shape, [1, 16])
        let best = try SafeTensors.read(run.best).tensors
        for (key, t) in clap.model.namedTensors() { XCTAssertEqual(t.toArray(), best[key]?.toArray(), key) }
        let (t, _) = try clap.embed(texts: ["a low hum"])
        XCTAssertEqual(t.shape, [1, 16])
        let zs = try ZeroShotClassifier(clap: clap, labels: ["low", "high"])
        XCTAssertEqual(try zs.probabilities(features: features).shape, [1, 2])
        // The run's folder names the same model (its clap/ export).
        let fromRun = try CLAP.load(model: run.url)
        XCTAssertEqual(try fromRun.embed(features: features).toArray(), try clap.embed(features: features).toArray())
    }

    /// Label-only data with keyword-to-caption, one class held out: the run scores zero-shot on it.
    func testKeywordToCaptionWithHeldOutClass() throws {
        let dir = try temporaryFolder("clap-k2c")
        let csv = try writeToneSet(dir, perClass: 4, captions: false)
        let text = dir.appendingPathComponent("text")
        try writeTinyTextFolder(text, words: Self.vocabulary)
        var c = config(text: text)
        (c.epochs, c.keywordToCaption, c.holdOutClasses, c.valFraction) = (1, true, ["top"], 0.25)
        let data = try Dataset.load(csv)
        XCTAssertThrowsError(try trainContrastive(config(text: text), data: data, run: RunDirectory(dir.appendingPathComponent("no-captions")), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("--keyword-to-caption"), "\($0)")
        }
        var bad = c
        bad.holdOutClasses = ["violin"]
        XCTAssertThrowsError(try trainContrastive(bad, data: data, run: RunDirectory(dir.appendingPathComponent("bad")), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("'violin'"), "\($0)")
        }
        let result = try trainContrastive(c, data: data, run: RunDirectory(dir.appendingPathComponent("run")), log: { _ in })
        let z = try XCTUnwrap(result.zeroShot)
        XCTAssertEqual(z["clips"], 4)
        XCTAssertEqual(z["classes"], 1)
        XCTAssertEqual(z["accuracy"], 1, "one held-out class: every clip is classified into it")
        XCTAssertEqual(result.trainClips + result.validationClips, 12)
    }

    /// A trained CLAP as P2C's teacher: each clip's zero-shot probability of its own class, equal to the
    /// zero-shot classifier's on the clip's features; unreadable clips are reported, not scored.
    func testCLAPTeacherScoresEachClipsOwnClassZeroShot() throws {
        let dir = try temporaryFolder("clap-teacher")
        var (csv, c) = try captionedToneSet(dir, perClass: 3)
        c.epochs = 1
        let result = try trainContrastive(c, data: Dataset.load(csv), run: RunDirectory(dir.appendingPathComponent("run")), log: { _ in })
        let clap = try CLAP.load(result.exported)

        try Data("not audio".utf8).write(to: dir.appendingPathComponent("broken.wav"))
        var records = try Dataset.load(csv).records
        records.append(ClipRecord(path: dir.appendingPathComponent("broken.wav").path, labels: ["low"]))
        let data = Dataset(records: records, layout: "test")
        let prompts = Dictionary(uniqueKeysWithValues: Self.tones.map { ($0.label, $0.caption) })
        let report = SkipReport()
        let scored = try PreferenceSources.clapTeacher(data, clap: clap, prompts: prompts, templates: ["{}"], report: report)
        XCTAssertEqual(report.skipped.map(\.path), [dir.appendingPathComponent("broken.wav").path])
        XCTAssertEqual(scored.count, 12, "one score per readable clip (captions grouped by path)")
        let zeroShot = try ZeroShotClassifier(clap: clap, labels: data.classes.map { prompts[$0]! }, templates: ["{}"])
        for s in scored.prefix(4) {
            let features = try clap.features(ofFile: URL(fileURLWithPath: s.record.path)).unsqueeze(0)
            let p = try zeroShot.probabilities(features: features).toArray()
            let k = try XCTUnwrap(data.classes.firstIndex(of: s.record.labels[0]))
            XCTAssertEqual(s.score, Double(p[k]), accuracy: 1e-5, s.record.path)
            XCTAssertTrue(s.score > 0 && s.score < 1)
        }
        let pairs = PreferenceSources.pairs(scored, partnersPerClip: 2, tieMargin: 0.01, seed: 0)
        XCTAssertFalse(pairs.isEmpty)
        let label = Dictionary(scored.map { ($0.record.path, $0.record.labels[0]) }, uniquingKeysWith: { a, _ in a })
        XCTAssertTrue(pairs.allSatisfy { label[$0.a] == label[$0.b] }, "pairs stay within a class")
    }

    /// Captions grouped per clip; keyword-to-caption fills only clips without one.
    func testCaptionedClipsGroupRows() throws {
        let rows = [ClipRecord(path: "/a.wav", labels: ["dog"], caption: "a dog barks"),
                    ClipRecord(path: "/a.wav", labels: ["dog"], caption: "barking"),
                    ClipRecord(path: "/b.wav", labels: ["crackling_fire", "rain"])]
        let captioner = try KeywordCaptioner(templates: ["the sound of {}"])
        let clips = try CaptionedClips(Dataset(records: rows, layout: "test"), captioner: captioner)
        XCTAssertEqual(clips.clips.map(\.path), ["/a.wav", "/b.wav"])
        XCTAssertEqual(clips.captions, [["a dog barks", "barking"], ["the sound of crackling fire and rain"]])
        XCTAssertThrowsError(try CaptionedClips(Dataset(records: rows, layout: "test"), captioner: nil))
    }

    /// R@k with relevance sets (a caption relevant to two clips), against counts made by hand.
    func testRetrievalScoresWithRelevanceSets() throws {
        // 3 clips, 2 texts; clip 0 and 1 share text 0, clip 2 has text 1.
        let a = try Tensor([1, 0, 0.8, 0.6, 0, 1], shape: [3, 2])
        let t = try Tensor([0.6, 0.8, 1, 0], shape: [2, 2])   // text 0 points at clip 1; text 1 at clip 0
        let r = try ContrastiveTask.retrievalScores(audio: a, text: t, relevant: [[0], [0], [1]])
        // audio→text top-1: clip 0 → text 1 (wrong, its text 0 at rank 1), clip 1 → text 0 (0.96 vs 0.8: right),
        // clip 2 → text 0 (wrong, rank 1).
        XCTAssertEqual(r["audio_to_text_R@1"]!, 1.0 / 3, accuracy: 1e-9)
        XCTAssertEqual(r["audio_to_text_R@5"]!, 1, accuracy: 1e-9)
        XCTAssertEqual(r["audio_to_text_mAP@10"]!, (0.5 + 1 + 0.5) / 3, accuracy: 1e-9)
        // text→audio: text 0 scores clips 0.6, 0.96, 0.8: its clips 1 and 0 rank 0 and 2 (AP (1/1 + 2/3)/2);
        // text 1 scores 1, 0.8, 0: its clip 2 ranks 2 (AP 1/3). R@1 1/2.
        XCTAssertEqual(r["text_to_audio_R@1"]!, 0.5, accuracy: 1e-9)
        XCTAssertEqual(r["text_to_audio_mAP@10"]!, ((1 + 2.0 / 3) / 2 + 1.0 / 3) / 2, accuracy: 1e-9)
        XCTAssertEqual(r["mean_R@1"]!, (1.0 / 3 + 0.5) / 2, accuracy: 1e-9)
    }

    /// Finite differences through the whole model (registry tower, mean-pooled BERT, projections,
    /// logit scale) against the tape's gradients.
    func testGradientsOfTheContrastiveLoss() throws {
        let dir = try temporaryFolder("clap-grad")
        let textFolder = dir.appendingPathComponent("text")
        try writeTinyTextFolder(textFolder, words: Self.vocabulary)
        var c = config(text: textFolder)
        c.depth = 1; c.inputTdim = 32
        Random.seed(5)
        let (tower, _, _) = try contrastiveAudioTower(c, log: { _ in })
        let text = try TextEncoder.load(textFolder, pooling: .mean)
        let model = AudioTextModel(audioTower: tower, textModel: text.model, textPooling: .mean, projectionDim: 8)
        model.eval()
        var g = RandomGenerator(seed: 1)
        let features = Tensor.randn([3, 32, 128], generator: &g)
        let tokens = text.tokenizer.encode(batch: ["a low hum", "a high whistle", "the sound of low"])
        func loss() throws -> Tensor { try model.contrastiveLoss(audio: model.audioEmbeddings(features), text: model.textEmbeddings(tokens)) }
        model.zeroGrad()
        try loss().backward()
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters())
        let probes = ["logit_scale_a", "audio_projection.linear1.weight", "text_projection.linear2.bias",
                      "text_model.encoder.layer.0.attention.self.query.weight", "audio_model.audio_encoder.v.blocks.0.mlp.fc1.weight"]
        for key in probes {
            let p = try XCTUnwrap(params[key], "no parameter \(key) in \(params.keys.sorted().prefix(8))")
            let grad = try XCTUnwrap(p.grad, "\(key) got no gradient")
            for i in stride(from: 0, to: p.count, by: max(1, p.count / 4)).prefix(4) {
                let saved = p.data[i], eps: Float = 1e-2
                p.data[i] = saved + eps; let up = try GradMode.noGrad { try loss().item() }
                p.data[i] = saved - eps; let down = try GradMode.noGrad { try loss().item() }
                p.data[i] = saved
                let numeric = (up - down) / (2 * eps), analytic = grad.data[i]
                XCTAssertLessThanOrEqual(abs(numeric - analytic), 2e-3 + 3e-2 * max(abs(numeric), abs(analytic)), "\(key)[\(i)]: \(analytic) vs \(numeric)")
            }
        }
        XCTAssertNil(params["audio_model.audio_encoder.mlp_head.1.weight"]?.grad, "the frozen head gets no gradient")
    }
}
