import Foundation
import XCTest
import Engine
@testable import Audio

final class BadAudioTests: XCTestCase {
    var dir: URL!
    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-audio-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    func expectError(_ url: URL, _ fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try AudioFile.read(url), line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(url.lastPathComponent), "names the file: \(text)", line: line)
            XCTAssertTrue(text.contains(fragment), "expected '\(fragment)' in: \(text)", line: line)
        }
    }

    func testUnreadableFilesNameFileAndReason() throws {
        expectError(dir.appendingPathComponent("missing.wav"), "no such file")
        let empty = dir.appendingPathComponent("empty.wav")
        FileManager.default.createFile(atPath: empty.path, contents: Data())
        expectError(empty, "empty file")
        let garbage = dir.appendingPathComponent("garbage.wav")
        try Data((0..<2000).map { UInt8(truncatingIfNeeded: $0 &* 37) }).write(to: garbage)
        expectError(garbage, "cannot decode")
        let text = dir.appendingPathComponent("notes.flac")
        try "not audio at all".write(to: text, atomically: true, encoding: .utf8)
        expectError(text, "cannot decode")
    }

    func testTruncatedFilesAreNamedErrors() throws {
        let url = dir.appendingPathComponent("clip.wav")
        try AudioFile.writeWAV((0..<16000).map { Float(sin(Double($0) * 0.05)) * 0.5 }, sampleRate: 16000, to: url)
        let bytes = try Data(contentsOf: url)
        let cut = dir.appendingPathComponent("cut.wav")
        try bytes.prefix(44 + 2 * 4000).write(to: cut)
        expectError(cut, "truncated")
        let headerOnly = dir.appendingPathComponent("header-only.wav")
        try bytes.prefix(44).write(to: headerOnly)
        XCTAssertThrowsError(try AudioFile.read(headerOnly)) { XCTAssertTrue("\($0)".contains("header-only.wav")) }
    }

    /// A rate no recorder uses (a damaged header) is refused by name; the ends of the range still decode.
    func testImplausibleSampleRatesAreNamedErrors() throws {
        let samples = (0..<400).map { Float(sin(Double($0) * 0.1)) * 0.25 }
        for rate in [7, 999, 1_000, 1_000_000] {
            let url = dir.appendingPathComponent("rate\(rate).wav")
            try AudioFile.writeWAV(samples, sampleRate: rate, to: url)
            if AudioFile.plausibleSampleRates.contains(rate) {
                XCTAssertEqual(try AudioFile.read(url).sampleRate, rate)
            } else {
                expectError(url, "rate\(rate).wav: implausible sample rate \(rate) Hz")
            }
        }
    }

    func testRoundTripAndMultichannelDownmix() throws {
        let url = dir.appendingPathComponent("tone.wav")
        let tone = (0..<800).map { Float(sin(Double($0) * 0.1)) * 0.25 }
        try AudioFile.writeWAV(tone, sampleRate: 8000, to: url, float: true)
        let back = try AudioFile.read(url)
        XCTAssertEqual(back.sampleRate, 8000)
        XCTAssertEqual(back.mono, tone)
        let info = try AudioFile.info(url)
        XCTAssertEqual(info.frames, 800)
        XCTAssertEqual(AudioBuffer(channels: [[1, 0], [0, 1]], sampleRate: 8000).mono, [0.5, 0.5])
    }

    func testNaNWaveformsAndBadConfigsAreErrors() throws {
        let fbank = try KaldiFbank()
        XCTAssertThrowsError(try fbank([Float](repeating: 0, count: 500) + [.nan] + [Float](repeating: 0, count: 500))) {
            XCTAssertTrue("\($0)".contains("NaN"))
        }
        var c = KaldiFbankConfig.ast
        c.sampleRate = 0
        XCTAssertThrowsError(try KaldiFbank(c))
        c = .ast; c.lowFreq = 9000
        XCTAssertThrowsError(try KaldiFbank(c)) { XCTAssertTrue("\($0)".contains("frequency range")) }
        XCTAssertThrowsError(try Resampler.resample([1, 2], from: 0, to: 16000))
        XCTAssertThrowsError(try LogMel(.panns)([]))
    }

    func testShortClipGivesNoFramesAndPadsToTarget() throws {
        let fbank = try KaldiFbank()
        let feats = try fbank([Float](repeating: 0.1, count: 300))   // shorter than one 400-sample frame
        XCTAssertEqual(feats.shape, [0, 128])
        let prepared = try ASTInput.prepare(feats, .esc50)
        XCTAssertEqual(prepared.shape, [512, 128])
        // Padding happens in the log domain before normalisation: 0 → (0 − mean) / (2 std).
        XCTAssertEqual(prepared.data[0], 6.6268077 / (2 * 5.358466), accuracy: 1e-6)
    }

    func testFrameCountsFollowKaldi() throws {
        XCTAssertEqual(KaldiFbankConfig.ast.frameCount(samples: 160_000), 998)   // 10 s at 16 kHz
        XCTAssertEqual(KaldiFbankConfig.ast.frameCount(samples: 80_000), 498)    // ESC-50's 5 s
        let long = try KaldiFbank()([Float](repeating: 0, count: 20_000))
        XCTAssertEqual(try ASTInput.padOrCut(long, to: 100).shape, [100, 128])
    }
}
