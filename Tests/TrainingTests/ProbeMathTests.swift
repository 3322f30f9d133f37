import Engine
import Foundation
import XCTest
@testable import Inference

/// Gaussian blobs: `perClass` points around each mean, σ = `sigma` in every dimension.
func blobs(_ means: [[Double]], perClass: Int, sigma: Double, seed: UInt64) -> (FeatureMatrix, [Int]) {
    var g = RandomGenerator(seed: seed)
    var rows: [[Double]] = [], labels: [Int] = []
    for _ in 0..<perClass {
        for (c, m) in means.enumerated() {
            rows.append(m.map { $0 + sigma * Double(g.nextNormal()) }); labels.append(c)
        }
    }
    return (FeatureMatrix(rows), labels)
}

/// Stratified folds 0..<k dealt round each class in turn (the points are interleaved by class).
func dealtFolds(_ n: Int, _ k: Int) -> [Int] { (0..<n).map { ($0 / 2) % k } }

final class ProbeMathTests: XCTestCase {
    func testLossGradientMatchesFiniteDifferences() {
        var g = RandomGenerator(seed: 3)
        let (n, d, c) = (12, 4, 3)
        let x = FeatureMatrix(rows: n, cols: d, values: (0..<(n * d)).map { _ in Double(g.nextNormal()) })
        let y = (0..<n).map { $0 % c }
        let w = (0..<((d + 1) * c)).map { _ in 0.5 * Double(g.nextNormal()) }
        let lambda = 0.3
        let (_, grad) = LogisticRegression.loss(w, x: x, y: y, classes: c, lambda: lambda)
        let h = 1e-6
        for i in w.indices {
            var plus = w, minus = w
            plus[i] += h; minus[i] -= h
            let numeric = (LogisticRegression.loss(plus, x: x, y: y, classes: c, lambda: lambda).value
                           - LogisticRegression.loss(minus, x: x, y: y, classes: c, lambda: lambda).value) / (2 * h)
            XCTAssertEqual(grad[i], numeric, accuracy: 1e-7 + 1e-6 * abs(numeric), "parameter \(i)")
        }
        // The penalty is on the weights only: with x = 0 the bias gradient is the residual alone.
        let zero = FeatureMatrix(rows: 1, cols: d, values: [Double](repeating: 0, count: d))
        let onlyBias = LogisticRegression.loss(w, x: zero, y: [0], classes: c, lambda: 10).gradient
        let z = Array(w[(d * c)...]), e = z.map { Foundation.exp($0 - z.max()!) }
        XCTAssertEqual(onlyBias[d * c], e[0] / e.reduce(0, +) - 1, accuracy: 1e-12)
    }

    func testLBFGSFindsTheMinimumOfRosenbrock() {
        let r = LBFGS.minimize([-1.2, 1], iterations: 200, tolerance: 1e-8) { v in
            let (a, b) = (v[0], v[1])
            return ((1 - a) * (1 - a) + 100 * (b - a * a) * (b - a * a),
                    [-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
        }
        XCTAssertEqual(r.x[0], 1, accuracy: 1e-4)
        XCTAssertEqual(r.x[1], 1, accuracy: 1e-4)
        XCTAssertLessThan(r.iterations, 200)
    }

    func testSeparableBlobsAreClassifiedPerfectlyWithWeakRegularisation() {
        let means = [[0.0, 0], [10, 0], [0, 10]]
        let (x, y) = blobs(means, perClass: 40, sigma: 1, seed: 1)
        let (xt, yt) = blobs(means, perClass: 100, sigma: 1, seed: 2)
        let settings = ProbeSettings()
        let lambda = LinearProbe.chooseLambda(x, y, folds: dealtFolds(x.rows, 5), classes: 3, settings: settings)
        XCTAssertLessThanOrEqual(lambda, 1e-2, "separable classes: confident predictions win on held-out log-loss")
        let s = Standardizer(fitting: x)
        var model = LogisticRegression(dims: 2, classes: 3, lambda: lambda)
        model.fit(s.apply(x), y, iterations: 200)
        XCTAssertGreaterThanOrEqual(Metrics.accuracy(model.predict(s.apply(xt)), yt), 0.99)
    }

    func testOverlappingBlobsReachBayesAccuracy() {
        // One informative dimension (means ±1, σ = 1) and three of noise: the Bayes rule x₀ > 0 is right
        // with probability Φ(1) = 0.8413.
        let means = [[-1.0, 0, 0, 0], [1, 0, 0, 0]]
        let (x, y) = blobs(means, perClass: 500, sigma: 1, seed: 4)
        let (xt, yt) = blobs(means, perClass: 2000, sigma: 1, seed: 5)
        let plan = ProbePlan(rounds: [ProbeRound(name: "test", train: Array(0..<x.rows), test: [], innerFold: dealtFolds(x.rows, 5))],
                             kFold: false, description: "")
        let lambda = LinearProbe.chooseLambda(x, y, folds: plan.rounds[0].innerFold, classes: 2, settings: ProbeSettings())
        let s = Standardizer(fitting: x)
        var model = LogisticRegression(dims: 4, classes: 2, lambda: lambda)
        model.fit(s.apply(x), y)
        // 4000 test clips: the binomial SE is 0.006, so 0.02 is over three of them.
        XCTAssertEqual(Metrics.accuracy(model.predict(s.apply(xt)), yt), 0.8413, accuracy: 0.02)
    }

    func testRegularisationFollowsTheData() {
        // Few clips, many noise dimensions and one weak signal (Bayes 84%): a weak penalty fits the noise
        // (40 clips in 60 dimensions are separable), a strong one generalises.
        var means = [[Double](repeating: 0, count: 60), [Double](repeating: 0, count: 60)]
        means[0][0] = -1; means[1][0] = 1
        let (x, y) = blobs(means, perClass: 20, sigma: 1, seed: 6)
        let noisy = LinearProbe.chooseLambda(x, y, folds: dealtFolds(x.rows, 5), classes: 2, settings: ProbeSettings())
        let (xs, ys) = blobs([[0.0, 0], [10, 0], [0, 10]], perClass: 40, sigma: 1, seed: 1)
        let separable = LinearProbe.chooseLambda(xs, ys, folds: dealtFolds(xs.rows, 5), classes: 3, settings: ProbeSettings())
        XCTAssertGreaterThanOrEqual(noisy, 0.1)
        XCTAssertGreaterThan(noisy, separable)
    }

    func testCosineNeighboursOnAToySet() {
        // Class 0 points near the x axis, class 1 near the y axis; lengths differ (cosine ignores them).
        let train = FeatureMatrix([[1, 0.1], [5, 0.2], [3, -0.1], [0.1, 1], [-0.2, 4], [0.3, 2]])
        let knn = CosineNeighbours(train: train, labels: [0, 0, 0, 1, 1, 1], classes: 2)
        let queries = FeatureMatrix([[10, 1], [0, 0.5], [1, 1.1]])
        let p = knn.predict(queries, ks: [1, 3, 6])
        XCTAssertEqual(p[1], [0, 1, 1])
        XCTAssertEqual(p[3], [0, 1, 1])
        // k = 6: three votes each; the tie goes to the class more similar in sum ([1, 1.1] leans to y).
        XCTAssertEqual(p[6], [0, 1, 1])
        let nearest = knn.neighbours(of: FeatureMatrix([[1, 0]]), k: 2)[0]
        XCTAssertEqual(nearest.map(\.index), [2, 1], "[3, -0.1] is at a smaller angle to the x axis than [5, 0.2]")
        XCTAssertEqual(nearest[0].similarity, 3 / (9.01).squareRoot(), accuracy: 1e-12)
    }

    func testStandardErrors() {
        XCTAssertEqual(ProbeStatistics.binomialSE(accuracy: 0.9, n: 100), 0.03, accuracy: 1e-12)
        XCTAssertEqual(ProbeStatistics.binomialSE(accuracy: 1, n: 50), 0)
        // s = 0.1 over three folds: 0.1/√3.
        XCTAssertEqual(ProbeStatistics.foldSE([0.8, 0.9, 1.0]), 0.1 / 3.0.squareRoot(), accuracy: 1e-12)
        XCTAssertTrue(ProbeStatistics.foldSE([0.5]).isNaN)
        XCTAssertEqual(ProbeStatistics.bootstrapMacroF1SE(predicted: [0, 1, 0, 1], target: [0, 1, 0, 1], classes: 2), 0)
        // Half right at random: the bootstrap spread is of the binomial's order (0.05 for 100 clips).
        let target = (0..<100).map { $0 % 2 }, predicted = (0..<100).map { ($0 / 2) % 2 }
        let se = ProbeStatistics.bootstrapMacroF1SE(predicted: predicted, target: target, classes: 2)
        XCTAssertGreaterThan(se, 0.03)
        XCTAssertLessThan(se, 0.08)
    }

    func testClusteredStandardErrors() {
        // Two kits of four clips, one all right and one all wrong: p = 0.5, group residuals +2 and -2,
        // √(2/1 · 8)/8 = 0.5 (the binomial SE would say 0.177: the clips are not independent).
        let correct = [true, true, true, true, false, false, false, false], kits = ["a", "a", "a", "a", "b", "b", "b", "b"]
        XCTAssertEqual(ProbeStatistics.clusteredSE(correct: correct, groups: kits), 0.5, accuracy: 1e-12)
        // Each kit half right: nothing between groups, so nothing to cluster: 0.
        XCTAssertEqual(ProbeStatistics.clusteredSE(correct: [true, false, true, false], groups: ["a", "a", "b", "b"]), 0, accuracy: 1e-12)
        // One clip a group: the binomial SE with the small-sample factor √(n/(n − 1)).
        let many = (0..<50).map { $0 % 5 != 0 }
        XCTAssertEqual(ProbeStatistics.clusteredSE(correct: many, groups: (0..<50).map(String.init)),
                       ProbeStatistics.binomialSE(accuracy: 0.8, n: 50) * (50.0 / 49).squareRoot(), accuracy: 1e-12)
        XCTAssertTrue(ProbeStatistics.clusteredSE(correct: correct, groups: Array(repeating: "a", count: 8)).isNaN, "one group")
        XCTAssertTrue(ProbeStatistics.clusteredSE(correct: correct, groups: ["a"]).isNaN, "misaligned")

        // Macro-F1 by a cluster bootstrap: for clustered errors it is wider than the clip bootstrap,
        // for one clip a group about the same.
        let target = (0..<120).map { $0 % 2 }
        let byKit = (0..<120).map { String($0 / 30) }   // 4 kits of 30 clips: kits 0 and 1 right, 2 and 3 mostly wrong
        let predicted: [Int] = (0..<120).map { (i: Int) -> Int in
            let right = i < 60 || i % 7 == 0
            return right ? target[i] : 1 - target[i]
        }
        let clustered = ProbeStatistics.clusterBootstrapMacroF1SE(predicted: predicted, target: target, groups: byKit, classes: 2)
        let plain = ProbeStatistics.bootstrapMacroF1SE(predicted: predicted, target: target, classes: 2)
        XCTAssertGreaterThan(clustered, 2 * plain)
        let single = ProbeStatistics.clusterBootstrapMacroF1SE(predicted: predicted, target: target, groups: (0..<120).map(String.init), classes: 2)
        XCTAssertEqual(single, plain, accuracy: 0.3 * plain)
        XCTAssertTrue(ProbeStatistics.clusterBootstrapMacroF1SE(predicted: predicted, target: target, groups: Array(repeating: "k", count: 120), classes: 2).isNaN)
    }

    func testPairedDifferenceOfTwoProbes() throws {
        // One test split of 10 independent clips: A right on 8, B on 6; A alone right on 3, B alone on 1.
        let a = [true, true, true, true, true, true, true, true, false, false]
        let b = [true, true, true, true, true, false, false, false, true, false]
        func result(_ correct: [[Bool]], groups: [String]? = nil, clips: [[String]]? = nil) -> ProbeResult {
            let acc = correct.map { Double($0.filter { $0 }.count) / Double($0.count) }
            let score = ProbeScore(accuracy: acc.reduce(0, +) / Double(acc.count), macroF1: 0, accuracySE: 0, macroF1SE: 0, chosen: [],
                                   roundAccuracy: acc, roundMacroF1: acc, roundCorrect: correct)
            return ProbeResult(dataset: "toy", layout: "test", labelField: "label", clips: 10, classes: 2, dims: 1, plan: "", rounds: [],
                               logistic: score, knn: score, testClips: clips ?? correct.map { $0.indices.map { "c\($0)" } },
                               testGroups: correct.map { _ in groups }, leftOut: 0, skipped: 0)
        }
        let c = try ProbeComparison.compare(result([a]), against: result([b]))
        XCTAssertEqual(c.logistic.difference, 0.2, accuracy: 1e-12)
        XCTAssertEqual([c.logistic.onlyA, c.logistic.onlyB], [3, 1])
        // d = (0,0,0,0,0,1,1,1,-1,0), mean 0.2: Σ(d − 0.2)² = 6·0.04 + 3·0.64 + 1.44 = 3.6, SE √3.6/10.
        XCTAssertEqual(c.logistic.differenceSE, 3.6.squareRoot() / 10, accuracy: 1e-12)
        // Against itself: no difference and no noise in it.
        let same = try ProbeComparison.compare(result([a]), against: result([a]))
        XCTAssertEqual([same.logistic.difference, same.logistic.differenceSE, Double(same.logistic.onlyA)], [0, 0, 0])
        // Clustered: A's gain all in one of two speakers' clips is less certain than spread evenly.
        let speakers = (0..<10).map { $0 < 5 ? "s1" : "s2" }
        let clustered = try ProbeComparison.compare(result([a], groups: speakers), against: result([b], groups: speakers))
        XCTAssertEqual(clustered.logistic.differenceSE, ProbeStatistics.clusteredSE(values: [0, 0, 0, 0, 0, 1, 1, 1, -1, 0], groups: speakers))
        XCTAssertGreaterThan(clustered.logistic.differenceSE, c.logistic.differenceSE)
        // Folds: s/√k of the per-fold differences (0.2 and 0.0: mean 0.1, s 0.1414, SE 0.1).
        let folds = try ProbeComparison.compare(result([a, a]), against: result([b, a]))
        XCTAssertEqual(folds.logistic.difference, 0.1, accuracy: 1e-12)
        XCTAssertEqual(folds.logistic.differenceSE, 0.1, accuracy: 1e-12)
        // Other test clips cannot be paired.
        XCTAssertThrowsError(try ProbeComparison.compare(result([a]), against: result([b], clips: [(0..<10).map { "other\($0)" }]))) {
            XCTAssertTrue("\($0)".contains("toy"), "names the dataset: \($0)")
        }
    }

    func testMeanAndClusteredSEOfValues() {
        XCTAssertEqual(ProbeStatistics.meanSE([1, 1, 1, 0]), ProbeStatistics.binomialSE(accuracy: 0.75, n: 4), accuracy: 1e-12)
        XCTAssertTrue(ProbeStatistics.meanSE([]).isNaN)
        let correct = [true, false, true, true, false, true]
        let groups = ["a", "a", "b", "b", "c", "c"]
        XCTAssertEqual(ProbeStatistics.clusteredSE(values: correct.map { $0 ? 1 : 0 }, groups: groups),
                       ProbeStatistics.clusteredSE(correct: correct, groups: groups))
    }
}
