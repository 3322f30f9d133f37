import Foundation
import XCTest
import Engine
@testable import Audio

final class DatasetTests: XCTestCase {
    var dir: URL!
    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-ds-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    func tone(_ url: URL, freq: Double = 440, seconds: Double = 0.5, rate: Int = 16000) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let n = Int(seconds * Double(rate))
        try AudioFile.writeWAV((0..<n).map { Float(0.3 * sin(2 * Double.pi * freq * Double($0) / Double(rate))) }, sampleRate: rate, to: url)
    }

    func testSharedFSDDAndESC10() throws {
        let sharedData = try requireSharedData("fsdd", "esc10")
        let fsdd = try Dataset.load(sharedData.appendingPathComponent("fsdd"))
        XCTAssertEqual(fsdd.records.count, 3000)
        XCTAssertEqual(fsdd.classes, (0...9).map(String.init))
        XCTAssertEqual(fsdd.split("test").records.count, 300)
        XCTAssertEqual(Set(fsdd.records.compactMap(\.speaker)).count, 6)
        // Speaker identification: six classes, the same official split, labels from the file names.
        let speakers = try fsdd.labelled(by: "speaker")
        XCTAssertEqual(speakers.classes.count, 6)
        XCTAssertEqual(speakers.split("test").records.count, 300)
        XCTAssertEqual(speakers.records[0].labels, [fsdd.records[0].speaker!])
        XCTAssertThrowsError(try fsdd.labelled(by: "colour"))
        let esc = try Dataset.load(sharedData.appendingPathComponent("esc10"))
        XCTAssertEqual(esc.records.count, 400)
        XCTAssertEqual(esc.classes.count, 10)
        XCTAssertEqual(esc.fold(1).test.records.count, 80)
        XCTAssertTrue(FileManager.default.fileExists(atPath: esc.records[0].path))
        XCTAssertThrowsError(try esc.labelled(by: "speaker")) { XCTAssertTrue("\($0)".contains("no speaker")) }
    }

    /// A few-shot draw: at most n clips per class, the same clips for the same seed, others for another,
    /// the class list of the whole dataset, and a clear error for n < 1.
    func testSampledPerClass() throws {
        var records: [ClipRecord] = []
        for i in 0..<30 { records.append(ClipRecord(path: "c\(i).wav", labels: [["a", "b", "c"][i % 3]])) }
        records.append(ClipRecord(path: "rare.wav", labels: ["d"]))
        let data = Dataset(records: records, layout: "test")
        let few = try data.sampled(perClass: 2, seed: 7)
        XCTAssertEqual(few.classes, data.classes)
        var counts: [String: Int] = [:]
        for r in few.records { counts[r.labels[0], default: 0] += 1 }
        XCTAssertEqual(counts, ["a": 2, "b": 2, "c": 2, "d": 1], "a class with fewer clips keeps all of them")
        XCTAssertEqual(few.records.map(\.path), records.filter(few.records.contains).map(\.path), "original order kept")
        XCTAssertEqual(try data.sampled(perClass: 2, seed: 7).records, few.records)
        let draws = Set(try (0..<5).map { try data.sampled(perClass: 2, seed: UInt64($0)).records.map(\.path) })
        XCTAssertGreaterThan(draws.count, 1, "other seeds draw other clips")
        XCTAssertEqual(try data.sampled(perClass: 100, seed: 0).records, records)
        XCTAssertThrowsError(try data.sampled(perClass: 0, seed: 0)) { XCTAssertTrue("\($0)".contains("at least 1"), "\($0)") }
        let subset = data.filter { $0.labels != ["a"] }
        XCTAssertEqual(subset.classes, data.classes, "a subset keeps the class ids of the whole")
        XCTAssertEqual(subset.records.count, 21)
    }

    func testFolderLayouts() throws {
        try tone(dir.appendingPathComponent("classes/dog/a.wav"))
        try tone(dir.appendingPathComponent("classes/rain/b.wav"))
        try tone(dir.appendingPathComponent("classes/rain/c.flac.txt"))   // not audio: ignored
        let folder = try Dataset.load(dir.appendingPathComponent("classes"))
        XCTAssertEqual(folder.layout, "folder per class")
        XCTAssertEqual(folder.records.map(\.labels), [["dog"], ["rain"]])

        try tone(dir.appendingPathComponent("fsdd/3_jackson_2.wav"))
        try tone(dir.appendingPathComponent("fsdd/7_theo_12.wav"))
        let fsdd = try Dataset.load(dir.appendingPathComponent("fsdd"))
        XCTAssertEqual(fsdd.layout, "FSDD file names")
        XCTAssertEqual(fsdd.records.map(\.split), ["test", "train"])

        let sc = dir.appendingPathComponent("sc")
        for f in ["yes/x_nohash_0.wav", "yes/y_nohash_0.wav", "no/x_nohash_1.wav", "_background_noise_/n.wav"] { try tone(sc.appendingPathComponent(f)) }
        try "yes/y_nohash_0.wav\n".write(to: sc.appendingPathComponent("validation_list.txt"), atomically: true, encoding: .utf8)
        try "no/x_nohash_1.wav\n".write(to: sc.appendingPathComponent("testing_list.txt"), atomically: true, encoding: .utf8)
        let speech = try Dataset.load(sc)
        XCTAssertEqual(speech.layout, "Speech Commands")
        XCTAssertEqual(speech.classes, ["no", "yes"])
        XCTAssertEqual(Dictionary(grouping: speech.records, by: { $0.split ?? "" }).mapValues(\.count), ["train": 1, "validation": 1, "test": 1])
    }

    /// A plain folder of clips (what one pretrains on or embeds) is unlabelled clips; next to class
    /// folders, clips at the top stay in, unlabelled, and an audio-free folder says what it looked for.
    func testPlainFolderOfClipsIsUnlabelled() throws {
        let plain = dir.appendingPathComponent("plain")
        for f in ["street.wav", "Birds.FLAC.wav", "notes.txt"] { try tone(plain.appendingPathComponent(f)) }
        let clips = try Dataset.load(plain)
        XCTAssertEqual(clips.layout, "folder of unlabelled clips")
        XCTAssertEqual(clips.records.map { URL(fileURLWithPath: $0.path).lastPathComponent }, ["Birds.FLAC.wav", "street.wav"])
        XCTAssertEqual(clips.records.map(\.labels), [[], []])
        XCTAssertEqual(clips.classes, [])

        try tone(plain.appendingPathComponent("dog/a.wav"))
        let mixed = try Dataset.load(plain)
        XCTAssertEqual(mixed.layout, "folder per class, 2 unlabelled clips at the top")
        XCTAssertEqual(mixed.records.map(\.labels), [[], [], ["dog"]])
        XCTAssertEqual(mixed.classes, ["dog"])

        let none = dir.appendingPathComponent("none")
        try tone(none.appendingPathComponent("readme.txt"))
        XCTAssertThrowsError(try Dataset.load(none)) { error in
            XCTAssertTrue("\(error)".contains("none: no audio files found"), "\(error)")
        }
    }

    func testManifestsAndKnownCSVs() throws {
        let esc50 = dir.appendingPathComponent("ESC-50")
        try FileManager.default.createDirectory(at: esc50.appendingPathComponent("meta"), withIntermediateDirectories: true)
        try "filename,fold,target,category,esc10,src_file,take\n1-100032-A.wav,1,0,dog,True,100032,A\n\"2-1.wav\",2,41,\"chain, saw\",True,1,A\n"
            .write(to: esc50.appendingPathComponent("meta/esc50.csv"), atomically: true, encoding: .utf8)
        let e = try Dataset.load(esc50)
        XCTAssertEqual(e.layout, "ESC-50")
        XCTAssertEqual(e.records[0].path, esc50.appendingPathComponent("audio/1-100032-A.wav").path)
        XCTAssertEqual(e.records.map(\.fold), [1, 2])

        let us = dir.appendingPathComponent("UrbanSound8K")
        try FileManager.default.createDirectory(at: us.appendingPathComponent("metadata"), withIntermediateDirectories: true)
        try "slice_file_name,fsID,start,end,salience,fold,classID,class\n100032-3-0-0.wav,100032,0,0.3,1,5,3,dog_bark\n"
            .write(to: us.appendingPathComponent("metadata/UrbanSound8K.csv"), atomically: true, encoding: .utf8)
        let u = try Dataset.load(us)
        XCTAssertEqual(u.records[0].path, us.appendingPathComponent("audio/fold5/100032-3-0-0.wav").path)
        XCTAssertEqual(u.records[0].labels, ["dog_bark"])

        let jsonl = dir.appendingPathComponent("m.jsonl")
        try "{\"path\": \"a.wav\", \"labels\": [\"Speech\", \"Music\"], \"caption\": \"a man talks over music\"}\n{\"path\": \"/abs/b.wav\", \"label\": \"Music\", \"split\": \"test\"}\n"
            .write(to: jsonl, atomically: true, encoding: .utf8)
        let j = try Dataset.load(jsonl)
        XCTAssertTrue(j.multiLabel)
        XCTAssertEqual(j.records[0].caption, "a man talks over music")
        XCTAssertEqual(j.records[1].path, "/abs/b.wav")

        let ast = dir.appendingPathComponent("train_data.json")
        try "{\"data\": [{\"wav\": \"/x/1.wav\", \"labels\": \"/m/09x0r,/m/04rlf\"}]}".write(to: ast, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Dataset.load(ast).records[0].labels, ["/m/09x0r", "/m/04rlf"])

        let bad = dir.appendingPathComponent("bad.csv")
        try "name,label\nx,1\n".write(to: bad, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Dataset.load(bad)) { XCTAssertTrue("\($0)".contains("no path column")) }
        XCTAssertThrowsError(try Dataset.load(dir.appendingPathComponent("nowhere"))) { XCTAssertTrue("\($0)".contains("no such")) }
    }

    /// A folder holding a manifest (runs/demo/data: manifest.jsonl beside class folders) is read through
    /// the manifest, keeping its splits and fields; class folders only where there is none.
    func testFolderWithManifestIsReadThroughIt() throws {
        let data = dir.appendingPathComponent("data")
        for f in ["yes/a.wav", "yes/b.wav", "no/c.wav", "no/d.wav"] { try tone(data.appendingPathComponent(f)) }
        XCTAssertEqual(try Dataset.load(data).layout, "folder per class")
        try """
            {"path": "yes/a.wav", "label": "yes", "speaker": "en", "split": "train"}
            {"path": "no/c.wav", "label": "no", "speaker": "de", "split": "train"}
            {"path": "no/d.wav", "label": "no", "speaker": "fr", "split": "test"}

            """.write(to: data.appendingPathComponent("manifest.jsonl"), atomically: true, encoding: .utf8)
        let ds = try Dataset.load(data)
        XCTAssertEqual(ds.layout, "JSON Lines manifest (manifest.jsonl)")
        XCTAssertEqual(ds.records.map(\.path), ["yes/a.wav", "no/c.wav", "no/d.wav"].map { data.appendingPathComponent($0).path })
        XCTAssertEqual(ds.split("test").records.map(\.speaker), ["fr"])
        XCTAssertEqual(ds.split("train").records.count, 2)
        XCTAssertEqual(ds.classes, ["no", "yes"])

        // Each manifest name, and jsonl first where there are several.
        try "path,label,split\nyes/b.wav,yes,test\n".write(to: data.appendingPathComponent("manifest.csv"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try Dataset.load(data).records.count, 3)
        try FileManager.default.removeItem(at: data.appendingPathComponent("manifest.jsonl"))
        let csv = try Dataset.load(data)
        XCTAssertEqual(csv.layout, "CSV manifest (manifest.csv)")
        XCTAssertEqual(csv.records, [ClipRecord(path: data.appendingPathComponent("yes/b.wav").path, labels: ["yes"], split: "test")])
        try FileManager.default.removeItem(at: data.appendingPathComponent("manifest.csv"))
        try "{\"data\": [{\"wav\": \"no/c.wav\", \"labels\": \"no\"}]}".write(to: data.appendingPathComponent("manifest.json"), atomically: true, encoding: .utf8)
        let ast = try Dataset.load(data)
        XCTAssertEqual(ast.layout, "AST JSON (manifest.json)")
        XCTAssertEqual(ast.records.map(\.path), [data.appendingPathComponent("no/c.wav").path])
        try FileManager.default.removeItem(at: data.appendingPathComponent("manifest.json"))
        try "file,label\nno/d.wav,no\n".write(to: data.appendingPathComponent("metadata.csv"), atomically: true, encoding: .utf8)
        let meta = try Dataset.load(data)
        XCTAssertEqual(meta.layout, "CSV manifest (metadata.csv)")
        XCTAssertEqual(meta.records.map(\.path), [data.appendingPathComponent("no/d.wav").path])
        try FileManager.default.removeItem(at: data.appendingPathComponent("metadata.csv"))
        XCTAssertEqual(try Dataset.load(data).layout, "folder per class")
        // A broken manifest is an error naming it, not a silent fall-back to the class folders.
        try "not json\n".write(to: data.appendingPathComponent("manifest.jsonl"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Dataset.load(data)) { XCTAssertTrue("\($0)".contains("manifest.jsonl"), "\($0)") }
    }

    /// Several path columns: per row, the first whose file exists (an absolute "file" where the relative
    /// "path" leads nowhere), else the first column's; the loader then names the missing file.
    func testManifestPathColumnsResolveToFilesThatExist() throws {
        let audio = dir.appendingPathComponent("elsewhere")
        try tone(audio.appendingPathComponent("a.wav"), freq: 300)
        try tone(audio.appendingPathComponent("b.wav"), freq: 600)
        let meta = dir.appendingPathComponent("meta")
        try tone(meta.appendingPathComponent("local/c.wav"), freq: 900)
        let manifest = meta.appendingPathComponent("list.csv")
        try """
            path,file,label
            clips/a.wav,\(audio.appendingPathComponent("a.wav").path),low
            clips/b.wav,\(audio.appendingPathComponent("b.wav").path),high
            local/c.wav,\(audio.appendingPathComponent("c.wav").path),high
            clips/d.wav,\(audio.appendingPathComponent("d.wav").path),low

            """.write(to: manifest, atomically: true, encoding: .utf8)
        let ds = try Dataset.load(manifest)
        XCTAssertEqual(ds.records.map(\.path), [
            audio.appendingPathComponent("a.wav").path,    // the relative path leads nowhere: the absolute file
            audio.appendingPathComponent("b.wav").path,
            meta.appendingPathComponent("local/c.wav").path, // the first column resolves: it wins
            meta.appendingPathComponent("clips/d.wav").path, // neither: the first column's, for the loader to name
        ])
        let loader = try FeatureLoader(dataset: ds, pipeline: FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 16), batchSize: 4)
        var used = 0
        try loader.forEachBatch(epoch: 0) { used += $0.indices.count }
        XCTAssertEqual(used, 3)
        XCTAssertEqual(loader.report.skipped.map(\.path), [meta.appendingPathComponent("clips/d.wav").path])
        XCTAssertTrue(loader.report.summary.contains("clips/d.wav: no such file"), loader.report.summary)

        // A manifest none of whose files exist still loads; the loader names each file.
        let nowhere = dir.appendingPathComponent("nowhere.csv")
        try "path,label\nx/1.wav,a\n".write(to: nowhere, atomically: true, encoding: .utf8)
        let lost = try Dataset.load(nowhere)
        XCTAssertEqual(lost.records.map(\.path), [dir.appendingPathComponent("x/1.wav").path])
        let strict = try FeatureLoader(dataset: lost, pipeline: FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 16), batchSize: 1, strict: true)
        XCTAssertThrowsError(try strict.forEachBatch(epoch: 0) { _ in }) { XCTAssertTrue("\($0)".contains("x/1.wav: no such file"), "\($0)") }
    }

    /// A truncated clip is used as far as it goes and noted (once, with both lengths), also when its
    /// features come from the cache; a zero-frame file is skipped.
    func testLoaderUsesTruncatedClipsAndNotesThem() throws {
        let root = dir.appendingPathComponent("cut")
        for i in 0..<3 { try tone(root.appendingPathComponent("a/\(i).wav"), freq: 300 + 100 * Double(i), seconds: 1) }
        let bytes = try Data(contentsOf: root.appendingPathComponent("a/2.wav"))
        try bytes.prefix(44 + 2 * 6000).write(to: root.appendingPathComponent("a/2.wav"))
        try bytes.prefix(44).write(to: root.appendingPathComponent("a/3.wav"))
        let dataset = try Dataset.load(root)
        let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 32)
        let cut = root.appendingPathComponent("a/2.wav").path
        for cache in [nil, dir.appendingPathComponent("cache"), dir.appendingPathComponent("cache")] {
            let report = SkipReport()
            XCTAssertEqual("\(report)", "no clips skipped")
            XCTAssertTrue(report.isEmpty)
            let loader = try FeatureLoader(dataset: dataset, pipeline: pipeline, batchSize: 2, cacheDirectory: cache, report: report)
            var used: [Int] = []
            for epoch in 0..<2 { try loader.forEachBatch(epoch: epoch) { used += $0.indices } }
            XCTAssertEqual(used.count, 6, "three clips a epoch, the truncated one among them")
            XCTAssertTrue(used.contains { dataset.records[$0].path == cut })
            XCTAssertEqual(report.skipped.map(\.path), [root.appendingPathComponent("a/3.wav").path])
            XCTAssertEqual(report.truncated.map(\.path), [cut])
            XCTAssertEqual(report.truncated.first?.promised, 16000)
            XCTAssertEqual(report.truncated.first?.read, 6000)
            XCTAssertFalse(report.isEmpty)
            XCTAssertEqual("\(report)", report.summary)
            XCTAssertEqual(report.summary.split(separator: "\n").map(String.init), [
                "skipped 1 unreadable clip:",
                "  \(root.appendingPathComponent("a/3.wav").path): no audio frames (truncated: the header promises 16000 frames)",
                "used 1 truncated clip (decoded as far as they go):",
                "  \(cut): the header promises 16000 frames, 6000 read",
            ])
        }
        // Truncated clips only: nothing skipped, the truncation still told.
        let report = SkipReport()
        report.recordTruncated("x.wav", AudioTruncation(promised: 10, read: 4))
        XCTAssertEqual("\(report)", "no clips skipped\nused 1 truncated clip (decoded as far as they go):\n  x.wav: the header promises 10 frames, 4 read")
    }

    /// A command that read no clip says which file failed first and why, and how many others did.
    func testNoClipReadMessageNamesTheFirstFileAndItsReason() {
        XCTAssertEqual(noClipReadMessage([("a.wav", "empty file (0 bytes)")], total: 1),
                       "no clip could be read (1 skipped; a.wav: empty file (0 bytes))")
        XCTAssertEqual(noClipReadMessage([("a.wav", "empty file (0 bytes)"), ("b.ogg", "cannot decode audio")], total: 2),
                       "no clip could be read (2 skipped; a.wav: empty file (0 bytes), and 1 more)")
        XCTAssertEqual(noClipReadMessage([], total: 3), "no clip could be read (3 skipped)")
    }

    /// A quote never closed, or a row with more fields than the header (an unquoted comma in a path),
    /// would silently shift or swallow rows: both are errors naming the file and line. Quoted commas,
    /// quoted newlines, CRLF, short rows and trailing empty fields read as pandas reads them.
    func testMalformedCSVsNameTheLineAndWellFormedOnesRead() throws {
        XCTAssertThrowsError(try CSV.records("path,label\na.wav,x\n\"b.wav,y\nc.wav,z\n", file: "m.csv")) {
            XCTAssertEqual("\($0)", "m.csv: line 3: a quoted field opens here and is never closed")
        }
        XCTAssertThrowsError(try CSV.records("path,label\na.wav,x\nmy,file.wav,y\n", file: "m.csv")) {
            XCTAssertEqual("\($0)", "m.csv: line 3 has 3 fields but the header has 2 (quote a field that holds a comma)")
        }
        let (header, rows) = try CSV.records("path,label\r\n\"my, file.wav\",\"two\nlines\"\r\nb.wav,y,\r\nc.wav\r\n", file: "m.csv")
        XCTAssertEqual(header, ["path", "label"])
        XCTAssertEqual(rows, [["path": "my, file.wav", "label": "two\nlines"], ["path": "b.wav", "label": "y"], ["path": "c.wav"]])
        let lines = try CSV.parseLines("a\n\"x\ny\"\nb\n").map(\.line)
        XCTAssertEqual(lines, [1, 2, 4], "a row's line counts the newlines inside quoted fields before it")

        let folder = dir.appendingPathComponent("ragged")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let manifest = folder.appendingPathComponent("manifest.csv")
        try "path,label\na.wav,x\nb,c.wav,y\n".write(to: manifest, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Dataset.load(manifest)) { XCTAssertTrue("\($0)".contains("manifest.csv: line 3 has 3 fields"), "\($0)") }
        XCTAssertEqual(noClipReadMessage([], total: 0), "no clips given (the inputs list no audio)")
    }

    func testLoaderSkipsBadFilesCachesAndIsStrictOnRequest() throws {
        let root = dir.appendingPathComponent("mixed")
        for i in 0..<5 { try tone(root.appendingPathComponent("\(i % 2 == 0 ? "hi" : "lo")/\(i).wav"), freq: Double(i % 2 == 0 ? 2000 : 300) + Double(10 * i), rate: 8000) }  // distinct content, distinct cache keys
        try Data("garbage".utf8).write(to: root.appendingPathComponent("hi/broken.wav"))
        let dataset = try Dataset.load(root)
        XCTAssertEqual(dataset.records.count, 6)
        let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 64)
        let cacheDir = dir.appendingPathComponent("cache")
        let loader = try FeatureLoader(dataset: dataset, pipeline: pipeline, batchSize: 4, seed: 1, cacheDirectory: cacheDir)
        var seen = 0, first: Tensor?
        try loader.forEachBatch(epoch: 0) { batch in
            XCTAssertEqual(Array(batch.features.shape.dropFirst()), [64, 128])
            seen += batch.labels.count
            if first == nil { first = batch.features }
        }
        XCTAssertEqual(seen, 5)
        XCTAssertEqual(loader.report.skipped.count, 1)
        XCTAssertTrue(loader.report.summary.contains("broken.wav"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cacheDir.path).filter { $0.hasSuffix(".feat") }.count, 5)
        // The cached pass gives the same features in the same order.
        let again = try FeatureLoader(dataset: dataset, pipeline: pipeline, batchSize: 4, seed: 1, cacheDirectory: cacheDir)
        var firstAgain: Tensor?
        try again.forEachBatch(epoch: 0) { if firstAgain == nil { firstAgain = $0.features } }
        XCTAssertEqual(first?.toArray(), firstAgain?.toArray())
        let strict = try FeatureLoader(dataset: dataset, pipeline: pipeline, batchSize: 6, strict: true)
        XCTAssertThrowsError(try strict.forEachBatch(epoch: 0) { _ in }) { XCTAssertTrue("\($0)".contains("broken.wav")) }
    }

    /// A run meets a broken file every epoch, and its test split through a second loader: the report
    /// names each file once, with a reason that does not repeat the path.
    func testSkipReportNamesEachFileOnceAcrossEpochsAndLoaders() throws {
        let root = dir.appendingPathComponent("twice")
        for i in 0..<3 { try tone(root.appendingPathComponent("a/\(i).wav"), freq: 400 + 50 * Double(i), rate: 8000) }
        try Data("garbage".utf8).write(to: root.appendingPathComponent("a/broken.wav"))
        try Data().write(to: root.appendingPathComponent("a/empty.wav"))
        let dataset = try Dataset.load(root)
        let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 32)
        let report = SkipReport()
        let train = try FeatureLoader(dataset: dataset, pipeline: pipeline, batchSize: 2, report: report)
        for epoch in 0..<3 { try train.forEachBatch(epoch: epoch) { _ in } }
        let test = try FeatureLoader(dataset: dataset, pipeline: pipeline, batchSize: 2, shuffle: false, report: report)
        try test.forEachBatch(epoch: 0) { _ in }
        XCTAssertEqual(report.skipped.map { URL(fileURLWithPath: $0.path).lastPathComponent }.sorted(), ["broken.wav", "empty.wav"])
        for entry in report.skipped { XCTAssertFalse(entry.reason.contains(entry.path), entry.reason) }
        XCTAssertTrue(report.summary.hasPrefix("skipped 2 unreadable clips:"), report.summary)
        XCTAssertEqual("\(report)", report.summary, "printing a report describes it")
        XCTAssertTrue(report.truncated.isEmpty)
    }
}
