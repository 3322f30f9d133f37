import Foundation

/// What the probe tries and how hard.
public struct ProbeSettings: Codable, Sendable {
    /// L2 strengths λ (of the mean loss) cross-validation chooses from.
    public var lambdas: [Double] = [1e-4, 1e-3, 1e-2, 1e-1, 1, 10]
    /// Neighbour counts cross-validation chooses from (capped at the training clips).
    public var ks: [Int] = [1, 5, 10, 20]
    /// Cross-validation folds inside a training split (fewer where fewer speakers or clips).
    public var folds = 5
    /// L-BFGS iterations per fit (each λ is warm-started from the previous, larger one).
    public var iterations = 100
    public var seed: UInt64 = 0
    /// Test fraction held out where the data has neither a test split nor folds.
    public var testFraction = 0.2
    public init() {}
}

/// One classifier's test scores over a plan's rounds.
public struct ProbeScore: Sendable {
    /// Accuracy and macro-F1: of the one test split, or the mean over folds.
    public var accuracy: Double, macroF1: Double
    /// Binomial and bootstrap SEs for one split (clustered by speaker where the plan has test groups,
    /// `ProbeRound.testGroups`); s/√k over k folds.
    public var accuracySE: Double, macroF1SE: Double
    /// λ or k that cross-validation chose, per round.
    public var chosen: [Double]
    public var roundAccuracy: [Double], roundMacroF1: [Double]
    /// Whether each test clip was classified right, per round, in the plan's test order: what a paired
    /// comparison of two encoders on the same clips reads (`ProbeComparison`).
    public var roundCorrect: [[Bool]] = []

    public var json: [String: Any] {
        ["accuracy": accuracy, "accuracy_se": accuracySE, "macro_f1": macroF1, "macro_f1_se": macroF1SE,
         "chosen": chosen, "round_accuracy": roundAccuracy, "round_macro_f1": roundMacroF1]
    }
}

/// The linear probe and kNN on fixed clip embeddings: per round, features standardised on the
/// training clips, λ and k chosen by cross-validation inside them, then scored once on the test clips.
public enum LinearProbe {
    public static func run(_ x: FeatureMatrix, labels: [Int], classes: Int, plan: ProbePlan,
                           settings: ProbeSettings = ProbeSettings()) -> (logistic: ProbeScore, knn: ProbeScore) {
        var lr: [ScoredRound] = [], nn: [ScoredRound] = []
        for round in plan.rounds {
            let yTrain = round.train.map { labels[$0] }, yTest = round.test.map { labels[$0] }
            let xTrain = x.rows(round.train), xTest = x.rows(round.test)
            let lambda = chooseLambda(xTrain, yTrain, folds: round.innerFold, classes: classes, settings: settings)
            let scaler = Standardizer(fitting: xTrain)
            let (sTrain, sTest) = (scaler.apply(xTrain), scaler.apply(xTest))
            let model = fitPath(sTrain, yTrain, classes: classes, lambdas: settings.lambdas.filter { $0 >= lambda }, iterations: settings.iterations)
            lr.append(ScoredRound(predicted: model.predict(sTest), target: yTest, chosen: lambda, groups: round.testGroups))
            let k = chooseK(xTrain, yTrain, folds: round.innerFold, classes: classes, ks: settings.ks)
            let knn = CosineNeighbours(train: sTrain, labels: yTrain, classes: classes)
            nn.append(ScoredRound(predicted: knn.predict(sTest, ks: [k])[k]!, target: yTest, chosen: Double(k), groups: round.testGroups))
        }
        return (score(lr, classes: classes, kFold: plan.kFold, seed: settings.seed),
                score(nn, classes: classes, kFold: plan.kFold, seed: settings.seed))
    }

    /// One round's test predictions, what cross-validation chose, and the test clips' groups if known.
    struct ScoredRound {
        var predicted: [Int], target: [Int], chosen: Double
        var groups: [String]? = nil
    }

    static func score(_ rounds: [ScoredRound], classes: Int, kFold: Bool, seed: UInt64) -> ProbeScore {
        let acc = rounds.map { Metrics.accuracy($0.predicted, $0.target) }
        let f1 = rounds.map { Metrics.macroF1($0.predicted, $0.target, classes: classes) }
        let mean: ([Double]) -> Double = { $0.reduce(0, +) / Double(max($0.count, 1)) }
        let (a, f) = (mean(acc), mean(f1))
        let (aSE, fSE): (Double, Double)
        if kFold || rounds.count > 1 {
            (aSE, fSE) = (ProbeStatistics.foldSE(acc), ProbeStatistics.foldSE(f1))
        } else {
            let r = rounds[0]
            if let groups = r.groups {
                aSE = ProbeStatistics.clusteredSE(correct: zip(r.predicted, r.target).map { $0 == $1 }, groups: groups)
                fSE = ProbeStatistics.clusterBootstrapMacroF1SE(predicted: r.predicted, target: r.target, groups: groups, classes: classes, seed: seed)
            } else {
                aSE = ProbeStatistics.binomialSE(accuracy: a, n: r.target.count)
                fSE = ProbeStatistics.bootstrapMacroF1SE(predicted: r.predicted, target: r.target, classes: classes, seed: seed)
            }
        }
        return ProbeScore(accuracy: a, macroF1: f, accuracySE: aSE, macroF1SE: fSE, chosen: rounds.map(\.chosen),
                          roundAccuracy: acc, roundMacroF1: f1, roundCorrect: rounds.map { zip($0.predicted, $0.target).map { $0 == $1 } })
    }

    /// Fits along `lambdas` from the largest down, each fit warm-started from the last: small λ (slow
    /// to converge from zero on near-separable data) start close to their solution, within the same
    /// iteration budget. Returns the model of the smallest λ.
    static func fitPath(_ x: FeatureMatrix, _ y: [Int], classes: Int, lambdas: [Double], iterations: Int,
                        each: ((Double, LogisticRegression) -> Void)? = nil) -> LogisticRegression {
        var model = LogisticRegression(dims: x.cols, classes: classes, lambda: lambdas.max() ?? 1)
        for lambda in lambdas.sorted(by: >) {
            model.lambda = lambda
            model.fit(x, y, iterations: iterations)
            each?(lambda, model)
        }
        return model
    }

    /// The λ with the best cross-validated accuracy (pooled over folds); ties go to the lower held-out
    /// log-loss, then to the larger λ. Log-loss as the tie-break lets the choice follow the data where
    /// accuracy cannot tell strengths apart (all perfect on separable data).
    public static func chooseLambda(_ x: FeatureMatrix, _ y: [Int], folds: [Int], classes: Int, settings: ProbeSettings) -> Double {
        let scores = crossValidatedLambdas(x, y, folds: folds, classes: classes, settings: settings)
        return scores.max { a, b in
            (a.accuracy, -a.logLoss, a.lambda) < (b.accuracy, -b.logLoss, b.lambda)
        }?.lambda ?? settings.lambdas.first ?? 1
    }

    /// Pooled held-out accuracy and mean log-loss of each λ (standardised per fold on its training part).
    public static func crossValidatedLambdas(_ x: FeatureMatrix, _ y: [Int], folds: [Int], classes: Int,
                                             settings: ProbeSettings) -> [(lambda: Double, accuracy: Double, logLoss: Double)] {
        var correct: [Double: Int] = [:], loss: [Double: Double] = [:]
        var total = 0
        for f in Set(folds).sorted() {
            let tr = folds.indices.filter { folds[$0] != f }, va = folds.indices.filter { folds[$0] == f }
            guard !tr.isEmpty, !va.isEmpty else { continue }
            let scaler = Standardizer(fitting: x.rows(tr))
            let (xtr, xva) = (scaler.apply(x.rows(tr)), scaler.apply(x.rows(va)))
            let (ytr, yva) = (tr.map { y[$0] }, va.map { y[$0] })
            total += va.count
            _ = fitPath(xtr, ytr, classes: classes, lambdas: settings.lambdas, iterations: settings.iterations) { lambda, model in
                let p = model.probabilities(xva)
                for (row, target) in zip(p, yva) {
                    let best = row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) } ?? 0
                    if best == target { correct[lambda, default: 0] += 1 }
                    loss[lambda, default: 0] -= Foundation.log(max(row[target], 1e-15))
                }
            }
        }
        return settings.lambdas.map { l in
            (l, Double(correct[l] ?? 0) / Double(max(total, 1)), (loss[l] ?? .infinity) / Double(max(total, 1)))
        }
    }

    /// The k with the best cross-validated accuracy (pooled over folds); ties go to the larger k, the
    /// smoother vote.
    public static func chooseK(_ x: FeatureMatrix, _ y: [Int], folds: [Int], classes: Int, ks: [Int]) -> Int {
        var correct: [Int: Int] = [:]
        for f in Set(folds).sorted() {
            let tr = folds.indices.filter { folds[$0] != f }, va = folds.indices.filter { folds[$0] == f }
            guard !tr.isEmpty, !va.isEmpty else { continue }
            let scaler = Standardizer(fitting: x.rows(tr))
            let knn = CosineNeighbours(train: scaler.apply(x.rows(tr)), labels: tr.map { y[$0] }, classes: classes)
            for (k, predicted) in knn.predict(scaler.apply(x.rows(va)), ks: ks) {
                correct[k, default: 0] += zip(predicted, va).filter { $0 == y[$1] }.count
            }
        }
        return ks.max { a, b in (correct[a] ?? 0, a) < (correct[b] ?? 0, b) } ?? 1
    }
}
