import Foundation
import XCTest
@testable import CLAP

/// Keyword-to-caption templates, keyword renaming, user captions and the files they come from.
final class KeywordCaptionsTests: XCTestCase {
    func testTemplatesJoinKeywords() throws {
        let k = try KeywordCaptioner(templates: ["the sound of {}", "{label} can be heard"], keywords: ["0": "the spoken word zero"],
                                     labelCaptions: ["dog": ["a dog barks twice"]])
        XCTAssertEqual(KeywordCaptioner.join([]), "")
        XCTAssertEqual(KeywordCaptioner.join(["rain"]), "rain")
        XCTAssertEqual(KeywordCaptioner.join(["rain", "thunder"]), "rain and thunder")
        XCTAssertEqual(KeywordCaptioner.join(["a", "b", "c"]), "a, b and c")
        XCTAssertEqual(k.keyword("crackling_fire"), "crackling fire")
        XCTAssertEqual(k.keyword("sea-waves"), "sea waves")
        XCTAssertEqual(k.captions(labels: ["0"]), ["the sound of the spoken word zero", "the spoken word zero can be heard"])
        XCTAssertEqual(k.captions(labels: ["dog", "crackling_fire"]),
                       ["the sound of dog and crackling fire", "dog and crackling fire can be heard", "a dog barks twice"])
        XCTAssertEqual(k.captions(labels: []), [])
        XCTAssertThrowsError(try KeywordCaptioner(templates: [])) { XCTAssertTrue("\($0)".contains("no caption templates"), "\($0)") }
        XCTAssertThrowsError(try KeywordCaptioner(templates: ["a dog"])) { XCTAssertTrue("\($0)".contains("'a dog'"), "\($0)") }
    }

    func testFilesAreReadAndBadOnesNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-k2c-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let templates = dir.appendingPathComponent("templates.txt")
        try "# one per line\nthe sound of {}\n\n{} nearby\n".write(to: templates, atomically: true, encoding: .utf8)
        XCTAssertEqual(try KeywordCaptioner.templates(from: templates), ["the sound of {}", "{} nearby"])
        try "the sound of {}\nno placeholder\n".write(to: templates, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try KeywordCaptioner.templates(from: templates)) { XCTAssertTrue("\($0)".contains("template 2"), "\($0)") }
        let captions = dir.appendingPathComponent("captions.csv")
        try "label,caption\ndog,a dog barks\ndog,\"barking, then quiet\"\nrain,rain on a roof\n".write(to: captions, atomically: true, encoding: .utf8)
        XCTAssertEqual(try KeywordCaptioner.labelTable(from: captions, valueColumn: "caption"),
                       ["dog": ["a dog barks", "barking, then quiet"], "rain": ["rain on a roof"]])
        XCTAssertThrowsError(try KeywordCaptioner.labelTable(from: captions, valueColumn: "keyword")) { XCTAssertTrue("\($0)".contains("keyword"), "\($0)") }
        try "label,caption\ndog,\n".write(to: captions, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try KeywordCaptioner.labelTable(from: captions, valueColumn: "caption")) { XCTAssertTrue("\($0)".contains("row 2"), "\($0)") }
        XCTAssertThrowsError(try KeywordCaptioner.templates(from: dir.appendingPathComponent("missing.txt"))) { XCTAssertTrue("\($0)".contains("missing.txt"), "\($0)") }
    }
}
