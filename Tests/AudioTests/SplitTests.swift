import Foundation
import XCTest
@testable import Audio

final class SplitTests: XCTestCase {
    func records(speakers: Bool) -> [ClipRecord] {
        (0..<120).map { i in
            ClipRecord(path: "c\(i).wav", labels: [["a", "b", "c"][i % 3]], speaker: speakers ? "s\(i % 10)" : nil,
                       split: i < 20 ? "test" : "train")
        }
    }

    /// With speakers, whole speakers are held out (no voice on both sides), only among the candidates, seeded.
    func testHoldingOutIsSpeakerDisjointWhereSpeakersAreKnown() throws {
        let data = Dataset(records: records(speakers: true), layout: "t")
        let held = try data.holdingOut(0.1, as: "validation", seed: 4) { $0.split != "test" }
        let validation = held.records.filter { $0.split == "validation" }
        let rest = held.records.filter { $0.split == "train" }
        XCTAssertFalse(validation.isEmpty)
        XCTAssertTrue(Set(validation.map(\.speaker)).isDisjoint(with: Set(rest.map(\.speaker))), "no speaker on both sides")
        XCTAssertEqual(held.records.filter { $0.split == "test" }.count, 20, "the test clips stay where they were")
        XCTAssertEqual(validation.count, 10, "one speaker's 10 candidate clips reach 10% of 100")
        XCTAssertEqual(try data.holdingOut(0.1, as: "validation", seed: 4) { $0.split != "test" }.records, held.records, "seeded")
        let others = try (0..<6).map { try data.holdingOut(0.1, as: "validation", seed: UInt64($0)).records.filter { $0.split == "validation" }.map(\.path) }
        XCTAssertGreaterThan(Set(others).count, 1, "other seeds hold out other speakers")
        // Labels that are the speakers: stratified per class instead (holding a class out would leave it untrained).
        let bySpeaker = Dataset(records: data.records.map { var r = $0; r.labels = [r.speaker!]; return r }, layout: "t")
        let strat = try bySpeaker.holdingOut(0.2, as: "validation", seed: 1).records.filter { $0.split == "validation" }
        XCTAssertEqual(Set(strat.map(\.labels[0])).count, 10, "every speaker-class keeps some clips on both sides")
    }

    func testHoldingOutIsStratifiedPerClassWithoutSpeakers() throws {
        let data = Dataset(records: records(speakers: false).map { var r = $0; r.split = nil; return r }, layout: "t")
        let held = try data.holdingOut(0.25, as: "test", seed: 9)
        var perClass: [String: Int] = [:]
        for r in held.records where r.split == "test" { perClass[r.labels[0], default: 0] += 1 }
        XCTAssertEqual(perClass, ["a": 10, "b": 10, "c": 10], "round(0.25 x 40) of each class")
        XCTAssertThrowsError(try data.holdingOut(1.5, as: "x", seed: 0)) { XCTAssertTrue("\($0)".contains("between 0 and 1"), "\($0)") }
        let tiny = Dataset(records: [ClipRecord(path: "x.wav", labels: ["a"])], layout: "t")
        XCTAssertThrowsError(try tiny.holdingOut(0.1, as: "validation", seed: 0)) { XCTAssertTrue("\($0)".contains("too few clips"), "\($0)") }
    }
}
