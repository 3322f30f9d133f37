import Foundation
import XCTest
import Engine
@testable import Audio

/// Reading a recording block by block gives what reading it whole gives: the resampled samples, the
/// log-mel frames, the first seconds of a long file.
final class AudioStreamTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-stream-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// A chirp with noise, so that every frequency band and every block differs.
    func signal(_ n: Int, rate: Int, seed: UInt64) -> [Float] {
        var g = RandomGenerator(seed: seed)
        return (0..<n).map { i in
            let t = Double(i) / Double(rate)
            return Float(0.4 * sin(2 * Double.pi * (100 + 900 * t) * t)) + 0.05 * (Float(g.next() % 2001) / 1000 - 1)
        }
    }

    func write(_ x: [Float], rate: Int, channels: Int = 1, name: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try AudioFile.write(Array(repeating: x, count: channels), sampleRate: rate, to: url, encoding: .wavFloat)
        return url
    }

    /// The streaming resampler, fed blocks of a file, gives the one-shot resampler's samples for the
    /// whole file: the same count and values to float rounding, for up- and downsampling and a stereo file.
    func testResampledStreamIsTheWholeFileResampled() throws {
        for (from, to, n, channels) in [(44_100, 48_000, 200_003, 2), (16_000, 48_000, 70_001, 1), (48_000, 32_000, 150_000, 1), (8_000, 8_000, 9_999, 1)] {
            let url = try write(signal(n, rate: from, seed: UInt64(n)), rate: from, channels: channels, name: "s\(from)-\(to).wav")
            let whole = try Resampler.resample(AudioFile.read(url).mono, from: from, to: to)
            let stream = try ResampledStream(url, rate: to)
            var streamed: [Float] = []
            while let block = try stream.next(4_000 + streamed.count % 777) { streamed += block }
            XCTAssertEqual(streamed.count, whole.count, "\(from) -> \(to)")
            let err = zip(streamed, whole).map { abs($0 - $1) }.max() ?? 1
            XCTAssertLessThan(err, 1e-5, "\(from) -> \(to)")
            let head = try ResampledStream.prefix(of: url, rate: to, count: 30_000)
            XCTAssertEqual(head.count, min(30_000, whole.count))
            XCTAssertLessThan(zip(head, whole).map { abs($0 - $1) }.max() ?? 1, 1e-5, "\(from) -> \(to) prefix")
        }
    }

    /// Log-mel frames pushed in blocks of any size, from one sample to many frames, are the frames of
    /// the whole waveform, including both reflected ends; recordings shorter than half a window too.
    func testLogMelStreamGivesTheWholeWaveformsFrames() throws {
        let config = LogMelConfig(sampleRate: 16_000, nFFT: 512, hop: 160, nMels: 40, fMin: 50, fMax: 8000)
        let logMel = try LogMel(config)
        var g = RandomGenerator(seed: 3)
        for n in [1, 100, 255, 256, 257, 511, 5_000, 48_007] {
            let x = signal(n, rate: 16_000, seed: UInt64(n))
            let whole = try logMel(x)
            for maxBlock in [1, 97, 4_096] where n <= 5_000 || maxBlock > 1 {
                var stream = LogMelStream(logMel), parts: [Tensor] = [], at = 0
                while at < n {
                    let size = min(n - at, 1 + Int(g.next() % UInt64(maxBlock)))
                    if let frames = try stream.push(Array(x[at..<(at + size)])) { parts.append(frames) }
                    at += size
                }
                if let rest = try stream.finish() { parts.append(rest) }
                let streamed = try Tensor.concat(parts, axis: 0)
                XCTAssertEqual(streamed.shape, whole.shape, "\(n) samples, blocks up to \(maxBlock)")
                XCTAssertEqual(streamed.toArray(), whole.toArray(), "\(n) samples, blocks up to \(maxBlock)")
            }
        }
        var empty = LogMelStream(logMel)
        XCTAssertThrowsError(try empty.finish())
    }
}
