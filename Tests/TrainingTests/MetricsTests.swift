import XCTest
@testable import Training
@testable import Inference

/// Expected values computed by hand and with scikit-learn's definitions.
final class MetricsTests: XCTestCase {
    func testSingleLabel() {
        let p = [0, 1, 1, 2, 2, 2], t = [0, 1, 2, 2, 2, 0]
        XCTAssertEqual(Metrics.accuracy(p, t), 4.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(Metrics.confusionMatrix(p, t, classes: 3), [[1, 0, 1], [0, 1, 0], [0, 1, 2]])
        // per-class F1: c0 2/3, c1 2/3, c2 2/3 → sklearn f1_score(average="macro") = 0.6667
        XCTAssertEqual(Metrics.macroF1(p, t, classes: 3), 2.0 / 3, accuracy: 1e-12)
    }

    func testAveragePrecisionAndAUC() {
        // sklearn: average_precision_score([1,0,1,1,0], [.9,.8,.7,.3,.2]) = 0.8055..., roc_auc_score = 0.6667
        let s: [Float] = [0.9, 0.8, 0.7, 0.3, 0.2], l = [true, false, true, true, false]
        XCTAssertEqual(Metrics.averagePrecision(scores: s, labels: l)!, (1.0 + 2.0 / 3 + 3.0 / 4) / 3, accuracy: 1e-12)
        XCTAssertEqual(Metrics.rocAUC(scores: s, labels: l)!, 4.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(Metrics.rocAUC(scores: [0.5, 0.5], labels: [true, false])!, 0.5)
        XCTAssertNil(Metrics.averagePrecision(scores: [0.1], labels: [false]))
        XCTAssertEqual(Metrics.inverseNormalCDF(0.975), 1.959963985, accuracy: 1e-8)
        XCTAssertEqual(Metrics.dPrime(auc: 0.5), 0, accuracy: 1e-12)
        let m = Metrics.multiLabel(scores: [[0.9, 0.1], [0.2, 0.8], [0.7, 0.6]], targets: [[true, false], [false, true], [true, false]])
        XCTAssertEqual(m.mAP, 1, accuracy: 1e-12)
        XCTAssertEqual(m.auc, 1, accuracy: 1e-12)
    }

    /// Scores of a diverged model (NaN) end: the tie groups of AP and AUC hung on NaN == NaN being false
    /// (a fine-tuning run at a learning rate of 1e30 stopped in its first validation), and a NaN
    /// confidence trapped in the calibration bins. Finite scores keep their sklearn values.
    func testNonFiniteScoresTerminateAndCountAsWrong() {
        let s: [Float] = [.nan, 0.8, .nan, .infinity, 0.2], l = [true, false, true, true, false]
        let ap = Metrics.averagePrecision(scores: s, labels: l), auc = Metrics.rocAUC(scores: s, labels: l)
        XCTAssertNotNil(ap)
        XCTAssertNotNil(auc)
        XCTAssertEqual(Metrics.expectedCalibrationError(confidences: [.nan, 0.95], correct: [false, true]), 0.5 * 0 + 0.5 * 0.05, accuracy: 1e-6)
        let allNaN = [Float](repeating: .nan, count: 4)
        let apNaN = Metrics.averagePrecision(scores: allNaN, labels: [true, false, true, false])!
        XCTAssertTrue(apNaN >= 0 && apNaN <= 1, "every NaN its own threshold, in whatever order the sort left them: \(apNaN)")
        XCTAssertNotNil(Metrics.rocAUC(scores: allNaN, labels: [true, false, true, false]))
    }
}
