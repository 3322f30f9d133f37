import Foundation
import XCTest
import Audio
import Engine
import Inference
import Text
@testable import CLAP

/// What the command line runs: loading a CLAP from a folder or a .pt, its model hash, embedding files
/// (skipping unreadable ones), zero-shot over files, the index of a tiny CLAP, and retrieval evaluation
/// of a caption manifest, each against the computation written out with the library's own pieces.
final class CLAPFilesTests: XCTestCase {
    func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-clapfiles-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func tone(_ hz: Double, seconds: Double, rate: Int = 48000) -> [Float] {
        (0..<Int(seconds * Double(rate))).map { Float(0.3 * sin(2 * Double.pi * hz * Double($0) / Double(rate))) }
    }

    func dot(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    func testLoadingFoldersAndPtFilesAndTheModelHash() throws {
        let folder = try CLAP.load(model: clapFolder)
        XCTAssertEqual(folder.clipSamples, 511 * 480, "the tiny HTSAT reads 512 frames")
        XCTAssertEqual(folder.melConfig.nMels, 32)
        let hash = folder.modelHash()
        XCTAssertEqual(hash.count, 16)
        XCTAssertEqual(try CLAP.load(model: clapFolder).modelHash(), hash, "the same weights hash the same")
        // LAION's tiny .pt with the folder's tokenizer: another model, another hash.
        let pt = clapFixtures.appendingPathComponent("laion_tiny.pt")
        let laion = try CLAP.load(model: pt, tokenizer: clapFolder, textHeads: 2)
        XCTAssertNotEqual(laion.modelHash(), hash)
        // One weight changed changes the hash.
        let changed = try CLAP.load(model: clapFolder)
        changed.model.logitScaleA.data[0] += 1e-3
        XCTAssertNotEqual(changed.modelHash(), hash)
        // A .pt has no tokenizer of its own: without --tokenizer the folder beside it has none.
        let lonely = try temporaryFolder().appendingPathComponent("model.pt")
        try FileManager.default.copyItem(at: pt, to: lonely)
        XCTAssertThrowsError(try CLAP.load(model: lonely, textHeads: 2)) { XCTAssertTrue("\($0)".contains("--tokenizer"), "\($0)") }
        XCTAssertThrowsError(try CLAP.load(model: clapFolder.appendingPathComponent("missing"))) { XCTAssertTrue("\($0)".contains("no such model"), "\($0)") }
        // A tokenizer whose vocabulary the text tower does not have (MiniLM's 30,522 WordPieces).
        let foreign = try temporaryFolder()
        try FileManager.default.copyItem(at: clapFixtures.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TextTests/Fixtures/minilm_vocab.txt"), to: foreign.appendingPathComponent("vocab.txt"))
        XCTAssertThrowsError(try CLAP.load(model: clapFolder, tokenizer: foreign)) {
            XCTAssertTrue("\($0)".contains("not from the same model"), "\($0)")
        }
    }

    func testClipStarts() {
        XCTAssertEqual(CLAPFileEmbedder.clipStarts(samples: 50, clip: 100), [0])
        XCTAssertEqual(CLAPFileEmbedder.clipStarts(samples: 100, clip: 100), [0])
        XCTAssertEqual(CLAPFileEmbedder.clipStarts(samples: 230, clip: 100), [0, 50, 100, 130])
        XCTAssertEqual(CLAPFileEmbedder.clipStarts(samples: 200, clip: 100), [0, 50, 100])
    }

    func testFileEmbeddingsSkipUnreadableFilesAndAverageLongOnes() throws {
        let clap = try CLAP.load(model: clapFolder)
        let embedder = CLAPFileEmbedder(clap: clap)
        let dir = try temporaryFolder()
        let short = tone(440, seconds: 0.3), long = tone(660, seconds: 8)   // 8 s: more than the 5.1 s clip
        try AudioFile.writeWAV(short, sampleRate: 48000, to: dir.appendingPathComponent("a.wav"), float: true)
        try AudioFile.writeWAV(long, sampleRate: 48000, to: dir.appendingPathComponent("b.wav"), float: true)
        try AudioFile.writeWAV(tone(300, seconds: 0.5, rate: 16000), sampleRate: 16000, to: dir.appendingPathComponent("c.wav"))
        try Data("not audio".utf8).write(to: dir.appendingPathComponent("broken.wav"))
        let files = ["a.wav", "broken.wav", "b.wav", "c.wav", "absent.wav"].map { dir.appendingPathComponent($0).path }
        let out = try embedder.embed(files: files)
        XCTAssertEqual(out.paths, [files[0], files[2], files[3]])
        XCTAssertEqual(out.skipped.map(\.path), [files[1], files[4]])
        XCTAssertEqual(out.embeddings.count, 3 * 16)
        for r in 0..<3 { XCTAssertEqual(dot(out.embeddings[(r * 16)..<(r * 16 + 16)], out.embeddings[(r * 16)..<(r * 16 + 16)]), 1, accuracy: 1e-5) }
        // The short clip: repeat-padded features through the model.
        let a = try clap.embed(features: CLAPAudio.features(short, config: clap.melConfig, clipSamples: clap.clipSamples).unsqueeze(0)).toArray()
        for j in 0..<16 { XCTAssertEqual(out.embeddings[j], a[j], accuracy: 1e-5) }
        // The long one: the renormalised mean of its windows' embeddings.
        let starts = CLAPFileEmbedder.clipStarts(samples: long.count, clip: clap.clipSamples)
        XCTAssertEqual(starts.count, 3)
        var mean = [Float](repeating: 0, count: 16)
        for s in starts {
            let e = try clap.embed(features: CLAPAudio.features(long, config: clap.melConfig, clipSamples: clap.clipSamples, start: s).unsqueeze(0)).toArray()
            for j in 0..<16 { mean[j] += e[j] }
        }
        let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
        for j in 0..<16 { XCTAssertEqual(out.embeddings[16 + j], mean[j] / norm, accuracy: 1e-5) }
    }

    /// A long file is streamed and embedded a few clips at a time: the same embedding as its whole
    /// waveform's clips at once, for a 48 kHz file and a 22.05 kHz stereo one (resampled as it streams),
    /// whatever the batch size.
    func testLongFilesStreamedInBatchesEmbedAsTheirWholeWaveform() throws {
        let clap = try CLAP.load(model: clapFolder)
        let dir = try temporaryFolder()
        for (rate, channels) in [(48000, 1), (22050, 2)] {
            let wave = zip(tone(523, seconds: 21.3, rate: rate), tone(97, seconds: 21.3, rate: rate)).map { $0 + 0.5 * $1 }
            let file = dir.appendingPathComponent("long\(rate).wav")
            try AudioFile.write(Array(repeating: wave, count: channels), sampleRate: rate, to: file, encoding: .wavFloat)
            let whole = try Resampler.resample(AudioFile.read(file).mono, from: rate, to: 48000)
            XCTAssertEqual(CLAPFileEmbedder.clipStarts(samples: whole.count, clip: clap.clipSamples).count, 8)
            var oneBatch = CLAPFileEmbedder(clap: clap)
            oneBatch.batchSize = 100
            let expected = try oneBatch.embed(waveform: whole)
            for batch in [1, 3, 8] {
                var embedder = CLAPFileEmbedder(clap: clap)
                embedder.batchSize = batch
                let got = try embedder.embed(file: file.path)
                XCTAssertEqual(got.count, 16)
                XCTAssertLessThan(zip(got, expected).map { abs($0 - $1) }.max()!, 2e-5, "\(rate) Hz, batches of \(batch)")
            }
        }
    }

    /// Clips of consecutive files share batches, whatever the batch size each file's embedding is its own;
    /// a file that fails after some of its clips were batched (NaN samples 7 s in) is skipped.
    func testFilesShareBatchesAndAFileFailingMidwayIsSkipped() throws {
        let clap = try CLAP.load(model: clapFolder)
        let dir = try temporaryFolder()
        var bad = tone(300, seconds: 9)
        bad[7 * 48000] = .nan
        let waves = [tone(440, seconds: 0.7), tone(550, seconds: 12), bad, tone(660, seconds: 2), tone(770, seconds: 6)]
        let files = try waves.enumerated().map { i, w in
            let url = dir.appendingPathComponent("f\(i).wav")
            try AudioFile.writeWAV(w, sampleRate: 48000, to: url, float: true)
            return url.path
        }
        for batch in [1, 3, 8] {
            var embedder = CLAPFileEmbedder(clap: clap)
            embedder.batchSize = batch
            let out = try embedder.embed(files: files)
            XCTAssertEqual(out.paths, [files[0], files[1], files[3], files[4]], "batches of \(batch)")
            XCTAssertEqual(out.skipped.map(\.path), [files[2]])
            XCTAssertTrue(out.skipped[0].reason.contains("NaN"), out.skipped[0].reason)
            for (r, i) in [0, 1, 3, 4].enumerated() {
                let alone = try CLAPFileEmbedder(clap: clap).embed(waveform: waves[i])
                let got = Array(out.embeddings[(r * 16)..<(r * 16 + 16)])
                XCTAssertLessThan(zip(got, alone).map { abs($0 - $1) }.max()!, 2e-5, "file \(i), batches of \(batch)")
            }
        }
    }

    func testZeroShotOverFilesEqualsTheFeaturePath() throws {
        let clap = try CLAP.load(model: clapFolder)
        let dir = try temporaryFolder()
        let wave = tone(880, seconds: 0.4)
        let file = dir.appendingPathComponent("x.wav")
        try AudioFile.writeWAV(wave, sampleRate: 48000, to: file, float: true)
        let labels = ZeroShotClassifier.labels(list: " dog, rain ,siren")
        XCTAssertEqual(labels, ["dog", "rain", "siren"])
        XCTAssertEqual(ZeroShotClassifier.labels(list: ""), [])
        XCTAssertThrowsError(try ZeroShotClassifier(clap: clap, labels: ZeroShotClassifier.labels(list: "dog,,rain"))) {
            XCTAssertTrue("\($0)".contains("label 2 is empty"), "\($0)")
        }
        let labelsFile = dir.appendingPathComponent("labels.txt")
        try "# classes\ndog, barking\n\nrain\n".write(to: labelsFile, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ZeroShotClassifier.labels(file: labelsFile), ["dog, barking", "rain"])
        try "\n# none\n".write(to: labelsFile, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ZeroShotClassifier.labels(file: labelsFile)) { XCTAssertTrue("\($0)".contains("no labels"), "\($0)") }

        let zs = try ZeroShotClassifier(clap: clap, labels: labels, templates: ["the sound of {}", "{label}"])
        let embedded = try CLAPFileEmbedder(clap: clap).embed(files: [file.path])
        let got = try zs.ranked(audioEmbeddings: embedded.embeddings, top: 2)
        let features = try CLAPAudio.features(wave, config: clap.melConfig, clipSamples: clap.clipSamples).unsqueeze(0)
        let expected = try zs.ranked(features: features, top: 2)
        XCTAssertEqual(got[0].map(\.label), expected[0].map(\.label))
        for (g, e) in zip(got[0], expected[0]) { XCTAssertEqual(g.probability, e.probability, accuracy: 1e-5) }
    }

    /// Index of three clips by the tiny CLAP: a text query's scores are the cosine similarities, and a
    /// query embedded by LAION's tiny model is refused.
    func testIndexOfClipsSearchedByTextAndByExample() throws {
        let clap = try CLAP.load(model: clapFolder)
        let dir = try temporaryFolder()
        let files = [220.0, 1000, 4000].enumerated().map { i, hz -> String in
            let url = dir.appendingPathComponent("clip\(i).wav")
            try? AudioFile.writeWAV(tone(hz, seconds: 0.3 + 0.1 * Double(i)), sampleRate: 48000, to: url, float: true)
            return url.path
        }
        let embedded = try CLAPFileEmbedder(clap: clap).embed(files: files)
        let hash = clap.modelHash()
        let index = try EmbeddingIndex(dim: 16, modelHash: hash, model: clapFolder.path)
        try index.add(paths: embedded.paths, embeddings: embedded.embeddings, modelHash: hash)
        try index.save(to: dir.appendingPathComponent("idx"))
        let loaded = try EmbeddingIndex.load(dir.appendingPathComponent("idx"))
        let (t, _) = try clap.embed(texts: ["a dog barking"])
        let q = t.toArray()
        let hits = try loaded.search(queries: q, modelHash: hash, top: 3)[0]
        let cosines = (0..<3).map { dot(embedded.embeddings[($0 * 16)..<($0 * 16 + 16)], q[0..<16]) }
        XCTAssertEqual(hits.map(\.path), (0..<3).sorted { cosines[$0] > cosines[$1] }.map { files[$0] })
        for h in hits { XCTAssertEqual(h.score, cosines[files.firstIndex(of: h.path)!], accuracy: 1e-5) }
        // By example: a clip finds itself first, at cosine 1.
        let me = try loaded.search(queries: CLAPFileEmbedder(clap: clap).embed(file: files[1]), modelHash: hash, top: 1)[0]
        XCTAssertEqual(me.first?.path, files[1]); XCTAssertEqual(me.first?.score ?? 0, 1, accuracy: 1e-5)
        let laion = try CLAP.load(model: clapFixtures.appendingPathComponent("laion_tiny.pt"), tokenizer: clapFolder, textHeads: 2)
        let (lt, _) = try laion.embed(texts: ["a dog barking"])
        XCTAssertThrowsError(try loaded.search(queries: lt.toArray(), modelHash: laion.modelHash(), top: 1)) {
            guard case .modelMismatch? = $0 as? EmbeddingIndexError else { return XCTFail("\($0)") }
        }
    }

    /// Retrieval evaluation of a caption CSV (two captions for one clip, an unreadable clip) equals
    /// `RetrievalMetrics` on the similarities computed here.
    func testRetrievalEvaluationOfACaptionManifest() throws {
        let clap = try CLAP.load(model: clapFolder)
        let dir = try temporaryFolder()
        for (i, hz) in [300.0, 1200, 5000].enumerated() {
            try AudioFile.writeWAV(tone(hz, seconds: 0.5), sampleRate: 48000, to: dir.appendingPathComponent("s\(i).wav"), float: true)
        }
        let csv = """
        file,caption
        s0.wav,a low hum
        s1.wav,a whistle
        s0.wav,"a deep, steady tone"
        gone.wav,nothing here
        s2.wav,a high beep
        """
        try csv.write(to: dir.appendingPathComponent("captions.csv"), atomically: true, encoding: .utf8)
        let data = try Dataset.load(dir.appendingPathComponent("captions.csv"))
        let report = try CLAPRetrieval.evaluate(clap, on: data)
        XCTAssertEqual(report.clips, 3); XCTAssertEqual(report.captions, 4)
        XCTAssertEqual(report.skipped.map { URL(fileURLWithPath: $0.path).lastPathComponent }, ["gone.wav"])
        let clips = ["s0.wav", "s1.wav", "s2.wav"].map { dir.appendingPathComponent($0).path }
        let audio = try CLAPFileEmbedder(clap: clap).embed(files: clips).embeddings
        let (text, _) = try clap.embed(texts: ["a low hum", "a whistle", "a deep, steady tone", "a high beep"])
        let tv = text.toArray()
        var sim: [Float] = []
        for a in 0..<3 { for t in 0..<4 { sim.append(dot(audio[(a * 16)..<(a * 16 + 16)], tv[(t * 16)..<(t * 16 + 16)])) } }
        let (a2t, t2a) = try RetrievalMetrics.evaluate(similarity: sim, clips: 3, captionClips: [0, 1, 0, 2])
        XCTAssertEqual(report.audioToText, a2t); XCTAssertEqual(report.textToAudio, t2a)
        XCTAssertEqual(report.textToAudio.queries, 4); XCTAssertEqual(report.audioToText.queries, 3)
        // A row without a caption is named.
        try "file,caption\ns0.wav,\n".write(to: dir.appendingPathComponent("bad.csv"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLAPRetrieval.evaluate(clap, on: Dataset.load(dir.appendingPathComponent("bad.csv")))) {
            XCTAssertTrue("\($0)".contains("s0.wav: no caption"), "\($0)")
        }
    }
}
