import XCTest
import Engine
@testable import Training
@testable import Inference

final class ConvergenceTests: XCTestCase {
    /// A small transformer must learn the synthetic task to > 95% held-out accuracy in seconds.
    func testTransformerLearnsSyntheticSequenceTask() throws {
        let report = try runSyntheticDemo(steps: 300, seed: 7)
        XCTAssertGreaterThan(report.accuracy, 0.95, "held-out accuracy \(report.accuracy)")
        XCTAssertLessThan(report.seconds, 60)
    }

    func testSameSeedSameNumbers() throws {
        let a = try runSyntheticDemo(steps: 20, seed: 3), b = try runSyntheticDemo(steps: 20, seed: 3)
        XCTAssertEqual(a.finalLoss, b.finalLoss)
        XCTAssertEqual(a.accuracy, b.accuracy)
    }
}
