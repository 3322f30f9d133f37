import Audio
import Foundation

/// One dataset's probe: how it was split and both classifiers' test scores.
public struct ProbeResult: Sendable {
    public var dataset: String
    public var layout: String
    public var labelField: String
    public var clips: Int
    public var classes: Int
    public var dims: Int
    public var plan: String
    public var rounds: [(name: String, train: Int, test: Int)]
    public var logistic: ProbeScore
    public var knn: ProbeScore
    /// Each round's test clips (paths) and, where the plan clusters its SEs, their groups: two probes
    /// can be compared clip by clip only where these agree.
    public var testClips: [[String]] = []
    public var testGroups: [[String]?] = []
    /// Clips without exactly one label (not scored) and clips that could not be embedded.
    public var leftOut: Int, skipped: Int

    public var json: [String: Any] {
        ["dataset": dataset, "layout": layout, "label_field": labelField, "clips": clips, "classes": classes, "dims": dims,
         "plan": plan, "rounds": rounds.map { ["name": $0.name, "train": $0.train, "test": $0.test] as [String: Any] },
         "logistic": logistic.json, "knn": knn.json, "left_out": leftOut, "skipped": skipped]
    }
}

public enum Probe {
    /// Probes `dataset` (labelled by its chosen field) on `embeddings` keyed by path: single-label
    /// clips with an embedding are split by `ProbeSplits.plan` and scored by `LinearProbe.run`.
    public static func run(_ dataset: Dataset, name: String, labelField: String = "label", embeddings: [String: [Float]],
                           skipped: Int = 0, settings: ProbeSettings = ProbeSettings()) throws -> ProbeResult {
        let single = dataset.records.filter { $0.labels.count == 1 }
        if single.isEmpty {
            throw DatasetError("probe: \(name) has no clip with exactly one label (the probe scores single-label classification)")
        }
        let records = single.filter { embeddings[$0.path] != nil }
        let classes = Array(Set(records.map { $0.labels[0] })).sorted { a, b in
            if let x = Int(a), let y = Int(b) { return x < y }
            return a < b
        }
        guard classes.count >= 2 else { throw DatasetError("probe: \(name) has \(classes.count) class among its embedded clips") }
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        let dims = embeddings[records[0].path]!.count
        if let bad = records.first(where: { embeddings[$0.path]!.count != dims }) {
            throw DatasetError("probe: \(bad.path) has an embedding of \(embeddings[bad.path]!.count) values, not \(dims)")
        }
        let x = FeatureMatrix(rows: records.count, cols: dims, values: records.flatMap { embeddings[$0.path]!.map(Double.init) })
        let plan = try ProbeSplits.plan(records, folds: settings.folds, seed: settings.seed, testFraction: settings.testFraction)
        let (lr, knn) = LinearProbe.run(x, labels: records.map { index[$0.labels[0]]! }, classes: classes.count, plan: plan, settings: settings)
        return ProbeResult(dataset: name, layout: dataset.layout, labelField: labelField, clips: records.count, classes: classes.count,
                           dims: dims, plan: plan.description, rounds: plan.rounds.map { ($0.name, $0.train.count, $0.test.count) },
                           logistic: lr, knn: knn, testClips: plan.rounds.map { $0.test.map { records[$0].path } },
                           testGroups: plan.rounds.map(\.testGroups), leftOut: dataset.records.count - single.count, skipped: skipped)
    }
}
