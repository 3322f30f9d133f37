import Engine
import Foundation

/// One clip of a dataset: where it is and what we know about it.
public struct ClipRecord: Codable, Sendable, Equatable {
    public var path: String
    public var labels: [String]
    public var caption: String?
    public var speaker: String?
    public var fold: Int?
    public var split: String?

    public init(path: String, labels: [String], caption: String? = nil, speaker: String? = nil, fold: Int? = nil, split: String? = nil) {
        self.path = path; self.labels = labels; self.caption = caption; self.speaker = speaker; self.fold = fold; self.split = split
    }

    /// Whether the clip is in split `name`: its split is `name`, or its fold written as a string is.
    public func isIn(split name: String) -> Bool { split == name || fold.map(String.init) == name }
}

/// A list of clips with their labels, read from a manifest or a known dataset layout.
public struct Dataset: Sendable {
    public var records: [ClipRecord]
    /// Every label, sorted: a label's index is its class id.
    public var classes: [String]
    public var multiLabel: Bool
    /// Which reader understood the input (for reports).
    public var layout: String

    public init(records: [ClipRecord], layout: String) {
        self.records = records
        self.layout = layout
        classes = Array(Set(records.flatMap(\.labels))).sorted { a, b in
            // Numeric labels (digits, class ids) sort numerically.
            if let x = Int(a), let y = Int(b) { return x < y }
            return a < b
        }
        multiLabel = records.contains { $0.labels.count > 1 }
    }

    public func classIndex(_ label: String) -> Int? { classes.firstIndex(of: label) }

    /// Records whose split (or fold, as a string) is `name`.
    public func split(_ name: String) -> Dataset {
        filter { $0.isIn(split: name) }
    }

    /// The same clips with their labels taken from another field: "label" (unchanged) or "speaker"
    /// (speaker identification, e.g. on FSDD's official split). Throws naming the first clip without one.
    public func labelled(by field: String) throws -> Dataset {
        switch field {
        case "label", "labels": return self
        case "speaker":
            let relabelled = try records.map { r -> ClipRecord in
                guard let speaker = r.speaker, !speaker.isEmpty else { throw DatasetError("\(r.path): no speaker to label by") }
                var c = r; c.labels = [speaker]; return c
            }
            return Dataset(records: relabelled, layout: layout + ", labelled by speaker")
        default: throw DatasetError("unknown label field '\(field)' (label or speaker)")
        }
    }

    /// Train/test by fold (k-fold cross-validation).
    public func fold(_ k: Int) -> (train: Dataset, test: Dataset) {
        (filter { $0.fold != k }, filter { $0.fold == k })
    }

    /// A dataset over a fixed class list: subsets of one dataset (a split, a fold, a few-shot draw) keep
    /// the whole dataset's classes, so a class missing from the subset does not shift the others' ids.
    public init(records: [ClipRecord], layout: String, classes: [String]) {
        self.records = records; self.layout = layout; self.classes = classes
        multiLabel = records.contains { $0.labels.count > 1 }
    }

    /// The clips for which `isIncluded` holds, with this dataset's class list.
    public func filter(_ isIncluded: (ClipRecord) -> Bool) -> Dataset {
        Dataset(records: records.filter(isIncluded), layout: layout, classes: classes)
    }

    /// At most `perClass` clips of each class (a clip counts for its first label), drawn without
    /// replacement by a seeded shuffle and kept in their original order; the class list is unchanged.
    /// For label-efficiency studies and few-shot adaptation: the same seed draws the same clips.
    public func sampled(perClass: Int, seed: UInt64) throws -> Dataset {
        guard perClass > 0 else { throw DatasetError("clips per class must be at least 1 (got \(perClass))") }
        var order = Array(records.indices)
        var generator = RandomGenerator(seed: seed)
        generator.shuffle(&order)
        var taken: [String: Int] = [:]
        var keep = [Bool](repeating: false, count: records.count)
        for i in order {
            guard let label = records[i].labels.first, taken[label, default: 0] < perClass else { continue }
            taken[label, default: 0] += 1
            keep[i] = true
        }
        let chosen = records.indices.filter { keep[$0] }.map { records[$0] }
        return Dataset(records: chosen, layout: layout + ", \(perClass) per class", classes: classes)
    }

    /// Reads a manifest (CSV, JSON Lines, AST JSON) or a folder in a known layout.
    public static func load(_ url: URL) throws -> Dataset {
        try DatasetReaders.load(url)
    }
}

public struct DatasetError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

enum DatasetReaders {
    static let audioExtensions: Set<String> = ["wav", "flac", "ogg", "mp3", "opus", "aiff", "aif", "au"]

    static func load(_ url: URL) throws -> Dataset {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw DatasetError("\(url.path): no such file or folder")
        }
        if !isDir.boolValue {
            switch url.pathExtension.lowercased() {
            case "csv": return try csv(url)
            case "jsonl": return try jsonLines(url)
            case "json": return try astJSON(url)
            case "tar": return try WebDataset.load(url)
            default: throw DatasetError("\(url.path): unknown manifest type (expected .csv, .jsonl or .json, or a .tar WebDataset shard)")
            }
        }
        let fm = FileManager.default
        let esc50 = url.appendingPathComponent("meta/esc50.csv")
        if fm.fileExists(atPath: esc50.path) { return try csv(esc50, root: url.appendingPathComponent("audio"), layout: "ESC-50") }
        let us8k = url.appendingPathComponent("metadata/UrbanSound8K.csv")
        if fm.fileExists(atPath: us8k.path) { return try csv(us8k, root: url.appendingPathComponent("audio"), layout: "UrbanSound8K") }
        if fm.fileExists(atPath: url.appendingPathComponent("validation_list.txt").path)
            && fm.fileExists(atPath: url.appendingPathComponent("testing_list.txt").path) {
            return try speechCommands(url)
        }
        // A folder that holds a manifest is read through it (its splits and fields), not as class folders.
        for name in folderManifests {
            let manifest = url.appendingPathComponent(name)
            guard fm.fileExists(atPath: manifest.path) else { continue }
            var ds = try load(manifest)
            if !ds.layout.contains(name) { ds.layout += " (\(name))" }
            return ds
        }
        if let shards = WebDataset.shardsOnly(in: url) { return try WebDataset.load(shards: shards, of: url) }
        return try folder(url)
    }

    /// Manifests a dataset folder may hold, in the order they are looked for.
    static let folderManifests = ["manifest.jsonl", "manifest.csv", "manifest.json", "metadata.csv"]

    static func read(_ url: URL) throws -> String {
        do { return try String(contentsOf: url, encoding: .utf8) } catch {
            throw DatasetError("\(url.path): cannot read (\(error.localizedDescription))")
        }
    }

    static func splitLabels(_ s: String) -> [String] {
        s.split(whereSeparator: { $0 == ";" || $0 == "," || $0 == "|" }).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Generic CSV manifests and the CSVs of known datasets (ESC-50, UrbanSound8K, ESC-10, FSDD).
    static func csv(_ url: URL, root: URL? = nil, layout: String? = nil) throws -> Dataset {
        let (header, rows) = try CSV.records(try read(url), file: url.path)
        let base = root ?? url.deletingLastPathComponent()
        let pathKeys = ["path", "filename", "slice_file_name", "file", "wav"].filter { header.contains($0) }
        guard let firstKey = pathKeys.first else {
            throw DatasetError("\(url.path): no path column (expected one of path, filename, slice_file_name, file, wav; found \(header.joined(separator: ", ")))")
        }
        let labelKey = ["labels", "label", "category", "class", "digit", "target"].first { header.contains($0) }
        func resolve(_ p: String, _ row: [String: String]) -> String {
            var path = p
            if layout == "UrbanSound8K", let fold = row["fold"] { path = "fold\(fold)/\(p)" }
            return path.hasPrefix("/") ? path : base.appendingPathComponent(path).path
        }
        var records: [ClipRecord] = []
        for (i, row) in rows.enumerated() {
            // Several path columns (a relative "path" and an absolute "file", say): the first whose file
            // exists, else the first given (the loader then names the missing file).
            let candidates = pathKeys.compactMap { key in row[key].flatMap { $0.isEmpty ? nil : resolve($0, row) } }
            guard let first = candidates.first else { throw DatasetError("\(url.path): row \(i + 2) has an empty \(firstKey)") }
            let full = candidates.count == 1 ? first : candidates.first { FileManager.default.fileExists(atPath: $0) || ArchivePath.split($0) != nil } ?? first
            let labels = labelKey.flatMap { row[$0] }.map(splitLabels) ?? []
            records.append(ClipRecord(path: full, labels: labels, caption: row["caption"].flatMap { $0.isEmpty ? nil : $0 },
                                      speaker: row["speaker"] ?? row["fsID"], fold: row["fold"].flatMap { Int($0) },
                                      split: row["split"].flatMap { $0.isEmpty ? nil : $0 }))
        }
        return Dataset(records: records, layout: layout ?? "CSV manifest (\(url.lastPathComponent))")
    }

    /// JSON Lines: {"path": ..., "label" | "labels": ..., "caption", "speaker", "fold", "split"} per line.
    static func jsonLines(_ url: URL) throws -> Dataset {
        let base = url.deletingLastPathComponent()
        var records: [ClipRecord] = []
        for (i, line) in try read(url).split(whereSeparator: \.isNewline).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let path = obj["path"] as? String else {
                throw DatasetError("\(url.path): line \(i + 1) is not a JSON object with a \"path\"")
            }
            var labels: [String] = []
            if let l = obj["labels"] as? [Any] { labels = l.map { "\($0)" } } else if let l = obj["labels"] ?? obj["label"] { labels = splitLabels("\(l)") }
            records.append(ClipRecord(path: path.hasPrefix("/") ? path : base.appendingPathComponent(path).path, labels: labels,
                                      caption: obj["caption"] as? String, speaker: obj["speaker"].map { "\($0)" },
                                      fold: (obj["fold"] as? NSNumber)?.intValue, split: obj["split"] as? String))
        }
        return Dataset(records: records, layout: "JSON Lines manifest")
    }

    /// The AST/SSAST data JSON: {"data": [{"wav": path, "labels": "a,b"}]}.
    static func astJSON(_ url: URL) throws -> Dataset {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any],
              let data = obj["data"] as? [[String: Any]] else {
            throw DatasetError("\(url.path): not an AST data file (expected {\"data\": [{\"wav\": ..., \"labels\": ...}]})")
        }
        let base = url.deletingLastPathComponent()
        let records = try data.enumerated().map { i, item -> ClipRecord in
            guard let wav = item["wav"] as? String else { throw DatasetError("\(url.path): data[\(i)] has no \"wav\"") }
            return ClipRecord(path: wav.hasPrefix("/") ? wav : base.appendingPathComponent(wav).path,
                              labels: splitLabels(item["labels"] as? String ?? ""))
        }
        return Dataset(records: records, layout: "AST JSON")
    }

    /// Speech Commands: a folder per word; validation_list.txt and testing_list.txt name the held-out clips.
    static func speechCommands(_ url: URL) throws -> Dataset {
        let validation = Set(try read(url.appendingPathComponent("validation_list.txt")).split(whereSeparator: \.isNewline).map(String.init))
        let testing = Set(try read(url.appendingPathComponent("testing_list.txt")).split(whereSeparator: \.isNewline).map(String.init))
        var records: [ClipRecord] = []
        for word in try sortedSubfolders(url) where word != "_background_noise_" {
            for file in try audioFiles(url.appendingPathComponent(word)) {
                let rel = "\(word)/\(file)"
                let split = testing.contains(rel) ? "test" : validation.contains(rel) ? "validation" : "train"
                records.append(ClipRecord(path: url.appendingPathComponent(rel).path, labels: [word],
                                          speaker: file.split(separator: "_").first.map(String.init), split: split))
            }
        }
        return Dataset(records: records, layout: "Speech Commands")
    }

    /// FSDD file names ({digit}_{speaker}_{index}.wav) in one folder; otherwise a folder per class, with
    /// any audio files at the top level as unlabelled clips (a plain folder of clips to pretrain on or embed).
    static func folder(_ url: URL) throws -> Dataset {
        let files = try audioFiles(url)
        let fsdd = files.compactMap { name -> ClipRecord? in
            let parts = (name as NSString).deletingPathExtension.split(separator: "_")
            guard parts.count == 3, Int(parts[0]) != nil, Int(parts[2]) != nil else { return nil }
            // The official FSDD split: indices 0-4 of each speaker and digit are the test set.
            return ClipRecord(path: url.appendingPathComponent(name).path, labels: [String(parts[0])], speaker: String(parts[1]),
                              split: Int(parts[2])! < 5 ? "test" : "train")
        }
        if !files.isEmpty && fsdd.count == files.count { return Dataset(records: fsdd, layout: "FSDD file names") }
        var records: [ClipRecord] = []
        for label in try sortedSubfolders(url) {
            for file in try audioFiles(url.appendingPathComponent(label)) {
                records.append(ClipRecord(path: url.appendingPathComponent(label).appendingPathComponent(file).path, labels: [label]))
            }
        }
        let unlabelled = files.map { ClipRecord(path: url.appendingPathComponent($0).path, labels: []) }
        guard !records.isEmpty || !unlabelled.isEmpty else {
            throw DatasetError("\(url.path): no audio files found (\(audioExtensions.sorted().joined(separator: ", ")); neither a manifest, nor a folder of clips, nor a folder per class)")
        }
        let layout = records.isEmpty ? "folder of unlabelled clips"
            : unlabelled.isEmpty ? "folder per class" : "folder per class, \(unlabelled.count) unlabelled clips at the top"
        return Dataset(records: unlabelled + records, layout: layout)
    }

    static func sortedSubfolders(_ url: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).filter { name in
            var isDir: ObjCBool = false
            return !name.hasPrefix(".") && FileManager.default.fileExists(atPath: url.appendingPathComponent(name).path, isDirectory: &isDir) && isDir.boolValue
        }.sorted()
    }

    static func audioFiles(_ url: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path)
            .filter { audioExtensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
    }
}
