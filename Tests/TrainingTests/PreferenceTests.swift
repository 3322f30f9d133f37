import Foundation
import XCTest
import Audio
import Engine
@testable import Models
import NN
@testable import Training
@testable import Inference

/// P2C preferences and auxiliary heads: pairs and votes files, their sources, partner sampling, and
/// a fine-tuning run through the trainer.
final class PreferenceTests: XCTestCase {
    /// 24 tone clips, "high" and "low", in train (16, speakers s0/s1), validation (4) and test (4) splits.
    func makeData() throws -> (URL, Dataset) {
        let dir = try temporaryFolder("p2c")
        var g = RandomGenerator(seed: 3)
        var rows = ["path,label,speaker,split,salience"]
        for i in 0..<24 {
            let high = i % 2 == 0
            let f = (high ? 2500.0 : 250.0) * (1 + 0.1 * Double(g.nextUniform()))
            let noise: Float = i % 4 < 2 ? 0.01 : 0.2
            let wave = (0..<11_000).map { n in Float(0.3 * sin(2 * Double.pi * f * Double(n) / 16000)) + noise * g.nextNormal() }
            try AudioFile.writeWAV(wave, sampleRate: 16000, to: dir.appendingPathComponent("clip\(i).wav"))
            let split = i < 16 ? "train" : i < 20 ? "validation" : "test"
            rows.append("clip\(i).wav,\(high ? "high" : "low"),s\(i % 3 == 0 ? 0 : 1),\(split),\(i % 4 < 2 ? 1 : 2)")
        }
        let manifest = dir.appendingPathComponent("data.csv")
        try rows.joined(separator: "\n").write(to: manifest, atomically: true, encoding: .utf8)
        return (dir, try Dataset.load(manifest))
    }

    func write(_ text: String, _ url: URL) throws { try text.write(to: url, atomically: true, encoding: .utf8) }

    func testPairsFileReadsAndNamesBadRows() throws {
        let (dir, data) = try makeData()
        let good = dir.appendingPathComponent("pairs.csv")
        try write("clip_a,clip_b,class,preference\nclip0.wav,clip2.wav,high,a\n\(dir.path)/clip1.wav,clip3.wav,low,0\nclip4.wav,clip6.wav,high,tie\n", good)
        let pairs = try PreferenceFile.readPairs(good, data: data)
        XCTAssertEqual(pairs.map(\.target), [1, 0, 0.5])
        XCTAssertEqual(pairs[1].a, data.records[1].path, "an absolute path names the record")
        XCTAssertEqual(pairs[0].label, "high")
        // Written and read back: the same pairs.
        let again = dir.appendingPathComponent("again.csv")
        try PreferenceFile.writePairs(pairs, to: again)
        XCTAssertEqual(try PreferenceFile.readPairs(again, data: data), pairs)

        let cases: [(String, String)] = [
            ("clip0.wav,clip1.wav,high,a", "pair with different labels"),
            ("clip0.wav,missing.wav,high,a", "clip 'missing.wav' is not in the data"),
            ("clip0.wav,clip2.wav,loud,a", "unknown class 'loud'"),
            ("clip0.wav,clip2.wav,high,maybe", "preference 'maybe'"),
            ("clip0.wav,clip0.wav,high,a", "the same clip"),
        ]
        for (row, expected) in cases {
            let bad = dir.appendingPathComponent("bad.csv")
            try write("clip_a,clip_b,class,preference\nclip0.wav,clip2.wav,high,a\n\(row)\n", bad)
            XCTAssertThrowsError(try PreferenceFile.readPairs(bad, data: data)) {
                XCTAssertTrue("\($0)".contains(expected) && "\($0)".contains("row 3") && "\($0)".contains(bad.path), "\($0)")
            }
        }
        try write("a,b,class,preference\n", dir.appendingPathComponent("header.csv"))
        XCTAssertThrowsError(try PreferenceFile.readPairs(dir.appendingPathComponent("header.csv"), data: data)) {
            XCTAssertTrue("\($0)".contains("no 'clip_a' column"), "\($0)")
        }
    }

    func testVotesFileChecksFractions() throws {
        let (dir, data) = try makeData()
        let votes = dir.appendingPathComponent("votes.csv")
        try write("clip,high,low\nclip0.wav,0.8,0.2\nclip2.wav,0.6,0.4\n", votes)
        let read = try PreferenceFile.readVotes(votes, data: data)
        XCTAssertEqual(read[data.records[0].path], [0.8, 0.2], "fractions in the data's class order (high, low)")
        try write("clip,high,low\nclip0.wav,0.8,0.3\n", votes)
        XCTAssertThrowsError(try PreferenceFile.readVotes(votes, data: data)) {
            XCTAssertTrue("\($0)".contains("sum to 1.1") && "\($0)".contains("row 2"), "\($0)")
        }
        try write("clip,high,medium\nclip0.wav,0.8,0.2\n", votes)
        XCTAssertThrowsError(try PreferenceFile.readVotes(votes, data: data)) { XCTAssertTrue("\($0)".contains("unknown class column 'medium'"), "\($0)") }
        try write("clip,high,low\nnot-here.wav,1,0\n", votes)
        XCTAssertThrowsError(try PreferenceFile.readVotes(votes, data: data)) { XCTAssertTrue("\($0)".contains("not in the data"), "\($0)") }
    }

    func testSalienceAndTeacherStylePairs() throws {
        let (dir, data) = try makeData()
        let train = data.records.filter { $0.split == "train" }
        let (scored, missing) = try PreferenceSources.column(train, metadata: dir.appendingPathComponent("data.csv"), column: "salience")
        XCTAssertEqual(scored.count, 16); XCTAssertEqual(missing, 0)
        let pairs = PreferenceSources.pairs(scored, partnersPerClip: 20, higherWins: false, seed: 1)
        XCTAssertEqual(pairs.count, 2 * (8 * 7 / 2), "every unordered pair of each class once")
        let salience = Dictionary(uniqueKeysWithValues: scored.map { ($0.record.path, $0.score) })
        for p in pairs {
            let (a, b) = (salience[p.a]!, salience[p.b]!)
            XCTAssertEqual(p.target, a == b ? 0.5 : a < b ? 1 : 0, "foreground (1) beats background (2), equal ties")
            XCTAssertEqual(data.records.first { $0.path == p.a }!.labels, [p.label])
            XCTAssertEqual(data.records.first { $0.path == p.b }!.labels, [p.label])
        }
        // A tie margin (teacher probabilities): gaps within it tie.
        let close = [PreferenceSources.Scored(record: train[0], score: 0.90), .init(record: train[2], score: 0.93), .init(record: train[4], score: 0.5)]
        let made = PreferenceSources.pairs(close, partnersPerClip: 5, tieMargin: 0.05, seed: 0)
        XCTAssertEqual(made.count, 3)
        for p in made where Set([p.a, p.b]) == Set([train[0].path, train[2].path]) { XCTAssertEqual(p.target, 0.5) }
        for p in made where p.a == train[4].path { XCTAssertEqual(p.target, 0) }
    }

    func testSNRMixtures() throws {
        let (dir, data) = try makeData()
        // The mixture's noise power sits `snr` dB below the source's.
        let source = (0..<8000).map { Float(0.3 * sin(Double($0) * 0.05)) }
        let noise = (0..<3000).map { Float(0.1 * sin(Double($0) * 1.3 + 0.2)) }
        let mixed = try XCTUnwrap(SNRMixer.mix(source, noise: noise, snr: 10))
        let residual = zip(mixed, source).map { $0 - $1 }
        func power(_ x: [Float]) -> Double { x.map { Double($0 * $0) }.reduce(0, +) / Double(x.count) }
        XCTAssertEqual(10 * log10(power(source) / power(residual)), 10, accuracy: 0.05)
        XCTAssertNil(SNRMixer.mix(source, noise: [Float](repeating: 0, count: 10), snr: 10), "silent noise cannot set an SNR")

        var mixer = SNRMixer()
        (mixer.crossPairs, mixer.seed) = (1, 2)
        let sources = Array(data.records.filter { $0.split == "train" }.prefix(6))
        let report = SkipReport()
        let made = try mixer.make(sources: sources, noisePool: data.records.filter { $0.split == "train" },
                                  folder: dir.appendingPathComponent("mixed"), report: report)
        XCTAssertEqual(made.records.count, 12)
        XCTAssertEqual(made.pairs.count, 6 + 6, "a clip's two versions, and one pair of different clips each")
        XCTAssertTrue(made.pairs.allSatisfy { $0.target == 1 && $0.a.hasSuffix("_snr20.wav") && $0.b.hasSuffix("_snr0.wav") })
        // The manifest reads back with the mixtures, and the pairs check against it.
        let manifest = dir.appendingPathComponent("mixed.csv")
        try SNRMixer.writeManifest(data.records + made.records, to: manifest)
        let reread = try Dataset.load(manifest)
        XCTAssertEqual(reread.records.count, 36)
        let pairsFile = dir.appendingPathComponent("snr-pairs.csv")
        try PreferenceFile.writePairs(made.pairs, to: pairsFile)
        XCTAssertEqual(try PreferenceFile.readPairs(pairsFile, data: reread).count, 12)
        mixer.minGap = 30
        XCTAssertThrowsError(try mixer.make(sources: sources, noisePool: sources, folder: dir, report: report)) {
            XCTAssertTrue("\($0)".contains("below --min-gap"), "\($0)")
        }
        // Values that trapped (an SNR naming a file as Int, a negative prefix) are refused by name.
        mixer.minGap = 10
        mixer.highSNR = 1e30
        XCTAssertThrowsError(try mixer.make(sources: sources, noisePool: sources, folder: dir, report: report)) {
            XCTAssertTrue("\($0)".contains("must be finite, within ±200 dB"), "\($0)")
        }
        (mixer.highSNR, mixer.crossPairs) = (20, -1)
        XCTAssertThrowsError(try mixer.make(sources: sources, noisePool: sources, folder: dir, report: report)) {
            XCTAssertTrue("\($0)".contains("--cross-pairs -1 must not be negative"), "\($0)")
        }
    }

    func testPartnerSampling() throws {
        let candidates: [[PartnerCandidate]] = [[.init(partner: 1, target: 1), .init(partner: 2, target: 1)], [.init(partner: 0, target: 0)], [.init(partner: 0, target: 0)], []]
        var g = RandomGenerator(seed: 1)
        let none: [ClipOpinion?] = [nil, nil, nil, nil]
        let random = PartnerSampler.draw(candidates: candidates, sampling: .disagreement, opinions: none, labels: [0, 0, 0, 0],
                                         votes: [nil, nil, nil, nil], generator: &g)
        XCTAssertEqual(Set(random.keys), [0, 1, 2], "a clip without pairs gets no partner")
        // Disagreement: heads 1 and 2 order clips 0 and 2 differently from head 0 (2 head pairs); 0 and 1 alike.
        let opinions: [ClipOpinion?] = [
            ClipOpinion(headScores: [0.5, 0.5, 0.5], probabilities: [0.9, 0.1]),
            ClipOpinion(headScores: [0.1, 0.1, 0.1], probabilities: [0.2, 0.8]),
            ClipOpinion(headScores: [0.1, 0.9, 0.9], probabilities: [0.95, 0.05]),
            nil]
        XCTAssertEqual(PartnerSampler.disagreement([0.5, 0.5, 0.5], [0.1, 0.9, 0.9]), 2)
        for seed in 0..<5 as Range<UInt64> {
            var g = RandomGenerator(seed: seed)
            let d = PartnerSampler.draw(candidates: candidates, sampling: .disagreement, opinions: opinions, labels: [0, 0, 0, 0],
                                        votes: [nil, nil, nil, nil], generator: &g)
            XCTAssertEqual(d[0]?.partner, 2)
            // Inconsistency: clip 0 is preferred to both; p_0 is 0.9 vs 0.2 (consistent, loss 0) and vs 0.95 (loss 0.05).
            let c = PartnerSampler.draw(candidates: candidates, sampling: .inconsistency, opinions: opinions, labels: [0, 0, 0, 0],
                                        votes: [nil, nil, nil, nil], generator: &g)
            XCTAssertEqual(c[0]?.partner, 2, "only the inconsistent pair has weight")
        }
        XCTAssertEqual(PartnerSampler.consistencyLoss([0.9, 0.1], [0.95, 0.05], label: 0, target: 1, votes: nil), 0.05, accuracy: 1e-6)
        XCTAssertEqual(PartnerSampler.consistencyLoss([0.9, 0.1], [0.95, 0.05], label: 0, target: 1, votes: ([0.7, 0.3], [0.5, 0.5])),
                       (0.2 + 0.05) + (0.05 + 0.2), accuracy: 1e-6)
    }

    func testCalibrationError() {
        // Two bins used: (0.6, 0.6667] holds 0.62, 0.64 (one right: |0.5 − 0.63|), (0.9333, 1] holds 0.95, 0.97 (both right: |1 − 0.96|).
        let ece = Metrics.expectedCalibrationError(confidences: [0.62, 0.64, 0.95, 0.97], correct: [true, false, true, true])
        XCTAssertEqual(ece, 0.5 * 0.13 + 0.5 * 0.04, accuracy: 1e-6)
        XCTAssertEqual(Metrics.expectedCalibrationError(confidences: [1, 1], correct: [true, true]), 0, accuracy: 1e-9)
    }

    /// P2C and a speaker head through `fineTune`: the loss falls, the metrics are logged, the best
    /// checkpoint is an ordinary classifier, and a resumed run picks its heads up again.
    func testPreferenceFineTuneTrainsAndSavesOnlyTheClassifier() throws {
        let (dir, data) = try makeData()
        // Pairs within the training split and within the validation split (scored every epoch).
        let pairs = try ["train", "validation"].flatMap { split in
            let scored = try PreferenceSources.column(data.records.filter { $0.split == split }, metadata: dir.appendingPathComponent("data.csv"),
                                                      column: "salience").scored
            return PreferenceSources.pairs(scored, partnersPerClip: 3, higherWins: false, seed: 0)
        }
        let pairsFile = dir.appendingPathComponent("pairs.csv")
        try PreferenceFile.writePairs(pairs, to: pairsFile)
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr) = (1, 64, 5, 4, 3e-4)
        var aux = AuxiliaryConfig()
        var pref = PreferenceConfig(pairs: pairsFile.path)
        pref.sampling = .disagreement
        aux.preference = pref
        aux.heads = [AuxiliaryHeadConfig(field: "speaker", weight: 0.3)]
        ft.auxiliary = aux
        let run = try RunDirectory(dir.appendingPathComponent("runs/p2c"))
        var lines: [String] = []
        let result = try fineTune(ft, data: data, run: run) { lines.append($0) }
        let history = run.metricsHistory(throughEpoch: 100)
        XCTAssertEqual(history.count, 5)
        let losses = history.compactMap { $0["train_loss"] as? Double }
        XCTAssertLessThan(losses.last!, losses.first!, "the total loss falls: \(losses)")
        for key in ["train_pref", "train_cons", "train_div", "train_pref_accuracy", "train_pref_consistency", "train_aux_speaker",
                    "validation_pref_accuracy", "validation_pref_consistency", "validation_ece", "validation_macro_f1", "validation_accuracy"] {
            XCTAssertNotNil(history.last![key], "\(key) is logged: \(history.last!.keys.sorted())")
        }
        XCTAssertTrue(lines.contains { $0.contains("training pairs") }, "\(lines)")
        XCTAssertGreaterThanOrEqual(result.test.accuracy, 0.75, "\(lines.suffix(4))")
        // The best checkpoint is a classifier alone; the heads sit beside the last one.
        let best = try SafeTensors.read(run.best)
        XCTAssertFalse(best.tensors.keys.contains { $0.hasPrefix("preference") || $0.hasPrefix("auxiliary") })
        let clf = try Classifier.load(run.best)
        XCTAssertEqual(clf.classes, ["high", "low"])
        let heads = try SafeTensors.read(run.lastTrainingHeads)
        XCTAssertTrue(heads.tensors.keys.contains("preference.2.class_embedding.weight"), "\(heads.tensors.keys.sorted())")
        XCTAssertTrue(heads.tensors.keys.contains("auxiliary.0.weight"))
        // Resumed: the heads come back from the run folder (not fresh ones), and training goes on.
        ft.epochs = 6
        let saved = heads.tensors["preference.0.mlp.4.weight"]!.toArray()
        _ = try fineTune(ft, data: data, run: run, resume: true) { _ in }
        XCTAssertEqual(run.metricsHistory(throughEpoch: 100).count, 6)
        let resumed = try SafeTensors.read(run.lastTrainingHeads).tensors["preference.0.mlp.4.weight"]!.toArray()
        let moved = zip(saved, resumed).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(moved, 0)
        XCTAssertLessThan(moved, 0.05, "one more epoch moves the restored heads a little, not to a fresh draw")
    }

    func testBadSettingsStopTheRunBeforeTraining() throws {
        let (dir, data) = try makeData()
        let pairsFile = dir.appendingPathComponent("pairs.csv")
        try write("clip_a,clip_b,class,preference\nclip0.wav,clip1.wav,high,a\n", pairsFile)
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize) = (1, 64, 1, 4)
        var aux = AuxiliaryConfig()
        aux.preference = PreferenceConfig(pairs: pairsFile.path)
        ft.auxiliary = aux
        let run = try RunDirectory(dir.appendingPathComponent("runs/bad"))
        XCTAssertThrowsError(try fineTune(ft, data: data, run: run) { _ in }) { XCTAssertTrue("\($0)".contains("different labels"), "\($0)") }
        XCTAssertFalse(run.holdsRun, "nothing was written")
        aux.preference = nil
        aux.heads = [AuxiliaryHeadConfig(field: "mood", weight: 1)]
        aux.metadata = dir.appendingPathComponent("data.csv").path
        ft.auxiliary = aux
        XCTAssertThrowsError(try fineTune(ft, data: data, run: run) { _ in }) { XCTAssertTrue("\($0)".contains("no column 'mood'"), "\($0)") }
        XCTAssertThrowsError(try AuxiliaryHeadConfig(parsing: "speaker:-1"))
        XCTAssertEqual(try AuxiliaryHeadConfig(parsing: "speaker:0.3"), AuxiliaryHeadConfig(field: "speaker", weight: 0.3))
    }

    /// Vote fractions: the vote-gap consistency and inconsistency sampling through the trainer, and a
    /// teacher's probabilities as scores.
    func testVotesAndTeacherThroughTraining() throws {
        let (dir, data) = try makeData()
        let train = data.records.filter { $0.split == "train" }
        var g = RandomGenerator(seed: 5)
        var votes: [(clip: String, fractions: [Float])] = []
        for r in train {
            let own = 0.5 + 0.5 * g.nextUniform()
            votes.append((r.path, r.labels == ["high"] ? [own, 1 - own] : [1 - own, own]))
        }
        let votesFile = dir.appendingPathComponent("votes.csv")
        try PreferenceFile.writeVotes(votes, classes: data.classes, to: votesFile)
        let read = try PreferenceFile.readVotes(votesFile, data: data)
        let (scored, _) = PreferenceSources.votes(train, votes: read, classes: data.classes)
        let pairs = PreferenceSources.pairs(scored, partnersPerClip: 3, tieMargin: 1e-6, seed: 2)
        XCTAssertTrue(pairs.allSatisfy { p in
            let (a, b) = (read[p.a]![data.classIndex(p.label)!], read[p.b]![data.classIndex(p.label)!])
            return p.target == (a > b ? 1 : 0)
        })
        let pairsFile = dir.appendingPathComponent("pairs.csv")
        try PreferenceFile.writePairs(pairs, to: pairsFile)
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr) = (1, 64, 2, 4, 3e-4)
        var aux = AuxiliaryConfig()
        var pref = PreferenceConfig(pairs: pairsFile.path)
        (pref.votes, pref.sampling, pref.heads) = (votesFile.path, .inconsistency, 2)
        aux.preference = pref
        ft.auxiliary = aux
        let run = try RunDirectory(dir.appendingPathComponent("runs/votes"))
        _ = try fineTune(ft, data: data, run: run) { _ in }
        let last = try XCTUnwrap(run.metricsHistory(throughEpoch: 10).last)
        XCTAssertNotNil(last["train_cons"])
        XCTAssertNotNil(last["train_div"], "two heads have a diversity term")
        // The trained classifier as a teacher: its probability of each clip's label.
        let teacher = try Classifier.load(run.best)
        let report = SkipReport()
        let taught = try PreferenceSources.teacher(Dataset(records: train, layout: "t", classes: data.classes), classifier: teacher, report: report)
        XCTAssertEqual(taught.count, train.count)
        XCTAssertTrue(taught.allSatisfy { $0.score >= 0 && $0.score <= 1 })
    }

    /// UrbanSound8K's layout: the salience column is found through the dataset folder, paths under audio/fold<k>/.
    func testSalienceFromAnUrbanSound8KFolder() throws {
        let root = try temporaryFolder("us8k")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("metadata"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("audio/fold1"), withIntermediateDirectories: true)
        var rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
        for i in 0..<6 {
            let name = "\(100 + i)-1-0-0.wav"
            try writeTone(root.appendingPathComponent("audio/fold1/\(name)"), frequency: 440, samples: 1600)
            rows.append("\(name),\(100 + i),0,0.1,\(i < 3 ? 1 : 2),1,\(i % 2),\(i % 2 == 0 ? "dog_bark" : "siren")")
        }
        try rows.joined(separator: "\n").write(to: root.appendingPathComponent("metadata/UrbanSound8K.csv"), atomically: true, encoding: .utf8)
        let data = try Dataset.load(root)
        let table = try XCTUnwrap(MetadataColumn.manifest(of: root))
        let (scored, missing) = try PreferenceSources.column(data.records, metadata: table, column: "salience")
        XCTAssertEqual(scored.count, 6); XCTAssertEqual(missing, 0)
        let pairs = PreferenceSources.pairs(scored, partnersPerClip: 5, higherWins: false, seed: 0)
        XCTAssertEqual(pairs.count, 6, "three clips a class, three pairs each")
        // dog_bark: clips 0, 2 (foreground) and 4 (background); 0 and 2 tie, each beats 4.
        let dog = pairs.filter { $0.label == "dog_bark" }
        XCTAssertEqual(dog.filter { $0.target == 0.5 }.count, 1)
        XCTAssertTrue(dog.filter { $0.a.hasSuffix("104-1-0-0.wav") }.allSatisfy { $0.target == 0 })
        XCTAssertTrue(dog.filter { $0.b.hasSuffix("104-1-0-0.wav") }.allSatisfy { $0.target == 1 })
    }
}
