import Audio
import Engine
import Foundation
import Inference
import NN
import XCTest

/// The `earshot` command line itself, run as a user runs it (skipped where the binary is not built beside the tests).
final class CommandLineTests: XCTestCase {
    /// `earshot dataset inspect` lists truncated files with both lengths.
    func testInspectListsTruncatedFiles() throws {
        let root = try temporaryFolder("inspect")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("a"), withIntermediateDirectories: true)
        for i in 0..<2 { try writeTone(root.appendingPathComponent("a/\(i).wav"), frequency: 440, samples: 16000) }
        let bytes = try Data(contentsOf: root.appendingPathComponent("a/1.wav"))
        try bytes.prefix(44 + 2 * 4000).write(to: root.appendingPathComponent("a/1.wav"))
        var flac = [Float](repeating: 0, count: 16000)
        var g = RandomGenerator(seed: 5)
        for i in flac.indices { flac[i] = 0.2 * g.nextNormal() }
        try AudioFile.write([flac], sampleRate: 16000, to: root.appendingPathComponent("a/2.flac"), encoding: .flac)
        let flacBytes = try Data(contentsOf: root.appendingPathComponent("a/2.flac"))
        try flacBytes.prefix(flacBytes.count / 2).write(to: root.appendingPathComponent("a/2.flac"))
        let flacRead = try AudioFile.read(root.appendingPathComponent("a/2.flac")).frameCount
        let (status, out) = try runEarshot(["dataset", "inspect", root.path])
        XCTAssertEqual(status, 0, out)
        XCTAssertTrue(out.contains("unreadable: 0\n"), out)
        XCTAssertTrue(out.contains("truncated: 2"), out)
        XCTAssertTrue(out.contains("\(root.appendingPathComponent("a/1.wav").path): the header promises 16000 frames, 4000 read"), out)
        XCTAssertTrue(out.contains("\(root.appendingPathComponent("a/2.flac").path): the header promises 16000 frames, \(flacRead) read"), out)
    }

    /// `earshot embed --model logmel-stats` writes the probe's own reference vectors, one key per readable file,
    /// and a run that can read no file fails, writes nothing and names the first file with its reason.
    func testEmbedCommandWritesTheProbesReferenceEmbedding() throws {
        let dir = try temporaryFolder("embed-logmel")
        let tone = dir.appendingPathComponent("tone.wav"), empty = dir.appendingPathComponent("empty.wav")
        try writeTone(tone, frequency: 440, samples: 8000)
        try Data().write(to: empty)
        let out = dir.appendingPathComponent("e.safetensors")
        let run = try runEarshot(["embed", "--model", "logmel-stats", tone.path, empty.path, "--out", out.path])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("skipped \(empty.path): empty file"), run.output)
        let written = try SafeTensors.read(out).tensors
        XCTAssertEqual(Array(written.keys), [tone.path])
        let expected = try XCTUnwrap(LogMelStatsEmbedder().embed([tone.path], progress: nil).embeddings[tone.path])
        XCTAssertEqual(try XCTUnwrap(written[tone.path]).toArray(), expected)

        let none = dir.appendingPathComponent("none.safetensors")
        let failed = try runEarshot(["embed", "--model", "logmel-stats", empty.path, "--out", none.path])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.output.contains("no clip could be read (1 skipped; \(empty.path): empty file"), failed.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: none.path))

        // A window or seed means something only for an untrained encoder.
        let misplaced = try runEarshot(["embed", "--model", "logmel-stats", tone.path, "--frames", "64", "--out", none.path])
        XCTAssertNotEqual(misplaced.status, 0)
        XCTAssertTrue(misplaced.output.contains("--frames and --seed are for random:<name>"), misplaced.output)
    }
}
