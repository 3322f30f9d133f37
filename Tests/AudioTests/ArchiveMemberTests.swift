import Foundation
import XCTest
@testable import Audio

/// Audio read where it lies in a tar archive (`<archive>.tar/<member>`): every reader gives what it gives
/// for the same bytes as a file, in every format libsndfile writes; a truncated member is a truncation, a
/// missing or empty one an error naming it, and a rewritten archive is indexed anew.
final class ArchiveMemberTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-tar-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    /// `tar -cf archive -C folder names...` (GNU tar, as WebDataset's tools write shards).
    func tar(_ archive: URL, from folder: URL, _ names: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["tar", "-cf", archive.path, "-C", folder.path] + names
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "tar failed")
    }

    func clip(_ frames: Int, _ frequency: Float, rate: Int = 16000) -> [Float] {
        (0..<frames).map { 0.4 * sin(2 * Float.pi * frequency * Float($0) / Float(rate)) + 0.05 * sin(Float($0) * 0.37) }
    }

    func testMembersDecodeAsTheirFilesInEveryFormat() throws {
        let src = root.appendingPathComponent("src")
        try FileManager.default.createDirectory(at: src.appendingPathComponent("sub"), withIntermediateDirectories: true)
        let encodings: [(String, AudioFile.Encoding)] = [("wav", .wavS16), ("f32.wav", .wavFloat), ("flac", .flac), ("ogg", .oggVorbis), ("mp3", .mp3)]
        var names: [String] = []
        for (i, (ext, encoding)) in encodings.enumerated() {
            let name = "sub/clip\(i).\(ext)"
            try AudioFile.write([clip(12_000 + 333 * i, 300 + 50 * Float(i)), clip(12_000 + 333 * i, 700)], sampleRate: 16000,
                                to: src.appendingPathComponent(name), encoding: encoding)
            names.append(name)
        }
        let archive = root.appendingPathComponent("shard.tar")
        try tar(archive, from: src, names)
        for name in names {
            let file = src.appendingPathComponent(name)
            let member = URL(fileURLWithPath: archive.path + "/" + name)
            XCTAssertFalse(FileManager.default.fileExists(atPath: member.path))
            XCTAssertEqual(ArchivePath.split(member.path)?.archive, archive.path)
            XCTAssertEqual(ArchivePath.split(member.path)?.member, name)
            let a = try AudioFile.read(member, mono: false), b = try AudioFile.read(file, mono: false)
            XCTAssertEqual(a.channels, b.channels, name)
            XCTAssertEqual(a.sampleRate, b.sampleRate, name)
            XCTAssertEqual(try AudioFile.read(member).channels, try AudioFile.read(file).channels, name)
            XCTAssertEqual(try AudioFile.info(member, verifyLength: true), try AudioFile.info(file, verifyLength: true), name)
            XCTAssertEqual(try AudioFile.contents(of: member), try Data(contentsOf: file), name)
            // Streamed in blocks, as `tag --frames` and long-clip embedding read.
            let stream = try AudioStream(member)
            var streamed: [Float] = []
            while let block = try stream.next(1000) { streamed += block }
            XCTAssertEqual(streamed, try AudioFile.read(file).channels[0], name)
            // Features: the same tensor, and the cache entry is shared (it is keyed by the bytes).
            let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 64)
            XCTAssertEqual(try pipeline.features(of: member).toArray(), try pipeline.features(of: file).toArray(), name)
            let cache = try FeatureCache(directory: root.appendingPathComponent("cache"))
            XCTAssertEqual(try cache.key(for: member, pipeline: pipeline), try cache.key(for: file, pipeline: pipeline), name)
        }
    }

    func testMissingEmptyTruncatedAndRewrittenMembers() throws {
        let src = root.appendingPathComponent("src")
        try FileManager.default.createDirectory(at: src, withIntermediateDirectories: true)
        try AudioFile.write([clip(16000, 440)], sampleRate: 16000, to: src.appendingPathComponent("whole.wav"))
        let bytes = try Data(contentsOf: src.appendingPathComponent("whole.wav"))
        try bytes.prefix(bytes.count - 8000).write(to: src.appendingPathComponent("cut.wav"))   // the header promises 16000 frames
        try Data().write(to: src.appendingPathComponent("empty.wav"))
        try Data("not audio at all".utf8).write(to: src.appendingPathComponent("junk.wav"))
        let archive = root.appendingPathComponent("a.tar")
        try tar(archive, from: src, ["./whole.wav", "cut.wav", "empty.wav", "junk.wav"])   // "./" as `tar -cf x.tar .` writes names
        func path(_ member: String) -> URL { URL(fileURLWithPath: archive.path + "/" + member) }

        XCTAssertEqual(try AudioFile.read(path("whole.wav")).frameCount, 16000, "a ./ prefix is looked up without it")
        let cut = try AudioFile.read(path("cut.wav"))
        XCTAssertEqual(cut.truncated, AudioTruncation(promised: 16000, read: 12000))
        XCTAssertEqual(try AudioFile.info(path("cut.wav")).truncated, try AudioFile.info(src.appendingPathComponent("cut.wav")).truncated)
        for (member, message) in [("empty.wav", "empty file (0 bytes)"), ("junk.wav", "cannot decode audio"), ("nope.wav", "no such member in the archive")] {
            XCTAssertThrowsError(try AudioFile.read(path(member))) { error in
                XCTAssertTrue("\(error)".contains(archive.path + "/" + member + ": " + message), "\(error)")
            }
        }
        // Not an archive path: a missing archive, a folder named like one, an archive that is no tar.
        XCTAssertNil(ArchivePath.split(root.appendingPathComponent("none.tar/x.wav").path))
        let folder = root.appendingPathComponent("folder.tar")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        XCTAssertNil(ArchivePath.split(folder.path + "/x.wav"))
        XCTAssertThrowsError(try AudioFile.read(URL(fileURLWithPath: folder.path + "/x.wav"))) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
        let notTar = root.appendingPathComponent("fake.tar")
        try Data(repeating: 7, count: 2048).write(to: notTar)
        XCTAssertThrowsError(try AudioFile.read(URL(fileURLWithPath: notTar.path + "/x.wav"))) { XCTAssertTrue("\($0)".contains("fake.tar: not a tar archive"), "\($0)") }

        // The archive rewritten with other members: indexed anew, the old member gone, the new one read.
        try FileManager.default.removeItem(at: src.appendingPathComponent("cut.wav"))
        try AudioFile.write([clip(8000, 220)], sampleRate: 16000, to: src.appendingPathComponent("new.wav"))
        try FileManager.default.removeItem(at: archive)
        try tar(archive, from: src, ["new.wav", "whole.wav"])
        XCTAssertThrowsError(try AudioFile.read(path("cut.wav"))) { XCTAssertTrue("\($0)".contains("no such member"), "\($0)") }
        XCTAssertEqual(try AudioFile.read(path("new.wav")).frameCount, 8000)
        // Cut short after it was indexed (a copy still running): the read names the member, never a bus error.
        let whole = try Data(contentsOf: archive)
        XCTAssertEqual(try AudioFile.read(path("whole.wav")).frameCount, 16000)
        let handle = try FileHandle(forWritingTo: archive)
        try handle.truncate(atOffset: UInt64(whole.count / 2))
        try handle.close()
        XCTAssertThrowsError(try AudioFile.read(path("whole.wav")))
    }

    /// A manifest may list members (relative to it, as files are), and a loader reads them as files.
    func testManifestsAndLoadersReadMembers() throws {
        let src = root.appendingPathComponent("src")
        try FileManager.default.createDirectory(at: src, withIntermediateDirectories: true)
        for i in 0..<3 {
            try AudioFile.write([clip(8000, 200 + 150 * Float(i))], sampleRate: 16000, to: src.appendingPathComponent("\(i).flac"), encoding: .flac)
        }
        try FileManager.default.createDirectory(at: root.appendingPathComponent("shards"), withIntermediateDirectories: true)
        try tar(root.appendingPathComponent("shards/000.tar"), from: src, ["0.flac", "1.flac", "2.flac"])
        let manifest = root.appendingPathComponent("list.csv")
        try "path,label\nshards/000.tar/0.flac,a\nshards/000.tar/1.flac,b\nshards/000.tar/2.flac,a\nshards/000.tar/9.flac,b\n"
            .write(to: manifest, atomically: true, encoding: .utf8)
        let ds = try Dataset.load(manifest)
        XCTAssertEqual(ds.records[0].path, root.appendingPathComponent("shards/000.tar").path + "/0.flac")
        let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 32)
        let loader = try FeatureLoader(dataset: ds, pipeline: pipeline, batchSize: 4, shuffle: false, cacheDirectory: root.appendingPathComponent("cache"))
        var seen = 0
        try loader.forEachBatch(epoch: 0) { batch in
            seen += batch.indices.count
            XCTAssertEqual(batch.features.shape[0], 3)
            let direct = try pipeline.features(of: src.appendingPathComponent("1.flac"))
            XCTAssertEqual(Array(batch.features.toArray()[(32 * 128)..<(64 * 128)]), direct.toArray())
        }
        XCTAssertEqual(seen, 3)
        XCTAssertEqual(loader.report.skipped.count, 1)
        XCTAssertTrue(loader.report.summary.contains("000.tar/9.flac: no such member in the archive"), loader.report.summary)
    }
}
