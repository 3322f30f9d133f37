import Foundation
import XCTest

/// What a test that reads ../shared/data meets: the folders it needs, or the first missing one.
enum SharedDataCheck: Equatable {
    case present(URL)
    /// A fresh clone has no ../shared/data: the test skips, naming the folder.
    case skip(String)
    /// Under CI=true the data must be there: the test fails, naming the folder.
    case fail(String)
}

func checkSharedData(_ subfolders: [String], root: URL = sharedData,
                     environment: [String: String] = ProcessInfo.processInfo.environment) -> SharedDataCheck {
    let needed = [root] + subfolders.map { root.appendingPathComponent($0) }
    guard let missing = needed.first(where: { !FileManager.default.fileExists(atPath: $0.path) }) else { return .present(root) }
    if environment["CI"] == "true" {
        return .fail("\(missing.path) does not exist: with CI=true the shared datasets (../shared/data beside the repository) must be present")
    }
    return .skip("\(missing.path) does not exist (the shared datasets beside the repository; a fresh clone has none)")
}

struct SharedDataMissing: Error, CustomStringConvertible {
    let description: String
}

/// ../shared/data, holding `subfolders`; where it or one of them is missing, skips the test naming
/// that folder, or with CI=true fails it naming the folder.
func requireSharedData(_ subfolders: String..., file: StaticString = #filePath, line: UInt = #line) throws -> URL {
    switch checkSharedData(subfolders) {
    case .present(let root): return root
    case .skip(let message): throw XCTSkip(message)
    case .fail(let message):
        XCTFail(message, file: file, line: line)
        throw SharedDataMissing(description: "shared data missing (\(message))")
    }
}

final class SharedDataTests: XCTestCase {
    func testMissingSharedDataSkipsOrFailsUnderCI() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-shared-\(UUID().uuidString)")
        let missing = checkSharedData(["fsdd"], root: root, environment: [:])
        guard case .skip(let message) = missing else { return XCTFail("expected a skip, got \(missing)") }
        XCTAssertTrue(message.contains(root.path), message)
        XCTAssertEqual(checkSharedData(["fsdd"], root: root, environment: ["CI": "false"]), missing)
        let ci = checkSharedData(["fsdd"], root: root, environment: ["CI": "true"])
        guard case .fail(let failure) = ci else { return XCTFail("expected a failure under CI=true, got \(ci)") }
        XCTAssertTrue(failure.contains(root.path), failure)

        try FileManager.default.createDirectory(at: root.appendingPathComponent("fsdd"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        XCTAssertEqual(checkSharedData(["fsdd"], root: root, environment: ["CI": "true"]), .present(root))
        guard case .fail(let sub) = checkSharedData(["fsdd", "esc10"], root: root, environment: ["CI": "true"]) else {
            return XCTFail("a missing subfolder fails under CI")
        }
        XCTAssertTrue(sub.contains(root.appendingPathComponent("esc10").path), sub)
    }
}
