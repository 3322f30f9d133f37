import XCTest
@testable import Audio
import Engine
import NN
@testable import Inference
@testable import Models

final class SoundEventTests: XCTestCase {
    func testRunsAboveTheThresholdBecomeEventsAndShortOnesAreDropped() throws {
        var d = EventDetector(classes: ["dog", "bird"], secondsPerFrame: 0.1, threshold: 0.5, minDuration: 0.25)
        // dog: frames 2-5 (0.4 s), bird: frame 1 (0.1 s, dropped) and 7 to the end (open at the end).
        let dog: [Float] = [0, 0.2, 0.6, 0.9, 0.7, 0.5, 0.1, 0, 0, 0]
        let bird: [Float] = [0, 0.8, 0, 0, 0, 0, 0, 0.6, 0.95, 0.7]
        let scores = try Tensor(zip(dog, bird).flatMap { [$0, $1] }, shape: [10, 2])
        // In two blocks, as a stream arrives: each returns the events that ended in it (the bird's first
        // run ends in the first block but is too short).
        XCTAssertEqual(d.consume(try scores.slice(axis: 0, start: 0, end: 4)).count, 0)
        XCTAssertEqual(d.consume(try scores.slice(axis: 0, start: 4, end: 10)).map(\.label), ["dog"])
        let events = d.finish()
        XCTAssertEqual(events.count, 2)
        XCTAssertEqual(events[0].label, "dog")
        XCTAssertEqual(events[0].onset, 0.2, accuracy: 1e-9)
        XCTAssertEqual(events[0].offset, 0.6, accuracy: 1e-9)
        XCTAssertEqual(events[0].peak, 0.9)
        XCTAssertEqual(events[1].label, "bird")
        XCTAssertEqual(events[1].onset, 0.7, accuracy: 1e-9)
        XCTAssertEqual(events[1].offset, 1.0, accuracy: 1e-9)
    }

    /// A long recording scored chunk by chunk (resampled on the way, 16 -> 8 kHz) gives the frame-wise
    /// scores of the whole recording scored at once.
    func testStreamedFrameScoresEqualTheWholeRecordingScoredAtOnce() throws {
        Random.seed(31)
        let frontEnd = LogMelConfig(sampleRate: 8000, nFFT: 256, hop: 80, nMels: 32, fMin: 50, fMax: 4000)
        var c = PANNsConfig(.cnn10, classes: 3, frames: 400, frontEnd: frontEnd)
        (c.channels, c.embeddingWidth, c.decisionLevelMax) = ([2, 3, 3, 4], 6, true)
        let model = PANNs(c)
        for (key, t) in model.namedTensors() where key.hasSuffix("running_mean") && key.hasPrefix("bn0") { t.data.update(repeating: -60, count: t.count) }
        for (key, t) in model.namedTensors() where key.hasSuffix("running_var") && key.hasPrefix("bn0") { t.data.update(repeating: 400, count: t.count) }
        model.eval()
        // A pipeline that normalises (a model trained by `finetune` keeps its --mean/--std): streaming must too.
        let clf = Classifier(model: model, classes: ["a", "b", "c"],
                             pipeline: FeaturePipeline(kind: .logMel(frontEnd), targetFrames: 400, mean: -30, std: 20), multiLabel: true)
        // 13.3 s at 16 kHz: tones and noise bursts.
        let n = 213_000
        var wave = [Float](repeating: 0, count: n)
        var g = RandomGenerator(seed: 4)
        for i in 0..<n {
            let t = Float(i) / 16000
            wave[i] = 0.3 * sin(2 * .pi * (300 + 200 * sin(t)) * t) * (Int(t) % 3 == 0 ? 1 : 0.1) + 0.02 * g.nextNormal()
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-sed-\(UUID().uuidString).wav")
        defer { try? FileManager.default.removeItem(at: url) }
        try AudioFile.writeWAV(wave, sampleRate: 16000, to: url, float: true)

        var streamed: [Float] = [], blocks = 0, spf = 0.0
        try clf.framewise(in: url) { s, scores in streamed += scores.toArray(); blocks += 1; spf = s }
        XCTAssertGreaterThan(blocks, 4, "scored in chunks")
        XCTAssertEqual(spf, 0.01, accuracy: 1e-12)
        var whole = FeaturePipeline(kind: .logMel(frontEnd), mean: -30, std: 20).self
        whole.targetFrames = nil
        let features = try whole.features(of: url)
        let reference = try GradMode.noGrad { try model.framewise(features.unsqueeze(0)).squeeze(0) }
        XCTAssertEqual(streamed.count, reference.count, "every frame once")
        var worst: Float = 0
        for i in 0..<min(streamed.count, reference.count) { worst = max(worst, abs(streamed[i] - reference.data[i])) }
        XCTAssertLessThan(worst, 2e-3)
        let events = try clf.soundEvents(in: url, threshold: 0.5, minDuration: 0)
        XCTAssertTrue(events.allSatisfy { $0.onset < $0.offset && $0.offset <= 13.32 })
    }

    /// `tag --frames -` reads a WAV from a pipe as a live stream and prints each event as it ends: the same
    /// events, to the microsecond, as the file read by name; without --frames the clip's tags are the file's.
    func testLiveStandardInputGivesTheEventsOfTheFile() throws {
        let dir = try temporaryFolder("live")
        // The tiny Cnn14 (8 kHz) read as a decision-level model, as its file name says.
        let model = dir.appendingPathComponent("Cnn14_DecisionLevelMax_tiny.pth")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ModelsTests/Fixtures/panns_cnn14_8k.pth"), to: model)
        // 40 s at 16 kHz (resampled as it streams): a tone that comes and goes, over noise.
        var g = RandomGenerator(seed: 9)
        let wave = (0..<640_000).map { i -> Float in
            let t = Float(i) / 16000
            return (Int(t / 3) % 2 == 0 ? 0.4 * sin(2 * .pi * 700 * t) : 0) + 0.03 * g.nextNormal()
        }
        let file = dir.appendingPathComponent("rec.wav")
        try AudioFile.writeWAV(wave, sampleRate: 16000, to: file)
        let common = ["--frames", "--model", model.path, "--threshold", "0.45", "--min-duration", "0", "--json"]
        let byName = try runEarshot(["tag", file.path] + common)
        XCTAssertEqual(byName.status, 0, byName.output)
        let live = try runEarshot(["tag", "-"] + common, input: try Data(contentsOf: file))
        XCTAssertEqual(live.status, 0, live.output)
        func lines(_ output: String) throws -> [[String: Any]] {
            try output.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        }
        let expected = try XCTUnwrap(try lines(byName.output).first?["events"] as? [[String: Any]])
        let streamed = try lines(live.output).filter { $0["label"] != nil }
        XCTAssertGreaterThan(expected.count, 2, "the tone's comings and goings are events")
        func key(_ e: [String: Any]) -> String {
            String(format: "%@ %.6f %.6f %.6f", e["label"] as! String, e["onset"] as! Double, e["offset"] as! Double, e["peak"] as! Double)
        }
        XCTAssertEqual(streamed.map(key).sorted(), expected.map(key).sorted())
        XCTAssertTrue(streamed.allSatisfy { $0["file"] as? String == "-" })
        // Without --frames, `-` is read to its end and tagged as a whole, as the file is.
        let clipTags = try runEarshot(["tag", file.path, "--model", model.path, "--json"])
        let piped = try runEarshot(["tag", "-", "--model", model.path, "--json"], input: try Data(contentsOf: file))
        XCTAssertEqual(piped.status, 0, piped.output)
        XCTAssertEqual(try lines(piped.output).first?["scores"] as? [Double], try lines(clipTags.output).first?["scores"] as? [Double])
        XCTAssertEqual(try lines(piped.output).first?["file"] as? String, "/dev/stdin")
        let twice = try runEarshot(["tag", "-", "-", "--frames", "--model", model.path], input: Data())
        XCTAssertNotEqual(twice.status, 0)
        XCTAssertTrue(twice.output.contains("can be read once"), twice.output)
    }

    func testAClipScoringModelIsRefusedForFrames() throws {
        var c = PANNsConfig(.cnn10, classes: 2, frames: 64, frontEnd: LogMelConfig(sampleRate: 8000, nFFT: 256, hop: 80, nMels: 32, fMin: 50, fMax: 4000))
        c.channels = [2, 2, 2, 2]
        let clf = Classifier(model: PANNs(c), classes: ["a", "b"], pipeline: FeaturePipeline(kind: .logMel(c.frontEnd)), multiLabel: true)
        XCTAssertThrowsError(try clf.soundEvents(in: URL(fileURLWithPath: "/nonexistent.wav"))) {
            XCTAssertTrue("\($0)".contains("decision-level"), "\($0)")
        }
    }
}

final class BalancedSamplingTests: XCTestCase {
    /// A class with 2 clips among 40 is picked as often as the class with 38 (PANNs' sampler), and
    /// every pick is a clip of the class it stands for.
    func testRareClassesArePickedAsOftenAsCommonOnes() throws {
        let records = (0..<40).map { i in ClipRecord(path: "/c\(i).wav", labels: [i < 2 ? "rare" : "common"]) }
        let data = Dataset(records: records, layout: "test", classes: ["common", "rare"])
        let loader = try FeatureLoader(dataset: data, pipeline: FeaturePipeline(kind: .logMel(.panns), targetFrames: 10), batchSize: 4, balanced: true)
        let order = loader.order(epoch: 0)
        XCTAssertEqual(order.count, 40)
        XCTAssertEqual(order.filter { $0 < 2 }.count, 20)
        XCTAssertNotEqual(order, loader.order(epoch: 1), "each epoch draws anew")
        let plain = try FeatureLoader(dataset: data, pipeline: FeaturePipeline(kind: .logMel(.panns), targetFrames: 10), batchSize: 4)
        XCTAssertEqual(plain.order(epoch: 0).filter { $0 < 2 }.count, 2)
    }

    func testPerClassMetricsNameEveryClass() {
        let scores: [[Float]] = [[0.9, 0.1], [0.8, 0.2], [0.1, 0.7], [0.2, 0.1]]
        let truth = [[true, false], [true, false], [false, true], [false, false]]
        let m = Metrics.perClass(scores: scores, targets: truth)
        XCTAssertEqual(m.count, 2)
        XCTAssertEqual(m[0].ap, 1)
        XCTAssertEqual(m[0].auc, 1)
        XCTAssertEqual(m[1].positives, 1)
        let none = Metrics.perClass(scores: [[0.5]], targets: [[false]])
        XCTAssertNil(none[0].ap)
        XCTAssertNil(none[0].auc)
    }
}
