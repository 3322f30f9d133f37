import Audio
import Foundation

/// How much better encoder A's embeddings classify than B's on the same clips and splits, for one
/// classifier (logistic regression or kNN): Δ = acc_A − acc_B with a **paired** standard error.
///
/// Two probes on the same test clips make correlated mistakes (the hard clips are hard for both), so
/// the SE of their difference is far smaller than √(SE_A² + SE_B²). Per clip d_i = c_A,i − c_B,i
/// (c 1 for a correct clip): on one test split SE = √(Σ(d_i − d̄)²)/n, clustered by speaker or kit
/// where the probe clusters (`ProbeStatistics.clusteredSE(values:groups:)`); over k folds s/√k of
/// the per-fold differences, as the probe's own fold SE. The discordant counts are McNemar's b and c.
public struct ProbeDifference: Sendable, Equatable {
    public var difference: Double
    public var differenceSE: Double
    /// Test clips A got right and B wrong, and the reverse (summed over folds).
    public var onlyA: Int, onlyB: Int

    public var json: [String: Any] {
        ["accuracy_difference": difference, "accuracy_difference_se": differenceSE, "only_model_right": onlyA, "only_against_right": onlyB]
    }
}

/// One dataset's comparison of two probes (`ProbeComparison.compare`).
public struct ProbeComparison: Sendable {
    public var dataset: String
    public var logistic: ProbeDifference
    public var knn: ProbeDifference

    public var json: [String: Any] { ["logistic": logistic.json, "knn": knn.json] }

    /// Compares two `Probe.run` results of one dataset; they must have scored the same test clips in
    /// the same rounds (the same records and seed give the same plan: embed both on the clips both
    /// could read), else an error naming the dataset.
    public static func compare(_ a: ProbeResult, against b: ProbeResult) throws -> ProbeComparison {
        guard a.testClips == b.testClips, !a.testClips.isEmpty else {
            throw DatasetError("probe: \(a.dataset) was not scored on the same test clips by both models "
                + "(\(a.testClips.map(\.count).reduce(0, +)) and \(b.testClips.map(\.count).reduce(0, +)) test clips); compare probes of the same clips, seed and folds")
        }
        return ProbeComparison(dataset: a.dataset, logistic: try difference(a.logistic, b.logistic, groups: a.testGroups, dataset: a.dataset),
                               knn: try difference(a.knn, b.knn, groups: a.testGroups, dataset: a.dataset))
    }

    static func difference(_ a: ProbeScore, _ b: ProbeScore, groups: [[String]?], dataset: String) throws -> ProbeDifference {
        guard a.roundCorrect.count == b.roundCorrect.count, zip(a.roundCorrect, b.roundCorrect).allSatisfy({ $0.count == $1.count }),
              !a.roundCorrect.isEmpty else {
            throw DatasetError("probe: \(dataset): the two scores have no per-clip results to pair")
        }
        let perClip = zip(a.roundCorrect, b.roundCorrect).map { zip($0, $1).map { ($0 ? 1.0 : 0) - ($1 ? 1.0 : 0) } }
        let onlyA = perClip.joined().filter { $0 > 0 }.count, onlyB = perClip.joined().filter { $0 < 0 }.count
        // Each round's difference is the difference of the rounds' accuracies the scores already hold.
        let rounds = zip(a.roundAccuracy, b.roundAccuracy).map { $0 - $1 }
        let se: Double
        if rounds.count > 1 {
            se = ProbeStatistics.foldSE(rounds)
        } else if let g = groups.first ?? nil {
            se = ProbeStatistics.clusteredSE(values: perClip[0], groups: g)
        } else {
            se = ProbeStatistics.meanSE(perClip[0])
        }
        return ProbeDifference(difference: a.accuracy - b.accuracy, differenceSE: se, onlyA: onlyA, onlyB: onlyB)
    }
}

extension Probe {
    /// Probes `dataset` on two embeddings of its clips and compares them (`ProbeComparison.compare`):
    /// both on the clips both embedded (a clip one model could not read is left out of both), so both
    /// probes split, choose λ and k, and score the same clips. `shared` is how many clips that was.
    public static func compare(_ dataset: Dataset, name: String, labelField: String = "label", embeddings a: [String: [Float]],
                               against b: [String: [Float]], skipped: (model: Int, against: Int) = (0, 0),
                               settings: ProbeSettings = ProbeSettings()) throws
        -> (model: ProbeResult, against: ProbeResult, comparison: ProbeComparison, shared: Int) {
        let both = Set(a.keys).intersection(b.keys)
        let model = try run(dataset, name: name, labelField: labelField, embeddings: a.filter { both.contains($0.key) },
                            skipped: skipped.model, settings: settings)
        let against = try run(dataset, name: name, labelField: labelField, embeddings: b.filter { both.contains($0.key) },
                              skipped: skipped.against, settings: settings)
        return (model, against, try ProbeComparison.compare(model, against: against), both.count)
    }
}
