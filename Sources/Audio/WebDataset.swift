import Foundation

/// WebDataset shards (the tar format LAION-CLAP trains from, LAION-Audio-630K's): each sample is the
/// members of one tar sharing a key, the member's path up to the first dot of its file name
/// (`000123.flac` + `000123.json`). A sample's audio is its member with an audio extension; its text
/// is `.json`'s `text` (a caption or a list of captions, LAION's) or `caption`, else `.txt`; labels are
/// `.json`'s `tag`/`labels` or `.cls` (and `fold`, `speaker` where `.json` has them). Every caption becomes a row (contrastive training draws one per clip
/// per epoch).
///
/// A shard's audio is read where it lies: a sample's path is `<shard>.tar/<member>` (`ArchivePath`),
/// which decoding, the feature cache and `pack` read through the shard's index (built once per shard,
/// again when it changes), so nothing is extracted or copied. A folder of shards takes its split from a subfolder named train,
/// valid/validation or test (LAION-Audio-630K's layout). A damaged member (a truncated shard, a bad
/// header checksum) stops that shard with an error naming it and the byte offset; a sample without
/// audio or with unreadable JSON is skipped and counted in the layout.
public enum WebDataset {
    /// The shards of a folder that holds them (directly or in split subfolders) and no audio; nil for any
    /// other folder (what `Dataset.load` asks before reading a folder of clips).
    static func shardsOnly(in url: URL) -> [(URL, String?)]? {
        let shards = shardFiles(url)
        return !shards.isEmpty && (try? DatasetReaders.audioFiles(url))?.isEmpty != false ? shards : nil
    }

    /// (shard, split) pairs of a folder: its own .tar files, then those of split subfolders.
    static func shardFiles(_ url: URL) -> [(URL, String?)] {
        let fm = FileManager.default
        func tars(_ dir: URL) -> [URL] {
            ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.lowercased().hasSuffix(".tar") }.sorted()
                .map { dir.appendingPathComponent($0) }
        }
        var out = tars(url).map { ($0, nil as String?) }
        for sub in (try? DatasetReaders.sortedSubfolders(url)) ?? [] {
            let split: String? = switch sub.lowercased() {
            case "train", "training": "train"
            case "valid", "validation", "val", "dev": "validation"
            case "test", "eval", "evaluation": "test"
            default: nil
            }
            guard let split else { continue }
            out += tars(url.appendingPathComponent(sub)).map { ($0, split) }
        }
        return out
    }

    /// The samples of a shard or a folder of shards as a dataset (their audio read in the shards).
    public static func load(_ url: URL) throws -> Dataset {
        try load(shards: url.pathExtension.lowercased() == "tar" ? [(url, nil)] : shardFiles(url), of: url)
    }

    static func load(shards: [(URL, String?)], of url: URL) throws -> Dataset {
        guard !shards.isEmpty else { throw DatasetError("\(url.path): no .tar shards (WebDataset)") }
        var records: [ClipRecord] = []
        var skipped = 0
        var damaged: [String] = []
        for (shard, split) in shards {
            let (r, s, damage) = try samples(of: shard, split: split)
            records += r
            skipped += s
            if let damage { damaged.append(damage) }
        }
        guard !records.isEmpty else {
            throw DatasetError("\(url.path): \(shards.count) shard\(shards.count == 1 ? "" : "s") with no sample that has audio (\(skipped) skipped)"
                               + (damaged.isEmpty ? "" : "; " + damaged.joined(separator: "; ")))
        }
        var layout = "WebDataset, \(shards.count) shard\(shards.count == 1 ? "" : "s")"
        if skipped > 0 { layout += ", \(skipped) samples skipped (no audio or unreadable JSON)" }
        if !damaged.isEmpty { layout += ", \(damaged.count) damaged shard\(damaged.count == 1 ? "" : "s") read up to the damage (first: \(damaged[0]))" }
        return Dataset(records: records, layout: layout)
    }

    /// A shard's samples, the samples skipped, and what damage (a truncation, a bad header) ended the
    /// read before the end, if any: the samples before it are kept. A sample's path names its audio member
    /// in the shard (`ArchivePath`), which every reader decodes in place.
    static func samples(of shard: URL, split: String?) throws -> (records: [ClipRecord], skipped: Int, damage: String?) {
        let archive = try ArchiveIndex.shared.archive(shard.path, fresh: true)
        let reader = try ArchiveReader(shard.path)
        func text(_ member: TarReader.Member) -> Data? { try? reader.read(member.bytes, naming: member.path) }
        var members: [String: [String: TarReader.Member]] = [:]   // key → extension → member
        var order: [String] = []
        for member in archive.members {
            let name = (member.path as NSString).lastPathComponent
            guard let dot = name.firstIndex(of: "."), !name.hasPrefix(".") else { continue }
            let key = (member.path as NSString).deletingLastPathComponent + "/" + name[..<dot]
            if members[key] == nil { order.append(key) }
            members[key, default: [:]][String(name[name.index(after: dot)...]).lowercased()] = member
        }
        var records: [ClipRecord] = []
        var skipped = 0
        for key in order {
            let parts = members[key]!
            // The member's extension is what follows the key ("flac", or "audio.flac"): its last part names the format.
            guard let audioExtension = parts.keys.sorted().first(where: { DatasetReaders.audioExtensions.contains(String($0.split(separator: ".").last ?? "")) }),
                  let audio = parts[audioExtension] else { skipped += 1; continue }
            var captions: [String] = [], labels: [String] = []
            var fold: Int? = nil, speaker: String? = nil
            if let json = parts["json"] {
                guard let bytes = text(json), let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any] else { skipped += 1; continue }
                fold = (object["fold"] as? NSNumber)?.intValue
                speaker = object["speaker"] as? String
                for field in ["text", "caption", "captions"] {
                    if let s = object[field] as? String { captions.append(s) }
                    if let list = object[field] as? [String] { captions += list }
                }
                for field in ["tag", "tags", "labels", "label"] {
                    if let s = object[field] as? String { labels += DatasetReaders.splitLabels(s) }
                    if let list = object[field] as? [String] { labels += list }
                }
            }
            if captions.isEmpty, let txt = parts["txt"].flatMap(text) {
                let caption = String(decoding: txt, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                if !caption.isEmpty { captions.append(caption) }
            }
            if labels.isEmpty, let cls = parts["cls"].flatMap(text) {
                labels = DatasetReaders.splitLabels(String(decoding: cls, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            }
            let path = ArchivePath.join(archive: shard.path, member: audio.path)
            var unique: [String] = []
            for c in captions where !unique.contains(c) { unique.append(c) }
            if unique.isEmpty {
                records.append(ClipRecord(path: path, labels: labels, speaker: speaker, fold: fold, split: split))
            } else {
                for caption in unique { records.append(ClipRecord(path: path, labels: labels, caption: caption, speaker: speaker, fold: fold, split: split)) }
            }
        }
        return (records, skipped, archive.damage)
    }
}

/// The members of a tar archive (POSIX ustar, GNU long names, pax `path` records), as byte ranges of the
/// archive: 512-byte headers, each followed by its data rounded up to 512 bytes, ended by zero blocks.
enum TarReader {
    struct Member { let path: String; let bytes: Range<Int> }

    /// The members before the end or before damage, and the damage (a truncation, a bad header) named with
    /// its byte offset. A file whose first header is not a tar header is refused.
    static func members(of data: Data, name: String) throws -> (members: [Member], damage: String?) {
        var out: [Member] = []
        var at = 0
        var longName: String? = nil
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> ([Member], String?) in
            let bytes = raw.bindMemory(to: UInt8.self)
            func field(_ offset: Int, _ length: Int) -> String {
                let slice = bytes[(at + offset)..<(at + offset + length)]
                return String(decoding: slice.prefix { $0 != 0 }, as: UTF8.self)
            }
            while at + 512 <= bytes.count {
                if bytes[at..<(at + 512)].allSatisfy({ $0 == 0 }) { return (out, nil) }   // the end
                let stored = Int(field(148, 8).trimmingCharacters(in: CharacterSet(charactersIn: " \0")), radix: 8)
                var sum = 0
                for i in 0..<512 { sum += (148..<156).contains(i) ? 32 : Int(bytes[at + i]) }
                guard let stored, stored == sum else {
                    if at == 0 { throw DatasetError("\(name): not a tar archive (no tar header at its start)") }
                    return (out, "\(name): bad header checksum at byte \(at)")
                }
                let size: Int
                if bytes[at + 124] & 0x80 != 0 {   // base-256 (GNU, members of 8 GB and more)
                    // 11 bytes after the flag byte; more than 7 significant ones cannot be a size in memory.
                    size = (125..<136).allSatisfy { $0 >= 129 || bytes[at + $0] == 0 } ? (129..<136).reduce(0) { $0 << 8 | Int(bytes[at + $1]) } : -1
                } else {
                    guard let s = Int(field(124, 12).trimmingCharacters(in: CharacterSet(charactersIn: " \0")), radix: 8) else {
                        return (out, "\(name): damaged header at byte \(at) (size field)")
                    }
                    size = s
                }
                let start = at + 512
                guard size >= 0, size <= bytes.count - start else {   // compared before adding: a damaged size may be near Int.max
                    return (out, "\(name): truncated: a member of \(size) bytes at byte \(at) runs past the end (\(bytes.count) bytes)")
                }
                let end = start + size
                let type = bytes[at + 156]
                let prefix = field(345, 155), base = field(0, 100)
                let path = longName ?? (prefix.isEmpty || field(257, 5) != "ustar" ? base : prefix + "/" + base)
                switch type {
                case UInt8(ascii: "L"):   // GNU: the next member's long name
                    longName = String(decoding: bytes[start..<end].prefix { $0 != 0 }, as: UTF8.self)
                case UInt8(ascii: "x"):   // pax: "<length> path=<name>\n" records for the next member
                    let text = String(decoding: bytes[start..<end], as: UTF8.self)
                    for line in text.split(separator: "\n") {
                        if let eq = line.firstIndex(of: "="), line[..<eq].hasSuffix(" path") { longName = String(line[line.index(after: eq)...]) }
                    }
                case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                    out.append(Member(path: path, bytes: start..<end))
                    longName = nil
                default:
                    longName = nil   // directories, links, global headers: no data a sample needs
                }
                at = start + (size + 511) / 512 * 512
            }
            if at == 0 && bytes.count > 0 { throw DatasetError("\(name): not a tar archive (\(bytes.count) bytes, shorter than a header)") }
            return (out, at < bytes.count ? "\(name): truncated (\(bytes.count) bytes, a header cut at byte \(at))" : nil)
        }
    }
}
