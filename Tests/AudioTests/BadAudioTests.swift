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

    /// A file cut short decodes as far as it goes and says so with both lengths; one that keeps no
    /// frame at all is still an error naming the file.
    func testTruncatedWAVDecodesAsFarAsItGoes() throws {
        let url = dir.appendingPathComponent("clip.wav")
        try AudioFile.writeWAV((0..<16000).map { Float(sin(Double($0) * 0.05)) * 0.5 }, sampleRate: 16000, to: url)
        let whole = try AudioFile.read(url)
        XCTAssertNil(whole.truncated)
        XCTAssertNil(try AudioFile.info(url, verifyLength: true).truncated)
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(bytes.count, 44 + 2 * 16000)
        let cut = dir.appendingPathComponent("cut.wav")
        try bytes.prefix(44 + 2 * 4000).write(to: cut)
        let part = try AudioFile.read(cut)
        XCTAssertEqual(part.truncated, AudioTruncation(promised: 16000, read: 4000))
        XCTAssertEqual(part.mono, Array(whole.mono.prefix(4000)))
        XCTAssertEqual(part.sampleRate, 16000)
        XCTAssertEqual(try AudioFile.info(cut).truncated, AudioTruncation(promised: 16000, read: 4000), "seen from the header alone")
        XCTAssertEqual(try AudioFile.info(cut).frames, 4000)
        // Cut inside a sample: the partial sample is dropped.
        let odd = dir.appendingPathComponent("odd.wav")
        try bytes.prefix(44 + 2 * 4000 + 1).write(to: odd)
        XCTAssertEqual(try AudioFile.read(odd).truncated, AudioTruncation(promised: 16000, read: 4000))
        let headerOnly = dir.appendingPathComponent("header-only.wav")
        try bytes.prefix(44).write(to: headerOnly)
        expectError(headerOnly, "no audio frames (truncated: the header promises 16000 frames)")
    }

    /// Frames, not samples or bytes: a stereo 24-bit WAV cut short.
    func testTruncatedStereo24BitWAVCountsFrames() throws {
        let url = dir.appendingPathComponent("stereo.wav")
        let left = (0..<1000).map { Float(sin(Double($0) * 0.07)) * 0.4 }, right = left.map { -$0 }
        try AudioFile.write([left, right], sampleRate: 8000, to: url, encoding: .wavS24)
        let bytes = try Data(contentsOf: url)
        let header = bytes.count - 6 * 1000
        let cut = dir.appendingPathComponent("stereo-cut.wav")
        try bytes.prefix(header + 6 * 300 + 4).write(to: cut)
        let part = try AudioFile.read(cut, mono: false)
        XCTAssertEqual(part.truncated, AudioTruncation(promised: 1000, read: 300))
        XCTAssertEqual(part.channels.count, 2)
        XCTAssertEqual(part.channels[1], Array(try AudioFile.read(url, mono: false).channels[1].prefix(300)))
        XCTAssertEqual(try AudioFile.read(cut).truncated, part.truncated, "the downmix keeps the note")
    }

    /// AIFF keeps its frame count in the COMM chunk.
    func testTruncatedAIFFReportsTheCOMMFrameCount() throws {
        func be<T: FixedWidthInteger>(_ v: T) -> Data { withUnsafeBytes(of: v.bigEndian) { Data($0) } }
        let frames = 2000, samples = (0..<frames).map { Int16(truncatingIfNeeded: ($0 * 37) % 20000 - 10000) }
        var comm = be(Int16(1)) + be(UInt32(frames)) + be(Int16(16))
        comm += be(UInt16(16383 + 13)) + be(UInt64(16000) << 50)   // 16000 Hz as an 80-bit float
        var ssnd = be(UInt32(0)) + be(UInt32(0))
        for x in samples { ssnd += be(x) }
        var body = Data("AIFF".utf8) + Data("COMM".utf8) + be(UInt32(comm.count)) + comm
        body += Data("SSND".utf8) + be(UInt32(ssnd.count)) + ssnd
        let file = Data("FORM".utf8) + be(UInt32(body.count)) + body
        let url = dir.appendingPathComponent("tone.aiff")
        try file.write(to: url)
        let whole = try AudioFile.read(url)
        XCTAssertNil(whole.truncated)
        XCTAssertEqual(whole.frameCount, frames)
        let cut = dir.appendingPathComponent("cut.aiff")
        try file.prefix(file.count - 2 * 1500).write(to: cut)
        let part = try AudioFile.read(cut)
        XCTAssertEqual(part.truncated, AudioTruncation(promised: 2000, read: 500))
        XCTAssertEqual(part.mono, Array(whole.mono.prefix(500)))
    }

    /// FLAC's header gives the frame count; a cut stream decodes to the last whole block. `info` sees
    /// that only with verifyLength (it then decodes to count).
    func testTruncatedFLACDecodesAsFarAsItGoes() throws {
        let url = dir.appendingPathComponent("clip.flac")
        var g = RandomGenerator(seed: 3)
        try AudioFile.write([(0..<16000).map { _ in 0.2 * g.nextNormal() }], sampleRate: 16000, to: url, encoding: .flac)
        let whole = try AudioFile.read(url)
        XCTAssertNil(whole.truncated)
        let bytes = try Data(contentsOf: url)
        let cut = dir.appendingPathComponent("cut.flac")
        try bytes.prefix(bytes.count / 2).write(to: cut)
        let part = try AudioFile.read(cut)
        let truncation = try XCTUnwrap(part.truncated)
        XCTAssertEqual(truncation.promised, 16000)
        XCTAssertEqual(truncation.read, part.frameCount)
        XCTAssertTrue((1..<16000).contains(part.frameCount), "\(part.frameCount)")
        XCTAssertEqual(part.mono, Array(whole.mono.prefix(part.frameCount)))
        XCTAssertNil(try AudioFile.info(cut).truncated, "the header alone cannot tell")
        let verified = try AudioFile.info(cut, verifyLength: true)
        XCTAssertEqual(verified.truncated, truncation)
        XCTAssertEqual(verified.frames, part.frameCount)
        XCTAssertNil(try AudioFile.info(url, verifyLength: true).truncated)
        // Streamed in blocks, the cut file gives the same samples and says so at its end.
        let stream = try AudioStream(cut)
        var streamed: [Float] = []
        while let block = try stream.next(1000) { streamed += block }
        XCTAssertEqual(streamed, part.mono)
        XCTAssertEqual(stream.truncated, truncation)
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
                XCTAssertThrowsError(try AudioStream(url)) { XCTAssertTrue("\($0)".contains("implausible sample rate \(rate) Hz"), "\($0)") }
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
        // Three channels read downmixed straight from the interleaved frames equal the channels read
        // apart and averaged, bit for bit; a NaN names its channel either way.
        let three = dir.appendingPathComponent("three.wav")
        var channels: [[Float]] = []
        for c in 0..<3 {
            let rate = 0.07 * Double(c + 1)
            channels.append((0..<800).map { (i: Int) -> Float in Float(0.3 * sin(Double(i) * rate)) })
        }
        try AudioFile.write(channels, sampleRate: 8000, to: three, encoding: .wavFloat)
        let apart = try AudioFile.read(three, mono: false)
        XCTAssertEqual(apart.channels, channels)
        XCTAssertEqual(try AudioFile.read(three).channels, [apart.mono])
        var bad = channels
        bad[2][400] = Float.nan
        try AudioFile.write(bad, sampleRate: 8000, to: three, encoding: .wavFloat)
        expectError(three, "channel 2 contains NaN or infinite samples")
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

    /// Finite samples far outside ±1 (a damaged float WAV) overflow the power spectrum: both front ends
    /// refuse the clip naming its peak, and a file's pipeline names the file; a loud but real clip passes.
    func testOverflowingSamplesAreRefusedNotTurnedIntoInfiniteFeatures() throws {
        let damaged = (0..<16000).map { Float(sin(Double($0) * 0.3)) * 1e30 }
        XCTAssertThrowsError(try KaldiFbank()(damaged)) { XCTAssertTrue("\($0)".contains("kaldi fbank: the features are not finite"), "\($0)") }
        XCTAssertThrowsError(try LogMel(.panns)(damaged)) { XCTAssertTrue("\($0)".contains("log-mel: the features are not finite"), "\($0)") }
        let url = dir.appendingPathComponent("damaged.wav")
        try AudioFile.writeWAV(damaged, sampleRate: 16000, to: url, float: true)
        XCTAssertThrowsError(try FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 100).features(of: url)) {
            XCTAssertTrue("\($0)".contains("damaged.wav") && "\($0)".contains("the samples reach 1e+30"), "\($0)")
        }
        let loud = (0..<16000).map { Float(sin(Double($0) * 0.3)) * 8 }
        let features = try KaldiFbank()(loud)
        XCTAssertTrue(features.toArray().allSatisfy(\.isFinite))
        XCTAssertTrue(try LogMel(.panns)(loud).toArray().allSatisfy(\.isFinite))
    }

    func testShortClipGivesNoFramesAndPadsToTarget() throws {
        let fbank = try KaldiFbank()
        let feats = try fbank([Float](repeating: 0.1, count: 300))   // shorter than one 400-sample frame
        XCTAssertEqual(feats.shape, [0, 128])
        let prepared = FeatureFrames.normalize(try FeatureFrames.padOrCut(feats, to: 512), mean: -6.6268077, std: 5.358466)
        XCTAssertEqual(prepared.shape, [512, 128])
        // Padding happens in the log domain before normalisation: 0 → (0 − mean) / (2 std).
        XCTAssertEqual(prepared.data[0], 6.6268077 / (2 * 5.358466), accuracy: 1e-6)
    }

    func testFrameCountsFollowKaldi() throws {
        XCTAssertEqual(KaldiFbankConfig.ast.frameCount(samples: 160_000), 998)   // 10 s at 16 kHz
        XCTAssertEqual(KaldiFbankConfig.ast.frameCount(samples: 80_000), 498)    // ESC-50's 5 s
        let long = try KaldiFbank()([Float](repeating: 0, count: 20_000))
        XCTAssertEqual(try FeatureFrames.padOrCut(long, to: 100).shape, [100, 128])
    }
}
