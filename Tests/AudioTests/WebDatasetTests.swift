import Foundation
import XCTest
@testable import Audio

/// WebDataset shards (LAION-CLAP's training format) as datasets: shards written by GNU tar in both of its
/// formats LAION's tools produce (gnu long names, pax), captions from `.json` (a list or one) or `.txt`,
/// labels from `.json` tags or `.cls`, splits from shard folders, samples without audio or with broken
/// JSON skipped and counted, a damaged shard read up to the damage, a file that is no tar refused.
final class WebDatasetTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-wds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func tone(_ frequency: Float, frames: Int = 1600) -> [Float] {
        (0..<frames).map { 0.5 * sin(2 * Float.pi * frequency * Float($0) / 16000) }
    }

    /// A shard of `members` (relative path → bytes or an audio tone) written by `tar` in `format`.
    func shard(_ url: URL, format: String, _ members: [(String, Any)]) throws {
        let src = root.appendingPathComponent("src-\(UUID().uuidString)")
        for (path, content) in members {
            let file = src.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            if let samples = content as? [Float] {
                try AudioFile.write([samples], sampleRate: 16000, to: file, encoding: file.pathExtension == "flac" ? .flac : .wavS16)
            } else {
                try (content as! String).write(to: file, atomically: true, encoding: .utf8)
            }
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "--format=\(format)", "-cf", url.path, "-C", src.path] + members.map(\.0)
        try tar.run()
        tar.waitUntilExit()
        XCTAssertEqual(tar.terminationStatus, 0, "tar failed")
    }

    func testShardsReadAsADatasetWithCaptionsLabelsAndSplits() throws {
        let long = String(repeating: "a_very_long_folder_name/", count: 6) + "000009"   // > 100 characters: a long-name record
        let data = root.appendingPathComponent("laion")
        try shard(data.appendingPathComponent("train/000.tar"), format: "gnu", [
            ("000001.wav", tone(440)), ("000001.json", #"{"text": ["a dog barks", "a dog barking loudly", "a dog barks"], "tag": ["dog"]}"#),
            ("000002.flac", tone(880)), ("000002.txt", "rain on a roof\n"),
            ("000003.json", #"{"text": "no audio here"}"#),
            ("000004.wav", tone(220)), ("000004.json", "{not json"),
            ("\(long).wav", tone(330)), ("\(long).cls", "siren"),
        ])
        try shard(data.appendingPathComponent("valid/000.tar"), format: "pax", [
            ("\(long).flac", tone(660)), ("\(long).json", #"{"caption": "a siren wails", "labels": "siren;traffic"}"#),
        ])
        let ds = try WebDataset.load(data)
        XCTAssertTrue(ds.layout.hasPrefix("WebDataset, 2 shards, 2 samples skipped"), ds.layout)
        let byCaption = Dictionary(grouping: ds.records, by: { $0.caption ?? "" })
        XCTAssertEqual(ds.records.compactMap(\.caption).sorted(), ["a dog barking loudly", "a dog barks", "a siren wails", "rain on a roof"],
                       "one row per distinct caption")
        let dog = try XCTUnwrap(byCaption["a dog barks"]?.first)
        XCTAssertEqual(dog.labels, ["dog"])
        XCTAssertEqual(dog.split, "train")
        XCTAssertEqual(byCaption["a dog barking loudly"]?.first?.path, dog.path, "the captions of a clip share its audio")
        let siren = try XCTUnwrap(byCaption["a siren wails"]?.first)
        XCTAssertEqual(siren.labels, ["siren", "traffic"])
        XCTAssertEqual(siren.split, "validation")
        let cls = try XCTUnwrap(ds.records.first { $0.caption == nil })
        XCTAssertEqual(cls.labels, ["siren"])
        XCTAssertEqual(cls.split, "train")
        // A clip is its member, read in the shard: the audio that was packed, nothing extracted.
        let rain = try XCTUnwrap(byCaption["rain on a roof"]?.first)
        XCTAssertEqual(rain.path, data.appendingPathComponent("train/000.tar").path + "/000002.flac")
        XCTAssertEqual(siren.path, data.appendingPathComponent("valid/000.tar").path + "/\(long).flac")
        let decoded = try AudioFile.read(URL(fileURLWithPath: rain.path))
        XCTAssertEqual(decoded.frameCount, 1600)
        XCTAssertEqual(zip(decoded.channels[0], tone(880)).map { abs($0 - $1) }.max()!, 0, accuracy: 1e-4)
        XCTAssertEqual(try AudioFile.read(URL(fileURLWithPath: siren.path)).frameCount, 1600, "a pax long name resolves")
        XCTAssertEqual(try WebDataset.load(data).records, ds.records)
    }

    func testDatasetLoadReadsAShardAndAFolderOfShards() throws {
        let file = root.appendingPathComponent("one/000.tar")
        try shard(file, format: "gnu", [("a.wav", tone(440)), ("a.txt", "a tone")])
        for url in [file, file.deletingLastPathComponent()] {
            let ds = try Dataset.load(url)
            XCTAssertEqual(ds.records.map(\.caption), ["a tone"], url.path)
            XCTAssertEqual(ds.records[0].path, file.path + "/a.wav")
        }
    }

    func testDamagedShardsAreReadUpToTheDamageOrRefused() throws {
        let file = root.appendingPathComponent("d/000.tar")
        try shard(file, format: "gnu", [("a.wav", tone(440)), ("a.txt", "first"), ("b.wav", tone(880, frames: 16000)), ("b.txt", "second")])
        let whole = try Data(contentsOf: file)
        // Cut inside b.wav's data: a's sample survives, the damage is named with its offset.
        try whole.prefix(whole.count / 2).write(to: file)
        let ds = try WebDataset.load(file)
        XCTAssertEqual(ds.records.map(\.caption), ["first"])
        XCTAssertTrue(ds.layout.contains("1 damaged shard read up to the damage"), ds.layout)
        XCTAssertTrue(ds.layout.contains("truncated: a member of"), ds.layout)
        // A corrupted header checksum after the first member.
        var flipped = whole
        let second = 512 + (3200 + 44 + 511) / 512 * 512   // a.wav's header and data (16-bit WAV: 44-byte header)
        flipped[second + 10] ^= 0xff
        try flipped.write(to: file)
        XCTAssertTrue(try WebDataset.load(file).layout.contains("bad header checksum at byte \(second)"))
        // Not a tar at all, and an empty file.
        try Data("RIFF this is not a tar archive".utf8).write(to: file)
        XCTAssertThrowsError(try WebDataset.load(file)) { XCTAssertTrue("\($0)".contains("not a tar archive"), "\($0)") }
        try Data().write(to: file)
        XCTAssertThrowsError(try WebDataset.load(file)) { XCTAssertTrue("\($0)".contains("no sample that has audio"), "\($0)") }
    }

    /// Random damage (bytes overwritten anywhere, headers included, and cuts at random places) never crashes
    /// the reader: each load gives a dataset or a DatasetError, and each listed clip decodes in place or gives
    /// an error naming it.
    func testRandomDamageIsReportedNeverACrash() throws {
        let file = root.appendingPathComponent("f/000.tar")
        try shard(file, format: "pax", [("a.wav", tone(440)), ("a.json", #"{"text": ["one", "two"]}"#), ("b.flac", tone(880)), ("b.cls", "x")])
        let whole = try Data(contentsOf: file)
        var generator = SystemRandomNumberGenerator()
        var outcomes = (loaded: 0, refused: 0)
        for trial in 0..<200 {
            var damaged = whole
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                // Headers are where the parser decides: hit them often.
                let at = trial % 2 == 0 ? Int.random(in: 0..<min(1536, damaged.count), using: &generator) : Int.random(in: 0..<damaged.count, using: &generator)
                damaged[at] = UInt8.random(in: 0...255, using: &generator)
            }
            if trial % 3 == 0 { damaged = damaged.prefix(Int.random(in: 0..<damaged.count, using: &generator)) }
            try damaged.write(to: file)
            do {
                let ds = try WebDataset.load(file)
                outcomes.loaded += 1
                // Every clip it lists decodes in place, or fails naming itself: a damaged member is never a crash.
                for r in ds.records {
                    do { _ = try AudioFile.read(URL(fileURLWithPath: r.path)) } catch let e as AudioError {
                        XCTAssertTrue(e.message.hasPrefix(r.path), e.message)
                    }
                }
            } catch is DatasetError {
                outcomes.refused += 1
            }
        }
        XCTAssertEqual(outcomes.loaded + outcomes.refused, 200)
    }

    /// `pack` writes what `load` reads back (captions gathered per clip, labels, splits, the audio's bytes),
    /// and GNU tar lists its shards as ustar archives; an unreadable clip is skipped and named.
    func testPackedShardsReadBackAndAreTarArchives() throws {
        var records: [ClipRecord] = []
        for (i, (caption, split)) in [("a dog barks", "train"), ("a dog barking", "train"), ("rain", "validation"), ("a siren", "test"), ("wind", "train")].enumerated() {
            let file = root.appendingPathComponent("clips/c\(i % 4).flac")
            if i < 4 { try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
                try AudioFile.write([tone(Float(200 + 100 * i))], sampleRate: 16000, to: file, encoding: .flac) }
            // Rows 0 and 1 are one clip with two captions; row 4 names a file that is not there.
            let path = i == 1 ? root.appendingPathComponent("clips/c0.flac").path : i == 4 ? root.appendingPathComponent("clips/missing.flac").path : file.path
            records.append(ClipRecord(path: path, labels: ["l\(i)"], caption: caption, speaker: "s\(i % 4)", fold: i % 4 + 1, split: split))
        }
        let out = root.appendingPathComponent("packed")
        let report = try WebDataset.pack(Dataset(records: records, layout: "test"), to: out, samplesPerShard: 1)
        XCTAssertEqual(report.samples, 3)
        XCTAssertEqual(report.shards, ["train": 2, "valid": 1, "test": 1], "one clip a shard; the missing one's shard is empty")
        XCTAssertEqual(report.skipped.count, 1)
        XCTAssertTrue(report.skipped[0].contains("missing.flac: unreadable"), report.skipped[0])
        let back = try WebDataset.load(out)
        XCTAssertEqual(Set(back.records.compactMap(\.caption)), ["a dog barks", "a dog barking", "rain", "a siren"])
        let dog = back.records.filter { $0.caption?.hasPrefix("a dog") == true }
        XCTAssertEqual(Set(dog.map(\.path)).count, 1, "the two captions are one clip")
        XCTAssertEqual(dog.first?.labels, ["l0"])
        XCTAssertEqual(dog.first?.fold, 1)
        XCTAssertEqual(dog.first?.speaker, "s0")
        XCTAssertEqual(back.records.first { $0.caption == "rain" }?.split, "validation")
        XCTAssertEqual(try AudioFile.contents(of: URL(fileURLWithPath: try XCTUnwrap(back.records.first { $0.caption == "a siren" }).path)),
                       try Data(contentsOf: root.appendingPathComponent("clips/c3.flac")), "the audio's bytes as they were")
        let list = Process(), pipe = Pipe()
        list.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        list.arguments = ["tar", "-tvf", out.appendingPathComponent("test/000000.tar").path]
        list.standardOutput = pipe
        try list.run()
        list.waitUntilExit()
        XCTAssertEqual(list.terminationStatus, 0)
        let listing = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(listing.contains("000000000.flac") && listing.contains("000000000.json"), listing)   // splits in name order: test first
        // --flac: a WAV clip decoded and stored as FLAC, the same samples.
        let wav = root.appendingPathComponent("clips/w.wav")
        try AudioFile.write([tone(500)], sampleRate: 16000, to: wav)
        let flacOut = root.appendingPathComponent("flac")
        _ = try WebDataset.pack(Dataset(records: [ClipRecord(path: wav.path, labels: [], caption: "w")], layout: "t"), to: flacOut, flac: true)
        let clip = try XCTUnwrap(try WebDataset.load(flacOut).records.first)
        XCTAssertTrue(clip.path.hasSuffix(".flac"), clip.path)
        XCTAssertEqual(try AudioFile.read(URL(fileURLWithPath: clip.path)).channels, try AudioFile.read(wav).channels)
    }

    /// Samples beyond ±1 (an Ogg Vorbis decoder's overshoot: 14 ESC-10 clips) saturate when written in an
    /// integer format: no wrap-around in WAV, no refused block in FLAC (what made `pack --flac` skip them).
    func testOvershootingSamplesSaturateInIntegerFormats() throws {
        let samples: [Float] = [1.5, -1.5, 0.5, 1.0001] + [Float](repeating: 0.25, count: 1000)
        for encoding in [AudioFile.Encoding.wavS16, .flac] {
            let file = root.appendingPathComponent("over.\(encoding == .flac ? "flac" : "wav")")
            try AudioFile.write([samples], sampleRate: 16000, to: file, encoding: encoding)
            let back = try AudioFile.read(file).channels[0]
            XCTAssertEqual(back[0], 1, accuracy: 1e-3, "\(encoding)")
            XCTAssertEqual(back[1], -1, accuracy: 1e-3, "\(encoding)")
            XCTAssertEqual(back[2], 0.5, accuracy: 1e-3, "\(encoding)")
            XCTAssertEqual(back[3], 1, accuracy: 1e-3, "\(encoding)")
        }
    }
}
