import XCTest
@testable import Training
@testable import Inference

/// Progress lines: a training epoch always ends with one; an `onlyIfSlow` job (evaluate, classify,
/// embed) prints only once it has run past the interval, and then also its end.
final class ProgressTests: XCTestCase {
    func lines(onlyIfSlow: Bool, interval: Duration) -> [String] {
        var out: [String] = []
        var progress = Progress(total: 3, label: "job", onlyIfSlow: onlyIfSlow, interval: interval) { out.append($0) }
        for done in 1...3 { progress.update(done) }
        return out
    }

    func testQuickJobsStaySilentOnlyWhenAsked() {
        XCTAssertEqual(lines(onlyIfSlow: false, interval: .seconds(3600)).count, 1, "the final line of a training epoch")
        XCTAssertEqual(lines(onlyIfSlow: true, interval: .seconds(3600)), [], "a quick evaluation prints nothing")
        let slow = lines(onlyIfSlow: true, interval: .zero)
        XCTAssertEqual(slow.count, 3, "past the interval every step is due")
        XCTAssertTrue(slow.last!.hasPrefix("job 3/3"), slow.last!)
        XCTAssertTrue(slow.first!.contains("eta"), slow.first!)
    }
}
