import Audio
import Engine
import Foundation
import NN

/// A classifier's scores on a dataset split.
public struct EvaluationResult: Sendable, CustomStringConvertible {
    public var accuracy: Double
    public var macroF1: Double
    public var confusion: [[Int]]
    public var mAP: Double, auc: Double, dPrime: Double
    public var clips: Int
    /// AP, AUC and d' of each class, in the classifier's class order.
    public var perClass: [ClassMetric]
    /// Expected calibration error of the top-class probability, 15 bins (`Metrics.expectedCalibrationError`).
    public var ece: Double

    public init(accuracy: Double, macroF1: Double, confusion: [[Int]], mAP: Double, auc: Double, dPrime: Double, clips: Int,
                perClass: [ClassMetric] = [], ece: Double = .nan) {
        self.accuracy = accuracy; self.macroF1 = macroF1; self.confusion = confusion
        self.mAP = mAP; self.auc = auc; self.dPrime = dPrime; self.clips = clips; self.perClass = perClass
        self.ece = ece
    }

    /// Per-class metrics as JSON rows (`class`, `ap`, `auc`, `d_prime`, `positives`; null where undefined
    /// or infinite: a perfect AUC has d' = ∞).
    public func perClassJSON(classes: [String]) -> [[String: Any]] {
        func value(_ x: Double?) -> Any { x.flatMap { $0.isFinite ? $0 : nil } ?? NSNull() }
        return zip(classes, perClass).map { name, m in
            ["class": name, "ap": value(m.ap), "auc": value(m.auc), "d_prime": value(m.dPrime), "positives": m.positives]
        }
    }

    public var json: [String: Any] {
        ["accuracy": accuracy, "macro_f1": macroF1, "confusion_matrix": confusion, "mAP": mAP, "auc": auc, "d_prime": dPrime, "clips": clips, "ece": ece]
    }

    public var description: String {
        String(format: "accuracy %.3f, macro F1 %.3f, mAP %.3f over %d clips", accuracy, macroF1, mAP, clips)
    }
}

/// Scores a classifier on a dataset, every clip from start to end (clips with no label or a label
/// outside its classes are left out; none left throws). Unreadable clips are skipped and named in the
/// returned report (`report`, when a run shares one). `progress`, where given, receives a line with
/// an ETA every 10 seconds of a long evaluation; `perClip`, each scored clip's path, labels and scores.
public func evaluate(_ classifier: Classifier, on data: Dataset, batchSize: Int = 8,
                     report: SkipReport = SkipReport(), progress: ((String) -> Void)? = nil,
                     perClip: ((ClipRecord, ClassScores) throws -> Void)? = nil) throws -> (EvaluationResult, SkipReport) {
    let known = data.records.filter { $0.labels.allSatisfy(classifier.classes.contains) && !$0.labels.isEmpty }
    guard !known.isEmpty else {
        let shown = classifier.classes.prefix(8).joined(separator: ", ") + (classifier.classes.count > 8 ? ", ..." : "")
        throw NNError("evaluate: none of the \(data.records.count) clips has a label among the model's \(classifier.classes.count) classes (\(shown))")
    }
    var predicted: [Int] = [], target: [Int] = [], scores: [[Float]] = [], truth: [[Bool]] = []
    let k = classifier.classes.count
    try classifier.pass(batchSize).run(known.map(\.path), report: report, label: "evaluate", progress: progress, classifier.scores) { i, p in
        let row = p.toArray()
        let labels = known[i].labels.compactMap(classifier.classes.firstIndex(of:))
        // Scores with a NaN or infinity (a diverged model) predict no class: the clip counts as wrong. The
        // largest of such a row would be whichever comparison NaN happened to lose.
        let finite = row.allSatisfy(\.isFinite)
        predicted.append(finite ? row.indices.max { row[$0] < row[$1] } ?? 0 : -1); target.append(labels.first ?? -1)
        scores.append(row)
        truth.append((0..<k).map(labels.contains))
        try perClip?(known[i], ClassScores(classes: classifier.classes, scores: row))
    }
    return (EvaluationResult(scores: scores, predicted: predicted, target: target, truth: truth), report)
}

extension EvaluationResult {
    /// The metrics of score rows [clips][K] (probabilities), each clip's predicted class (-1 for none),
    /// its first true class and its true classes as K flags: what `evaluate` and zero-shot evaluation report.
    public init(scores: [[Float]], predicted: [Int], target: [Int], truth: [[Bool]]) {
        let k = truth.first?.count ?? 0
        let ml = Metrics.multiLabel(scores: scores, targets: truth)
        let ece = Metrics.expectedCalibrationError(confidences: scores.map { $0.max() ?? 0 }, correct: zip(predicted, target).map { $0 == $1 })
        self.init(accuracy: Metrics.accuracy(predicted, target), macroF1: Metrics.macroF1(predicted, target, classes: k),
                  confusion: Metrics.confusionMatrix(predicted, target, classes: k), mAP: ml.mAP, auc: ml.auc,
                  dPrime: ml.dPrime, clips: predicted.count, perClass: Metrics.perClass(scores: scores, targets: truth), ece: ece)
    }
}
