import Foundation

extension WebDataset {
    /// What `pack` wrote: shards per split folder, samples, and the clips skipped (unreadable files).
    public struct PackReport: Sendable {
        public var shards: [String: Int] = [:]
        public var samples = 0
        public var skipped: [String] = []
    }

    /// Writes a dataset as WebDataset shards, the format LAION-CLAP's training code reads: under `out`,
    /// a folder per split (`train`, `valid`, `test`, as LAION-Audio-630K; clips without a split in `train`),
    /// shards `000000.tar`, … of at most `samplesPerShard` clips. Each clip is `<key>.<ext>`, its file's
    /// bytes as they are (no re-encoding), and `<key>.json` with `text` (its captions, a list), `tag` (its
    /// labels), `original_path`, and `fold` and `speaker` where the dataset has them (`load` reads them back). Keys are the clip's index, zero-padded. A shard is written to a
    /// temporary name and renamed, so a shard file is always whole; an unreadable file is skipped and named.
    /// `flac`: every clip decoded and written as 16-bit FLAC at its own rate and channels (LAION-CLAP's loader
    /// reads the `flac` member), instead of its file's bytes.
    public static func pack(_ dataset: Dataset, to out: URL, samplesPerShard: Int = 1000, flac: Bool = false) throws -> PackReport {
        guard samplesPerShard >= 1 else { throw DatasetError("pack: at least one sample per shard (got \(samplesPerShard))") }
        // A clip has one row per caption: gathered back into one sample.
        var order: [String] = [], rows: [String: [ClipRecord]] = [:]
        for r in dataset.records {
            if rows[r.path] == nil { order.append(r.path) }
            rows[r.path, default: []].append(r)
        }
        var bySplit: [String: [String]] = [:]
        for path in order {
            let folder = switch rows[path]![0].split {
            case "validation": "valid"
            case "test": "test"
            default: "train"
            }
            bySplit[folder, default: []].append(path)
        }
        var report = PackReport()
        var key = 0
        for folder in bySplit.keys.sorted() {
            let dir = out.appendingPathComponent(folder)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let paths = bySplit[folder]!
            var shard = 0
            for start in stride(from: 0, to: paths.count, by: samplesPerShard) {
                var tar = Data()
                for path in paths[start..<min(start + samplesPerShard, paths.count)] {
                    let url = URL(fileURLWithPath: path)
                    let audio: Data, ext: String
                    if flac {
                        do { (audio, ext) = (try flacBytes(of: url, scratch: dir), "flac") } catch {
                            report.skipped.append("\(path): \(error)")
                            continue
                        }
                    } else {
                        guard let bytes = try? AudioFile.contents(of: url) else { report.skipped.append("\(path): unreadable"); continue }
                        (audio, ext) = (bytes, url.pathExtension.lowercased())
                    }
                    guard audio.count < 1 << 33 else { report.skipped.append("\(path): 8 GB or more, beyond a ustar member"); continue }
                    let records = rows[path]!
                    var captions: [String] = []
                    for c in records.compactMap(\.caption) where !captions.contains(c) { captions.append(c) }
                    var fields: [String: Any] = ["text": captions, "tag": records[0].labels, "original_path": path]
                    if let fold = records[0].fold { fields["fold"] = fold }
                    if let speaker = records[0].speaker { fields["speaker"] = speaker }
                    let json = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
                    let name = String(format: "%09d", key)
                    TarWriter.append(&tar, name: name + "." + ext, data: audio)
                    TarWriter.append(&tar, name: name + ".json", data: json)
                    key += 1
                    report.samples += 1
                }
                tar.append(Data(count: 1024))   // the end: two zero blocks
                let file = dir.appendingPathComponent(String(format: "%06d.tar", shard))
                do { try tar.write(to: file, options: .atomic) } catch {
                    throw DatasetError("\(file.path): cannot write the shard (\(error.localizedDescription))")
                }
                shard += 1
            }
            report.shards[folder] = shard
        }
        return report
    }
}

extension WebDataset {
    /// A file's audio as 16-bit FLAC bytes (through a scratch file: libsndfile writes files).
    static func flacBytes(of url: URL, scratch dir: URL) throws -> Data {
        let audio = try AudioFile.read(url, mono: false)
        let file = dir.appendingPathComponent(".pack-\(UUID().uuidString).flac")
        defer { try? FileManager.default.removeItem(at: file) }
        try AudioFile.write(audio.channels, sampleRate: audio.sampleRate, to: file, encoding: .flac)
        return try Data(contentsOf: file)
    }
}

/// POSIX ustar members: a 512-byte header (name, mode, sizes in octal, checksum), the data padded to
/// 512 bytes. Names here are short keys, within ustar's 100 characters.
enum TarWriter {
    static func append(_ tar: inout Data, name: String, data: Data) {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, width: Int) {
            for (i, b) in text.utf8.prefix(width).enumerated() { header[offset + i] = b }
        }
        put(name, at: 0, width: 100)
        put("0000644", at: 100, width: 8)
        put("0000000", at: 108, width: 8)
        put("0000000", at: 116, width: 8)
        put(String(format: "%011o", data.count), at: 124, width: 12)
        put(String(format: "%011o", 0), at: 136, width: 12)
        put("        ", at: 148, width: 8)   // the checksum counts its own field as spaces
        header[156] = UInt8(ascii: "0")
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        let sum = header.reduce(0) { $0 + Int($1) }
        put(String(format: "%06o", sum), at: 148, width: 6)
        header[154] = 0
        header[155] = UInt8(ascii: " ")
        tar.append(contentsOf: header)
        tar.append(data)
        tar.append(Data(count: (512 - data.count % 512) % 512))
    }
}
