import XCTest
import Audio
@testable import Training

/// The validation split mirrors the test split: whole speakers where the test speakers are unseen in
/// training, a per-class draw where the test split shares its speakers with training.
final class ValidationSplitTests: XCTestCase {
    func records(testSpeakersUnseen: Bool) -> [ClipRecord] {
        (0..<200).map { i in
            let speaker = "s\(i % 10)"
            let test = testSpeakersUnseen ? (i % 10 >= 8) : (i % 7 == 0)
            return ClipRecord(path: "c\(i).wav", labels: [["a", "b"][i % 2]], speaker: speaker, split: test ? "test" : "train")
        }
    }

    func testValidationMirrorsTheTestSplit() throws {
        var cfg = FineTuneConfig()
        cfg.valFraction = 0.1
        var lines: [String] = []
        let unseen = try splitForFineTuning(Dataset(records: records(testSpeakersUnseen: true), layout: "t"), cfg) { lines.append($0) }
        let valSpeakers = Set(unseen.validation.records.compactMap(\.speaker))
        XCTAssertTrue(unseen.train.records.allSatisfy { !valSpeakers.contains($0.speaker!) }, "whole speakers held out")
        XCTAssertTrue(lines.last!.contains("whole speakers"), lines.last!)
        lines = []
        let shared = try splitForFineTuning(Dataset(records: records(testSpeakersUnseen: false), layout: "t"), cfg) { lines.append($0) }
        XCTAssertGreaterThan(Set(shared.validation.records.compactMap(\.speaker)).intersection(shared.train.records.compactMap(\.speaker)).count, 0,
                             "FSDD-like: the test split shares speakers with training, so validation does too")
        XCTAssertFalse(lines.last!.contains("whole speakers"), lines.last!)
        XCTAssertEqual(shared.validation.records.count, 18, "10% of 171, rounded per class: 8.6 and 8.5 clips, 9 each")
    }
}
