import Foundation

/// Classification metrics with scikit-learn's definitions.
public enum Metrics {
    public static func accuracy(_ predicted: [Int], _ target: [Int]) -> Double {
        guard !target.isEmpty else { return 0 }
        return Double(zip(predicted, target).filter { $0 == $1 }.count) / Double(target.count)
    }

    /// rows = true class, columns = predicted class.
    public static func confusionMatrix(_ predicted: [Int], _ target: [Int], classes: Int) -> [[Int]] {
        var m = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (p, t) in zip(predicted, target) where p >= 0 && p < classes && t >= 0 && t < classes { m[t][p] += 1 }
        return m
    }

    /// Unweighted mean of per-class F1 over the classes present in targets or predictions.
    public static func macroF1(_ predicted: [Int], _ target: [Int], classes: Int) -> Double {
        let m = confusionMatrix(predicted, target, classes: classes)
        var total = 0.0, counted = 0
        for c in 0..<classes {
            let tp = Double(m[c][c])
            let fp = Double((0..<classes).reduce(0) { $0 + m[$1][c] }) - tp
            let fn = Double(m[c].reduce(0, +)) - tp
            guard tp + fp + fn > 0 else { continue }
            total += 2 * tp / (2 * tp + fp + fn)
            counted += 1
        }
        return counted == 0 ? 0 : total / Double(counted)
    }

    /// Expected calibration error (Guo et al., 2017) over `bins` equal-width confidence bins
    /// B_m = ((m − 1)/M, m/M] (a confidence of 0 falls in the first):
    /// ECE = Σ_m (|B_m| / N) · |accuracy(B_m) − mean confidence(B_m)|, with confidence the top
    /// probability of a clip and `correct` whether its top class is the label.
    public static func expectedCalibrationError(confidences: [Float], correct: [Bool], bins: Int = 15) -> Double {
        guard !confidences.isEmpty, confidences.count == correct.count, bins > 0 else { return 0 }
        var count = [Int](repeating: 0, count: bins), hits = [Int](repeating: 0, count: bins), sum = [Double](repeating: 0, count: bins)
        for (confidence, ok) in zip(confidences, correct) {
            let c = confidence.isFinite ? confidence : 0   // a diverged model's NaN: no confidence (Int(NaN) traps)
            let m = Swift.min(Swift.max(Int((Double(c) * Double(bins)).rounded(.up)) - 1, 0), bins - 1)
            count[m] += 1; sum[m] += Double(c); if ok { hits[m] += 1 }
        }
        var ece = 0.0
        for m in 0..<bins where count[m] > 0 {
            ece += Double(count[m]) / Double(confidences.count) * Swift.abs(Double(hits[m]) / Double(count[m]) - sum[m] / Double(count[m]))
        }
        return ece
    }

    /// Average precision of one class: Σ (R_n − R_{n−1}) P_n over thresholds at each score
    /// (`average_precision_score`); nil when the class has no positives.
    public static func averagePrecision(scores: [Float], labels: [Bool]) -> Double? {
        let positives = labels.filter { $0 }.count
        guard positives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var tp = 0, fp = 0, ap = 0.0, previousRecall = 0.0
        var i = 0
        while i < order.count {
            // Tied scores form one threshold. The group always takes its first element: a NaN equals
            // nothing, itself included, and a group that could be empty never ended (a diverged model's
            // validation hung here).
            var j = i
            repeat {
                if labels[order[j]] { tp += 1 } else { fp += 1 }
                j += 1
            } while j < order.count && scores[order[j]] == scores[order[i]]
            let recall = Double(tp) / Double(positives), precision = Double(tp) / Double(tp + fp)
            ap += (recall - previousRecall) * precision
            previousRecall = recall
            i = j
        }
        return ap
    }

    /// ROC AUC of one class (Mann-Whitney with ties counted half); nil without both classes.
    public static func rocAUC(scores: [Float], labels: [Bool]) -> Double? {
        let pos = labels.filter { $0 }.count, neg = labels.count - pos
        guard pos > 0, neg > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0, i = 0
        while i < order.count {
            var j = i + 1   // at least one element: NaN == NaN is false (see averagePrecision)
            while j < order.count && scores[order[j]] == scores[order[i]] { j += 1 }
            let rank = Double(i + j + 1) / 2   // average 1-based rank of the tie group
            for k in i..<j where labels[order[k]] { rankSum += rank }
            i = j
        }
        return (rankSum - Double(pos) * Double(pos + 1) / 2) / (Double(pos) * Double(neg))
    }

    /// d' = √2 · Φ⁻¹(AUC), AudioSet's companion to AUC.
    public static func dPrime(auc: Double) -> Double { 2.0.squareRoot() * inverseNormalCDF(auc) }

    /// Acklam's rational approximation of Φ⁻¹ (relative error < 1.2e-9).
    public static func inverseNormalCDF(_ p: Double) -> Double {
        if p <= 0 { return -.infinity }
        if p >= 1 { return .infinity }
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        let low = 0.02425
        if p < low {
            let q = (-2 * log(p)).squareRoot()
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        if p > 1 - low { return -inverseNormalCDF(1 - p) }
        let q = p - 0.5, r = q * q
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    }

    /// Per class: average precision, ROC AUC and d' (nil where the class has no positive, or no negative,
    /// clip), and its positives.
    public static func perClass(scores: [[Float]], targets: [[Bool]]) -> [ClassMetric] {
        guard let classes = scores.first?.count else { return [] }
        return (0..<classes).map { c in
            let s = scores.map { $0[c] }, l = targets.map { $0[c] }
            let auc = rocAUC(scores: s, labels: l)
            return ClassMetric(ap: averagePrecision(scores: s, labels: l), auc: auc, dPrime: auc.map(dPrime), positives: l.filter { $0 }.count)
        }
    }

    /// Multi-label summary: mean AP and mean AUC over classes that have positives, and d'.
    public static func multiLabel(scores: [[Float]], targets: [[Bool]]) -> (mAP: Double, auc: Double, dPrime: Double) {
        guard let classes = scores.first?.count else { return (0, 0, 0) }
        var aps: [Double] = [], aucs: [Double] = []
        for c in 0..<classes {
            let s = scores.map { $0[c] }, l = targets.map { $0[c] }
            if let ap = averagePrecision(scores: s, labels: l) { aps.append(ap) }
            if let auc = rocAUC(scores: s, labels: l) { aucs.append(auc) }
        }
        let mAP = aps.isEmpty ? 0 : aps.reduce(0, +) / Double(aps.count)
        let auc = aucs.isEmpty ? 0.5 : aucs.reduce(0, +) / Double(aucs.count)
        return (mAP, auc, dPrime(auc: auc))
    }
}

/// One class's ranking metrics on a split (AudioSet-style evaluation reports them per class).
public struct ClassMetric: Sendable, Equatable {
    public var ap: Double?, auc: Double?, dPrime: Double?
    public var positives: Int
}
