import Foundation
import XCTest
import Audio
import Engine
@testable import Training

/// Few-shot runs over several seeded draws: each draw its own clips, a summary with mean and std.
final class RepeatsTests: XCTestCase {
    func testRepeatedFewShotRunsReportMeanAndSpread() throws {
        let dir = try temporaryFolder("repeats")
        var records: [ClipRecord] = []
        for i in 0..<30 {
            let high = i % 2 == 0
            let url = dir.appendingPathComponent("t\(i).wav")
            let f = (high ? 2000.0 : 350.0) + Double(i) * 7
            try writeTone(url, frequency: f, samples: 6000)
            records.append(ClipRecord(path: url.path, labels: [high ? "high" : "low"], split: i < 22 ? "train" : "test"))
        }
        var ft = FineTuneConfig()
        (ft.model, ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr, ft.shotsPerClass, ft.seed) = ("ssast-tiny-frame", 1, 32, 1, 4, 3e-4, 3, 10)
        let root = dir.appendingPathComponent("few")
        let rep = try repeatedRuns(ft, data: Dataset(records: records, layout: "tones"), root: root, repeats: 3, log: { _ in })
        XCTAssertEqual(rep.runs.count, 3)
        XCTAssertEqual(rep.mean, rep.runs.map(\.test.accuracy).reduce(0, +) / 3, accuracy: 1e-12)
        let seeds = try (0..<3).map { try RunDirectory(root.appendingPathComponent("draw-\($0)")).readConfig(FineTuneConfig.self).seed }
        XCTAssertEqual(seeds, [10, 11, 12])
        XCTAssertTrue(rep.runs.allSatisfy { $0.trainClips == 6 }, "3 clips per class in every draw")
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("repeats.json"))) as? [String: Any])
        XCTAssertEqual(summary["std_test_accuracy"] as? Double ?? -1, rep.std, accuracy: 1e-12)
        XCTAssertEqual((summary["draws"] as? [Any])?.count, 3)
        XCTAssertThrowsError(try repeatedRuns(ft, data: Dataset(records: records, layout: "tones"), root: root, repeats: 0, log: { _ in }))
    }
}
