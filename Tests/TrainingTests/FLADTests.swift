import Foundation
import XCTest
import Audio
import Engine
@testable import Inference
@testable import Models
import NN
@testable import Training

/// FLAD end to end on generated audio: a few-shot target (low against high tones), an auxiliary set
/// with the same structure (more such tones) and one of noise under random labels. The bandit must
/// pay the tones more and favour them; bad auxiliary data is named before the run starts.
final class FLADTests: XCTestCase {
    struct Setup { let dir: URL; let target: Dataset; let tones: URL; let noise: URL }

    func makeData() throws -> Setup {
        let dir = try temporaryFolder("flad")
        var g = RandomGenerator(seed: 21)
        func tone(_ url: URL, high: Bool) throws {
            try writeTone(url, frequency: (high ? 2500.0 : 300.0) * (1 + 0.15 * Double(g.nextUniform())), samples: 8000)
        }
        var records: [ClipRecord] = []
        for i in 0..<60 {
            let url = dir.appendingPathComponent("t\(i).wav")
            try tone(url, high: i % 2 == 0)
            records.append(ClipRecord(path: url.path, labels: [i % 2 == 0 ? "high" : "low"], split: i < 44 ? "train" : "test"))
        }
        // The useful auxiliary set: other tones of the same two classes (a folder per class).
        let tones = dir.appendingPathComponent("tones")
        for label in ["high", "low"] {
            let folder = tones.appendingPathComponent(label)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<12 { try tone(folder.appendingPathComponent("\(i).wav"), high: label == "high") }
        }
        // The useless one: white noise, labels drawn at random.
        let noise = dir.appendingPathComponent("noise")
        for label in ["a", "b"] { try FileManager.default.createDirectory(at: noise.appendingPathComponent(label), withIntermediateDirectories: true) }
        for i in 0..<24 {
            let samples = (0..<8000).map { _ in 0.3 * (g.nextUniform() * 2 - 1) }
            try AudioFile.writeWAV(samples, sampleRate: 16000, to: noise.appendingPathComponent(g.nextUniform() < 0.5 ? "a" : "b").appendingPathComponent("\(i).wav"))
        }
        return Setup(dir: dir, target: Dataset(records: records, layout: "tones"), tones: tones, noise: noise)
    }

    func config(_ s: Setup, bandit: BanditKind, aux: [String]) -> FineTuneConfig {
        var c = FineTuneConfig()
        (c.model, c.depth, c.inputTdim, c.epochs, c.batchSize, c.lr, c.seed) = ("ssast-tiny-frame", 1, 48, 6, 2, 3e-4, 4)
        c.shotsPerClass = 10
        c.flad = FLADConfig(auxiliary: aux.map(FLADConfig.Source.init(parsing:)), bandit: bandit)
        return c
    }

    func testTheBanditFavoursTheAuxiliarySetThatSharesTheTargetsStructure() throws {
        let s = try makeData()
        for bandit in BanditKind.allCases {
            let run = try RunDirectory(s.dir.appendingPathComponent("run-\(bandit)"))
            var lines: [String] = []
            let result = try fineTune(config(s, bandit: bandit, aux: [s.tones.path, s.noise.path]), data: s.target, run: run) { lines.append($0) }
            XCTAssertTrue(lines.contains { $0.contains("'tones'") && $0.contains("trains the target's head") }, "\(lines.prefix(8))")
            XCTAssertTrue(lines.contains { $0.contains("'noise'") && $0.contains("a head of its own") }, "\(lines.prefix(8))")
            let epochs = run.metricsHistory(throughEpoch: .max)
            XCTAssertEqual(epochs.count, 6)
            var plays = ["tones": 0, "noise": 0], rewards = ["tones": 0.0, "noise": 0.0]
            for line in epochs {
                XCTAssertEqual(line["flad_bandit"] as? String, bandit.rawValue)
                let p = try XCTUnwrap(line["flad_probability"] as? [String: Double])
                XCTAssertEqual(p.values.reduce(0, +), 1, accuracy: 1e-9)
                let n = try XCTUnwrap(line["flad_plays"] as? [String: Int])
                XCTAssertEqual(n.values.reduce(0, +), 10, "one auxiliary batch a step, 10 steps an epoch")
                let mean = try XCTUnwrap(line["flad_mean_reward"] as? [String: Any])
                for arm in ["tones", "noise"] where n[arm]! > 0 {
                    plays[arm]! += n[arm]!
                    rewards[arm]! += Double(n[arm]!) * (try XCTUnwrap(mean[arm] as? Double))
                }
                XCTAssertNotNil(line["train_reward"] as? Double)
                XCTAssertNotNil(line["train_aux_loss"] as? Double)
            }
            let last = try XCTUnwrap(epochs.last)
            XCTAssertEqual(last["flad_total_plays"] as? [String: Int], plays)
            let meanTones = rewards["tones"]! / Double(plays["tones"]!), meanNoise = rewards["noise"]! / Double(max(plays["noise"]!, 1))
            // Gradients of more of the target's own task point the target's way; noise under random labels does not.
            XCTAssertGreaterThan(meanTones, meanNoise + 0.2, "\(bandit): mean rewards \(rewards), plays \(plays)")
            if bandit == .ucb1 {
                XCTAssertGreaterThan(plays["tones"]!, 2 * plays["noise"]!, "\(bandit): \(plays)")
            } else {
                // EXP3's exploration floor decays as 1/√t: 60 rounds only start to tilt it (the tones'
                // probability rose to ~0.63 in this run), so the test checks the tilt, not the plays.
                let p = try XCTUnwrap(last["flad_probability"] as? [String: Double])
                XCTAssertGreaterThan(p["tones"]!, 0.55, "\(p)")
            }
            // Only the target classifier is saved, and it loads and scores as the run reported.
            let saved = try SafeTensors.read(run.best)
            XCTAssertFalse(saved.tensors.keys.contains { !$0.hasPrefix("v.") && !$0.hasPrefix("mlp_head.") }, "\(saved.tensors.keys.sorted())")
            let (again, _) = try evaluate(Classifier.load(run.url), on: s.target.split("test"))
            XCTAssertEqual(again.accuracy, result.test.accuracy)
            XCTAssertGreaterThan(result.test.accuracy, 0.8, "\(bandit): low against high tones")
        }
    }

    func testRunsRepeatWithTheirSeed() throws {
        let s = try makeData()
        var c = config(s, bandit: .exp3, aux: [s.tones.path, s.noise.path])
        c.epochs = 2
        func history(_ name: String) throws -> (plays: [[String: Int]], rewards: [Double]) {
            let run = try RunDirectory(s.dir.appendingPathComponent(name))
            _ = try fineTune(c, data: s.target, run: run, log: { _ in })
            let lines = run.metricsHistory(throughEpoch: .max)
            return (lines.compactMap { $0["flad_plays"] as? [String: Int] }, lines.compactMap { $0["train_reward"] as? Double })
        }
        let (a, b) = (try history("a"), try history("b"))
        XCTAssertEqual(a.plays.count, 2)
        XCTAssertEqual(a.plays, b.plays)
        XCTAssertEqual(a.rewards, b.rewards)
    }

    func testBadAuxiliaryDataIsNamed() throws {
        let s = try makeData()
        // A folder that does not exist: named, and the run folder is left without a run.
        let missing = s.dir.appendingPathComponent("no-such-folder").path
        let run = try RunDirectory(s.dir.appendingPathComponent("run-missing"))
        XCTAssertThrowsError(try fineTune(config(s, bandit: .ucb1, aux: [s.tones.path, missing]), data: s.target, run: run, log: { _ in })) {
            XCTAssertTrue("\($0)".contains("--aux-data \(missing)") && "\($0)".contains("no such file or folder"), "\($0)")
        }
        XCTAssertFalse(run.holdsRun)
        // A folder of clips none of which can be read.
        let broken = s.dir.appendingPathComponent("broken/x")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        for i in 0..<3 { try Data("not audio".utf8).write(to: broken.appendingPathComponent("\(i).wav")) }
        XCTAssertThrowsError(try fineTune(config(s, bandit: .ucb1, aux: [broken.deletingLastPathComponent().path]), data: s.target, run: run, log: { _ in })) {
            XCTAssertTrue("\($0)".contains("broken") && "\($0)".contains("none of its 3 clips can be read"), "\($0)")
        }
        XCTAssertFalse(run.holdsRun)
        // A usable folder with an unreadable clip: skipped and reported as any dataset's.
        try Data("not audio either".utf8).write(to: s.tones.appendingPathComponent("low/zz-bad.wav"))
        var c = config(s, bandit: .ucb1, aux: [s.tones.path])
        c.epochs = 2
        var lines: [String] = []
        _ = try fineTune(c, data: s.target, run: try RunDirectory(s.dir.appendingPathComponent("run-skip"))) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("skipped 1 unreadable clip") }, "\(lines.suffix(4))")
        XCTAssertTrue(lines.contains { $0.contains("zz-bad.wav") }, "\(lines.suffix(4))")
        // A run that trains no encoder tensor has no shared gradient to compare.
        var frozen = config(s, bandit: .exp3, aux: [s.tones.path])
        frozen.freezeEncoder = true
        XCTAssertThrowsError(try fineTune(frozen, data: s.target, run: try RunDirectory(s.dir.appendingPathComponent("run-frozen")), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("no encoder parameter"), "\($0)")
        }
    }

    func testAuxiliaryViewsOfTheTargetLeaveItsHeldOutClipsOut() throws {
        let s = try makeData()
        let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 48)
        let manifest = s.dir.appendingPathComponent("all.csv")
        try ("path,label\n" + s.target.records.map { "\($0.path),\($0.labels[0])" }.joined(separator: "\n")).write(to: manifest, atomically: true, encoding: .utf8)
        let heldOut = Set(s.target.split("test").records.map { AuxiliaryDataset.standardPath($0.path) })
        let aux = try AuxiliaryDataset.load(FLADConfig(auxiliary: [.init(path: manifest.path)]), targetClasses: ["high", "low"], heldOut: heldOut,
                                            pipeline: pipeline, log: { _ in })
        XCTAssertEqual(aux[0].dataset.records.count, 44)
        XCTAssertTrue(aux[0].sharesTargetHead)
        XCTAssertEqual(aux[0].dataset.classes, ["high", "low"])
    }

    func testTheSharedParametersAreWhatTheRunTrainsButTheHead() throws {
        let full = try ModelRegistry.entry(named: "ssast-tiny-frame").classifier(ModelShape(frames: 48, outputs: 2, depth: 1))
        let all = FLADTask.sharedParameters(of: full).map(\.0)
        XCTAssertEqual(all.count, full.namedParameters().filter { !$0.0.hasPrefix("mlp_head.") }.count)
        XCTAssertTrue(all.contains("v.blocks.0.attn.qkv.weight"))
        let lora = try ModelRegistry.entry(named: "ssast-tiny-frame").classifier(ModelShape(frames: 48, outputs: 2, depth: 1))
        _ = try PEFTConfig(method: .lora).apply(to: lora)
        let adapted = FLADTask.sharedParameters(of: lora).map(\.0)
        XCTAssertFalse(adapted.isEmpty)
        XCTAssertTrue(adapted.allSatisfy { $0.contains(".lora.") || $0.hasPrefix("v.norm.") }, "\(adapted)")
        XCTAssertTrue(adapted.contains { $0.contains(".lora.") })
        XCTAssertFalse(adapted.contains { $0.hasPrefix("mlp_head.") })
    }

    func testAuxDataArgumentParsing() {
        XCTAssertEqual(FLADConfig.Source(parsing: "data/fsdd:speaker"), .init(path: "data/fsdd", labelField: "speaker"))
        XCTAssertEqual(FLADConfig.Source(parsing: "data/esc10"), .init(path: "data/esc10"))
        XCTAssertEqual(FLADConfig.Source(parsing: "c:/odd:path"), .init(path: "c:/odd:path"))
        XCTAssertEqual(FLADConfig.Source(parsing: ":speaker"), .init(path: ":speaker"))
    }
}
