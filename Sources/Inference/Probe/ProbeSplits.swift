import Audio
import Engine
import Foundation

/// One train/test round of a probe, as indices into the probe's clip list, with the cross-validation
/// folds inside its training part that choose λ and k.
public struct ProbeRound: Sendable {
    /// "test" for a dataset's own split, "fold N" for k-fold data.
    public var name: String
    public var train: [Int]
    public var test: [Int]
    /// The cross-validation fold of each training clip, aligned with `train`.
    public var innerFold: [Int]
    /// The group of each test clip (its speaker, or a drum kit in the speaker column), aligned with
    /// `test`, where every test clip names one that is not its label: the standard errors are then
    /// clustered by group (`ProbeStatistics.clusteredSE`). nil: clips counted as independent.
    public var testGroups: [String]? = nil
}

/// How a dataset is scored: one round (its test split) or one per fold.
public struct ProbePlan: Sendable {
    public var rounds: [ProbeRound]
    /// Whether the rounds are the dataset's folds (scores are then averaged, SE over folds).
    public var kFold: Bool
    public var description: String
}

public enum ProbeSplits {
    /// The plan for `records` (each with one label): k-fold cross-validation over the dataset's own
    /// folds where every clip has a fold and none is in a test split (ESC-10's five); else the test
    /// split against everything else (validation clips train: the probe has no epochs to choose);
    /// else a seeded `testFraction` held out as `Dataset.holdingOut` does (whole speakers where known).
    /// Inside each round's training part, `innerFolds` picks the cross-validation folds.
    public static func plan(_ records: [ClipRecord], folds: Int = 5, seed: UInt64 = 0, testFraction: Double = 0.2) throws -> ProbePlan {
        guard records.count >= 4 else { throw DatasetError("probe: \(records.count) labelled clips are too few to split") }
        var records = records
        let datasetFolds = Set(records.compactMap(\.fold)).sorted()
        let hasTest = records.contains { $0.isIn(split: "test") }
        if !hasTest && datasetFolds.count >= 2 && records.allSatisfy({ $0.fold != nil }) {
            let rounds = try datasetFolds.map { f -> ProbeRound in
                let train = records.indices.filter { records[$0].fold != f }, test = records.indices.filter { records[$0].fold == f }
                return ProbeRound(name: "fold \(f)", train: train, test: test,
                                  innerFold: try innerFolds(train.map { records[$0] }, folds: folds, seed: seed).folds)
            }
            let inner = try innerFolds(rounds[0].train.map { records[$0] }, folds: folds, seed: seed).description
            return ProbePlan(rounds: rounds, kFold: true,
                             description: "\(datasetFolds.count)-fold cross-validation over the dataset's folds; inside training: \(inner)")
        }
        var how = "the dataset's test split"
        if !hasTest {
            let held = try Dataset(records: records, layout: "probe").holdingOut(testFraction, as: "test", seed: seed)
            records = held.records
            let testSpeakers = Set(records.filter { $0.isIn(split: "test") }.compactMap(\.speaker))
            let disjoint = !testSpeakers.isEmpty && records.allSatisfy { $0.isIn(split: "test") || !testSpeakers.contains($0.speaker ?? "") }
            how = "\(Int(testFraction * 100))% held out as test (\(disjoint ? "whole speakers, " : "stratified, ")seed \(seed))"
        }
        let train = records.indices.filter { !records[$0].isIn(split: "test") }, test = records.indices.filter { records[$0].isIn(split: "test") }
        let (inner, innerHow) = try innerFolds(train.map { records[$0] }, folds: folds, seed: seed)
        let groups = testGroups(test.map { records[$0] })
        let se = groups.map { "standard errors clustered by speaker (\(Set($0).count) in the test split)" } ?? "binomial standard errors"
        return ProbePlan(rounds: [ProbeRound(name: "test", train: train, test: test, innerFold: inner, testGroups: groups)], kFold: false,
                         description: "\(how); inside training: \(innerHow); \(se)")
    }

    /// Each test clip's speaker where every one names a speaker other than its label and there are at
    /// least two (the same rule that makes inner folds speaker-disjoint); else nil.
    static func testGroups(_ records: [ClipRecord]) -> [String]? {
        guard records.allSatisfy(namesSpeakerBesideLabel), Set(records.compactMap(\.speaker)).count >= 2 else { return nil }
        return records.map { $0.speaker! }
    }

    /// Whether a clip names a speaker that is not its label (so its speaker groups clips of several labels).
    static func namesSpeakerBesideLabel(_ r: ClipRecord) -> Bool {
        r.speaker.map { !$0.isEmpty && r.labels != [$0] } ?? false
    }

    /// Cross-validation folds for training clips: the dataset's own folds where every clip has one
    /// and there are at least two; whole speakers where every clip has a speaker that is not its label
    /// (no voice on both sides of a fold: speaker-disjoint), assigned largest first to the smallest fold
    /// in a seeded order; else stratified by class (each class's clips shuffled and dealt round the folds).
    public static func innerFolds(_ records: [ClipRecord], folds k: Int, seed: UInt64) throws -> (folds: [Int], description: String) {
        guard records.count >= 2, k >= 2 else { throw DatasetError("probe: cross-validation needs at least 2 training clips and 2 folds") }
        let own = Set(records.compactMap(\.fold)).sorted()
        if own.count >= 2 && records.allSatisfy({ $0.fold != nil }) {
            return (records.map { own.firstIndex(of: $0.fold!)! }, "\(own.count) folds by the dataset's folds")
        }
        var generator = RandomGenerator(seed: seed &+ 0xC7)
        let speakerKnown = records.allSatisfy(namesSpeakerBesideLabel)
        let speakers = Array(Set(records.compactMap(\.speaker))).sorted()
        if speakerKnown && speakers.count >= 2 {
            let folds = min(k, speakers.count)
            var order = speakers
            generator.shuffle(&order)
            var count: [String: Int] = [:]
            for r in records { count[r.speaker!, default: 0] += 1 }
            order.sort { count[$0]! > count[$1]! }   // stable after the shuffle: equal sizes stay in seeded order
            var size = [Int](repeating: 0, count: folds), fold: [String: Int] = [:]
            for s in order {
                let f = size.indices.min { size[$0] < size[$1] }!
                fold[s] = f; size[f] += count[s]!
            }
            return (records.map { fold[$0.speaker!]! }, "\(folds)-fold speaker-disjoint cross-validation (\(speakers.count) speakers)")
        }
        let folds = min(k, records.count)
        var out = [Int](repeating: 0, count: records.count)
        var byClass: [String: [Int]] = [:]
        for (i, r) in records.enumerated() { byClass[r.labels.first ?? "", default: []].append(i) }
        var next = 0   // continues from class to class so fold sizes stay within one clip of each other
        for label in byClass.keys.sorted() {
            var members = byClass[label]!
            generator.shuffle(&members)
            for i in members { out[i] = next % folds; next += 1 }
        }
        return (out, "\(folds)-fold stratified cross-validation")
    }
}
