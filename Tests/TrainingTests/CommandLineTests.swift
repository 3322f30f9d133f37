import Audio
import Engine
import Foundation
import Inference
import NN
import XCTest

/// The `earshot` command line itself, run as a user runs it (skipped where the binary is not built beside the tests).
final class CommandLineTests: XCTestCase {
    /// A fresh folder holding a half-second tone and an empty file named .wav: one readable clip, one not.
    func toneAndEmptyClip(_ prefix: String) throws -> (dir: URL, tone: URL, empty: URL) {
        let dir = try temporaryFolder(prefix)
        let tone = dir.appendingPathComponent("tone.wav"), empty = dir.appendingPathComponent("empty.wav")
        try writeTone(tone, frequency: 440, samples: 8000)
        try Data().write(to: empty)
        return (dir, tone, empty)
    }

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
        let (dir, tone, empty) = try toneAndEmptyClip("embed-logmel")
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

    /// `finetune --resume` without --epochs continues the run to its own epochs (it went on to the
    /// option's default of 10), and a resume of a finished run records no second test line.
    func testResumeWithoutEpochsKeepsTheRunsOwn() throws {
        let dir = try temporaryFolder("resume-epochs")
        var manifest = "path,label\n"
        for i in 0..<6 {
            for (label, frequency) in [("low", 300.0), ("high", 2500.0)] {
                let url = dir.appendingPathComponent("\(label)\(i).wav")
                try writeTone(url, frequency: frequency + 20 * Double(i), samples: 8000)
                manifest += "\(url.lastPathComponent),\(label)\n"
            }
        }
        try manifest.write(to: dir.appendingPathComponent("manifest.csv"), atomically: true, encoding: .utf8)
        let data = dir.appendingPathComponent("manifest.csv").path, out = dir.appendingPathComponent("run").path
        let first = try runEarshot(["finetune", "--model", "ast-tiny", "--depth", "1", "--target-length", "64", "--data", data,
                                    "--out", out, "--epochs", "2"])
        XCTAssertEqual(first.status, 0, first.output)
        let resumed = try runEarshot(["finetune", "--resume", "--data", data, "--out", out])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming after epoch 2"), resumed.output)
        XCTAssertTrue(resumed.output.contains("only the epochs (2)"), resumed.output)
        let lines = try String(contentsOf: URL(fileURLWithPath: out).appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.contains("\"epoch\":") }.count, 2, lines.joined(separator: "\n"))
        XCTAssertEqual(lines.filter { $0.contains("\"split\":\"test\"") }.count, 1, lines.joined(separator: "\n"))
    }

    /// `features` with no readable input fails and writes nothing (it wrote an empty file and exited 0),
    /// an implausible --sample-rate is refused before any file is read, and `dataset stats` names the
    /// clips it skipped and why (it only counted them, or said "no readable clips").
    func testFeaturesAndStatsNameWhatTheySkip() throws {
        let (dir, tone, empty) = try toneAndEmptyClip("features-skips")
        let out = dir.appendingPathComponent("f.safetensors")
        let none = try runEarshot(["features", empty.path, "--out", out.path])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.output.contains("no clip could be read (1 skipped; \(empty.path): empty file"), none.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        let rate = try runEarshot(["features", tone.path, "--kind", "logmel", "--sample-rate", "0", "--out", out.path])
        XCTAssertNotEqual(rate.status, 0)
        XCTAssertTrue(rate.output.contains("--sample-rate 0 Hz is outside 1000-1000000"), rate.output)
        let some = try runEarshot(["features", tone.path, empty.path, "--out", out.path])
        XCTAssertEqual(some.status, 0, some.output)
        XCTAssertTrue(some.output.contains("\(empty.path): empty file"), some.output)
        XCTAssertEqual(Array(try SafeTensors.read(out).tensors.keys), ["tone.wav"])

        try "path,label\ntone.wav,a\nempty.wav,b\n".write(to: dir.appendingPathComponent("m.csv"), atomically: true, encoding: .utf8)
        let stats = try runEarshot(["dataset", "stats", dir.appendingPathComponent("m.csv").path, "--target-length", "64"])
        XCTAssertEqual(stats.status, 0, stats.output)
        XCTAssertTrue(stats.output.contains("\(empty.path): empty file") && stats.output.contains("\"skipped\": 1"), stats.output)
    }

    /// `pairs check` on a pairs file with a header and no rows fails (it reported "0 valid pairs" and
    /// exited 0, and fine-tuning then stopped on it).
    func testPairsCheckRefusesAFileWithNoPairs() throws {
        let dir = try temporaryFolder("pairs-empty")
        var manifest = "path,label\n"
        for i in 0..<4 {
            try writeTone(dir.appendingPathComponent("\(i).wav"), frequency: 300 + 100 * Double(i), samples: 4000)
            manifest += "\(i).wav,\(i % 2 == 0 ? "a" : "b")\n"
        }
        try manifest.write(to: dir.appendingPathComponent("m.csv"), atomically: true, encoding: .utf8)
        let pairs = dir.appendingPathComponent("pairs.csv")
        try "clip_a,clip_b,class,preference\n".write(to: pairs, atomically: true, encoding: .utf8)
        let run = try runEarshot(["pairs", "check", "--data", dir.appendingPathComponent("m.csv").path, "--pairs", pairs.path])
        XCTAssertNotEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("no pairs (only a header)"), run.output)
        try "clip_a,clip_b,class,preference\n0.wav,2.wav,a,a\n".write(to: pairs, atomically: true, encoding: .utf8)
        let one = try runEarshot(["pairs", "check", "--data", dir.appendingPathComponent("m.csv").path, "--pairs", pairs.path])
        XCTAssertEqual(one.status, 0, one.output)
        XCTAssertTrue(one.output.contains("1 valid pairs"), one.output)
    }

    /// `pretrain --task contrastive --model X` trained the default tower and ignored X; it is refused,
    /// pointing at --audio-model.
    func testContrastivePretrainingRefusesTheMaskedPatchModelOption() throws {
        let dir = try temporaryFolder("contrastive-model")
        let run = try runEarshot(["pretrain", "--task", "contrastive", "--model", "ast-tiny", "--text-model", dir.path,
                                  "--data", dir.path, "--out", dir.appendingPathComponent("run").path])
        XCTAssertNotEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("--model ast-tiny is the masked-patch model; a contrastive run's audio tower is --audio-model"), run.output)
    }

    /// `dataset events` refuses sizes no WAV holds and gaps longer than the recording (they trapped
    /// converting to Int, or asked for 128 PB), before reading any data.
    func testEventRecordingSizesAreChecked() throws {
        let dir = try temporaryFolder("events-sizes")
        for (option, fragment) in [("--seconds=1000000000000", "more than a WAV holds"), ("--max-gap=1e30", "within --seconds"),
                                   ("--sample-rate=1000000000000", "outside 1000-1000000")] {
            let run = try runEarshot(["dataset", "events", "--data", dir.path, "--split", "test", "--out", dir.appendingPathComponent("e.wav").path, option])
            XCTAssertNotEqual(run.status, 0, run.output)
            XCTAssertTrue(run.output.contains(fragment), "\(option): \(run.output)")
        }
    }

    /// A dataset packed into shards by `dataset pack` is classified and embedded from the shard itself: each clip
    /// named `<shard>.tar/<member>`, its scores those of the file it was packed from.
    func testShardsPackAndClassifyInPlace() throws {
        let dir = try temporaryFolder("shards-cli")
        let (data, manifest) = try toneManifest(in: dir)
        let run = dir.appendingPathComponent("run").path
        let ft = try runEarshot(["finetune", "--data", manifest.path, "--depth", "1", "--target-length", "64", "--epochs", "1", "--out", run])
        XCTAssertEqual(ft.status, 0, ft.output)
        let shards = dir.appendingPathComponent("shards")
        let pack = try runEarshot(["dataset", "pack", manifest.path, "--out", shards.path, "--shard-size", "4"])
        XCTAssertEqual(pack.status, 0, pack.output)
        let shard = shards.appendingPathComponent("test/000000.tar").path
        let fromShard = try runEarshot(["classify", shard, "--model", run, "--json"])
        XCTAssertEqual(fromShard.status, 0, fromShard.output)
        let rows = fromShard.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["file"] != nil }
        XCTAssertEqual(rows.count, 2, fromShard.output)
        let tests = data.records.filter { $0.split == "test" }.map(\.path)
        let fromFiles = try runEarshot(["classify"] + tests + ["--model", run, "--json"])
        let fileRows = fromFiles.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["file"] != nil }
        for (a, b) in zip(rows, fileRows) {
            XCTAssertTrue((a["file"] as? String)?.hasPrefix(shard + "/") == true, "\(a)")
            XCTAssertEqual(a["scores"] as? [Double], b["scores"] as? [Double])
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: shards.appendingPathComponent("test/000000").path), "nothing extracted")
    }
}
