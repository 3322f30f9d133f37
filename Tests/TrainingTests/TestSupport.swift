import Foundation
import XCTest
import Audio

extension XCTestCase {
    /// A fresh folder under the system's temporary directory, removed when the test ends.
    func temporaryFolder(_ prefix: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }
}

/// A 16 kHz sine of `samples` samples at amplitude 0.3, written as WAV.
func writeTone(_ url: URL, frequency: Double, samples: Int) throws {
    try AudioFile.writeWAV((0..<samples).map { Float(0.3 * sin(2 * Double.pi * frequency * Double($0) / 16000)) }, sampleRate: 16000, to: url)
}
