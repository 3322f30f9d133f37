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

/// Twelve one-second tones in `dir` (2,500 Hz "high", 300 Hz "low", alternating): eight training, two
/// validation and two test clips.
func toneDataset(in dir: URL) throws -> Dataset {
    var records: [ClipRecord] = []
    for i in 0..<12 {
        let url = dir.appendingPathComponent("c\(i).wav")
        try writeTone(url, frequency: i % 2 == 0 ? 2500 : 300, samples: 16000)
        records.append(ClipRecord(path: url.path, labels: [i % 2 == 0 ? "high" : "low"], split: i < 8 ? "train" : (i < 10 ? "validation" : "test")))
    }
    return Dataset(records: records, layout: "tones")
}

/// `toneDataset` written as a CSV manifest (path, label, split) in `dir`, for tests that run the command line.
func toneManifest(in dir: URL) throws -> (data: Dataset, manifest: URL) {
    let data = try toneDataset(in: dir)
    let manifest = dir.appendingPathComponent("tones.csv")
    try ("path,label,split\n" + data.records.map { "\($0.path),\($0.labels[0]),\($0.split!)" }.joined(separator: "\n") + "\n")
        .write(to: manifest, atomically: true, encoding: .utf8)
    return (data, manifest)
}

extension XCTestCase {
    /// Runs the `earshot` built beside the tests (skips where it is not built) and returns its exit status and
    /// standard output and error together; `input`, when given, is written to its standard input through a
    /// pipe (from another thread, so a reader slower than the pipe's buffer is fed as it reads).
    func runEarshot(_ arguments: [String], input: Data? = nil) throws -> (status: Int32, output: String) {
        // The test bundle (Linux: an executable; macOS: a .xctest folder) lies in the products folder.
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        let candidates = [runner.deletingLastPathComponent(), Bundle(for: Self.self).bundleURL.deletingLastPathComponent()]
            .map { $0.appendingPathComponent("earshot") }
        guard let earshot = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw XCTSkip("earshot is not built beside the tests (looked for \(candidates.map(\.path).joined(separator: ", ")))")
        }
        let p = Process(), pipe = Pipe()
        p.executableURL = earshot
        p.arguments = arguments
        p.standardOutput = pipe
        p.standardError = pipe
        let stdin = input.map { _ in Pipe() }
        if let stdin { p.standardInput = stdin }
        try p.run()
        if let stdin, let input {
            Thread.detachNewThread {
                stdin.fileHandleForWriting.write(input)
                try? stdin.fileHandleForWriting.close()
            }
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, output)
    }
}
