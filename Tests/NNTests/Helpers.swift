import Foundation
import XCTest
import Engine
@testable import NN

let fixturesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

func assertClose(_ a: Tensor, _ b: Tensor, atol: Float, rtol: Float = 1e-3, _ what: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "\(what): shapes differ", file: file, line: line)
    guard a.shape == b.shape else { return }
    for i in 0..<a.count where !(abs(a.data[i] - b.data[i]) <= atol + rtol * abs(b.data[i])) {
        XCTFail("\(what): element \(i): \(a.data[i]) vs \(b.data[i])", file: file, line: line)
        return
    }
}

extension XCTestCase {
    /// A fresh folder under the system temp directory, removed when the test ends (pass or fail).
    func tempDir() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-tests-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
