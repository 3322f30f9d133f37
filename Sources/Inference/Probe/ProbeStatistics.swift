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

    /// Bootstrap standard error of macro-F1 on one test set (macro-F1 has no closed form): the sample
    /// standard deviation of macro-F1 over `resamples` draws of n clips with replacement, seeded.
    public static func bootstrapMacroF1SE(predicted: [Int], target: [Int], classes: Int, resamples: Int = 1000, seed: UInt64 = 0) -> Double {
        let n = predicted.count
        guard n > 0, resamples >= 2 else { return .nan }
        var generator = RandomGenerator(seed: seed)
        var scores: [Double] = []
        scores.reserveCapacity(resamples)
        var p = [Int](repeating: 0, count: n), t = [Int](repeating: 0, count: n)
        for _ in 0..<resamples {
            for i in 0..<n {
                let j = Int(generator.next() % UInt64(n))
                (p[i], t[i]) = (predicted[j], target[j])
            }
            scores.append(Metrics.macroF1(p, t, classes: classes))
        }
        // A bootstrap's standard error is the spread of its draws itself (not divided by √draws).
        return sampleStandardDeviation(scores)
    }
}
