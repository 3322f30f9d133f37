import Foundation
import XCTest
@testable import Audio

/// Every container and sample format the decoder promises, written by libsndfile and read back.
final class FormatTests: XCTestCase {
    func testRoundTripEveryEncoding() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-fmt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let rate = 16000
        let left = (0..<rate).map { Float(0.4 * sin(2 * Double.pi * 440 * Double($0) / Double(rate))) }
        let right = (0..<rate).map { Float(0.2 * sin(2 * Double.pi * 880 * Double($0) / Double(rate))) }
        // Lossless formats come back to within their quantisation step; lossy ones to a modest SNR.
        let tolerance: [AudioFile.Encoding: Float] = [.wavU8: 1 / 64, .wavS16: 1e-4, .wavS24: 1e-6, .wavS32: 1e-7, .wavFloat: 0, .flac: 1e-4]
        let ext: [AudioFile.Encoding: String] = [.flac: "flac", .oggVorbis: "ogg", .mp3: "mp3"]
        for encoding in AudioFile.Encoding.allCases {
            let url = dir.appendingPathComponent("clip-\(encoding.rawValue).\(ext[encoding] ?? "wav")")
            try AudioFile.write([left, right], sampleRate: rate, to: url, encoding: encoding)
            let stereo = try AudioFile.read(url, mono: false)
            XCTAssertEqual(stereo.channels.count, 2, "\(encoding)")
            XCTAssertEqual(stereo.sampleRate, rate, "\(encoding)")
            if let tol = tolerance[encoding] {
                XCTAssertEqual(stereo.frameCount, rate, "\(encoding)")
                let err = zip(stereo.channels[0], left).map { abs($0 - $1) }.max() ?? 1
                XCTAssertLessThanOrEqual(err, tol, "\(encoding)")
            } else {
                // Lossy codecs add encoder delay and padding; compare energy instead of samples.
                XCTAssertEqual(Double(stereo.frameCount), Double(rate), accuracy: Double(rate) * 0.15, "\(encoding)")
                let energy = stereo.channels[0].reduce(0) { $0 + $1 * $1 } / Float(stereo.frameCount)
                XCTAssertEqual(energy, 0.08, accuracy: 0.02, "\(encoding): mean power of a 0.4 sine")
            }
            let mono = try AudioFile.read(url)
            XCTAssertEqual(mono.channels.count, 1)
        }
    }
}
