import Engine
import Foundation

/// Standard errors of the probe's scores, so that a difference between two encoders can be read
/// against the noise of a few hundred test clips.
public enum ProbeStatistics {
    /// Binomial standard error of an accuracy p measured on n independent clips: √(p(1 − p)/n).
    public static func binomialSE(accuracy p: Double, n: Int) -> Double {
        n > 0 ? (p * (1 - p) / Double(n)).squareRoot() : .nan
    }

    /// Standard error of the mean of k per-fold scores: s/√k, s the sample standard deviation
    /// √(Σ(v − v̄)²/(k − 1)). NaN for fewer than two folds.
    public static func foldSE(_ values: [Double]) -> Double {
        sampleStandardDeviation(values) / Double(values.count).squareRoot()
    }

    /// √(Σ(v − v̄)²/(k − 1)); NaN for fewer than two values.
    public static func sampleStandardDeviation(_ values: [Double]) -> Double {
        let k = Double(values.count)
        guard values.count >= 2 else { return .nan }
        let mean = values.reduce(0, +) / k
        return (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (k - 1)).squareRoot()
    }

    /// Cluster-robust standard error of an accuracy whose test clips come in groups that share more
    /// than their label (a drum kit's samples, a speaker's recordings), so are not independent:
    /// `clusteredSE(values:groups:)` of c_i, 1 for a correct clip. With one clip a group it is the
    /// binomial SE times √(n/(n − 1)); with a few large groups whose accuracies differ it is much
    /// larger, as it should be. NaN for fewer than two groups.
    public static func clusteredSE(correct: [Bool], groups: [String]) -> Double {
        clusteredSE(values: correct.map { $0 ? 1 : 0 }, groups: groups)
    }

    /// Cluster-robust standard error of the mean v̄ of n per-clip values in G groups:
    /// √(G/(G − 1) · Σ_g (Σ_{i∈g} (v_i − v̄))²) / n, the sandwich variance of a mean with the
    /// small-sample factor G/(G − 1). NaN for fewer than two groups or misaligned groups.
    public static func clusteredSE(values: [Double], groups: [String]) -> Double {
        let n = values.count
        let g = Set(groups).count
        guard n > 0, groups.count == n, g >= 2 else { return .nan }
        let mean = values.reduce(0, +) / Double(n)
        var residual: [String: Double] = [:]
        for (v, group) in zip(values, groups) { residual[group, default: 0] += v - mean }
        let sum = residual.values.reduce(0) { $0 + $1 * $1 }
        return (Double(g) / Double(g - 1) * sum).squareRoot() / Double(n)
    }

    /// Standard error of the mean of n independent per-clip values, √(Σ(v − v̄)²)/n: for 0/1 values
    /// the binomial SE, for paired differences c_A − c_B ∈ {−1, 0, 1} the SE of a difference in
    /// accuracy on the same clips. NaN for no values.
    public static func meanSE(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let n = Double(values.count)
        let mean = values.reduce(0, +) / n
        return values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }.squareRoot() / n
    }

    /// Bootstrap standard error of macro-F1 on one test set (macro-F1 has no closed form): the sample
    /// standard deviation of macro-F1 over `resamples` draws of n clips with replacement, seeded.
    public static func bootstrapMacroF1SE(predicted: [Int], target: [Int], classes: Int, resamples: Int = 1000, seed: UInt64 = 0) -> Double {
        guard predicted.count == target.count else { return .nan }
        return bootstrapMacroF1SE(clusters: predicted.indices.map { [$0] }, predicted: predicted, target: target, classes: classes,
                                  resamples: resamples, seed: seed)
    }

    /// `bootstrapMacroF1SE` for grouped test clips: each draw takes G whole groups with replacement (a
    /// cluster bootstrap), so the spread counts how much the score depends on which groups were tested.
    /// NaN for fewer than two groups.
    public static func clusterBootstrapMacroF1SE(predicted: [Int], target: [Int], groups: [String], classes: Int,
                                                 resamples: Int = 1000, seed: UInt64 = 0) -> Double {
        var members: [String: [Int]] = [:]
        for (i, g) in groups.enumerated() { members[g, default: []].append(i) }
        guard predicted.count == target.count, groups.count == target.count, members.count >= 2 else { return .nan }
        return bootstrapMacroF1SE(clusters: members.keys.sorted().map { members[$0]! }, predicted: predicted, target: target,
                                  classes: classes, resamples: resamples, seed: seed)
    }

    /// Each of `resamples` draws takes as many clusters (lists of clip indices) as there are, with
    /// replacement; one clip a cluster is the plain bootstrap.
    static func bootstrapMacroF1SE(clusters: [[Int]], predicted: [Int], target: [Int], classes: Int, resamples: Int, seed: UInt64) -> Double {
        guard !clusters.isEmpty, resamples >= 2 else { return .nan }
        var generator = RandomGenerator(seed: seed)
        var scores: [Double] = []
        scores.reserveCapacity(resamples)
        var p: [Int] = [], t: [Int] = []
        for _ in 0..<resamples {
            p.removeAll(keepingCapacity: true); t.removeAll(keepingCapacity: true)
            for _ in clusters.indices {
                for i in clusters[Int(generator.next() % UInt64(clusters.count))] { p.append(predicted[i]); t.append(target[i]) }
            }
            scores.append(Metrics.macroF1(p, t, classes: classes))
        }
        // A bootstrap's standard error is the spread of its draws itself (not divided by √draws).
        return sampleStandardDeviation(scores)
    }
}
