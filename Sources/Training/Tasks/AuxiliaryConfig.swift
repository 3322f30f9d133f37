import Audio
import Foundation
import NN

/// P2C preference learning next to the labels (`earshot finetune --pairs`).
public struct PreferenceConfig: Codable, Sendable, Equatable {
    /// The pairs file (`PreferenceFile`) and an optional votes file (per-clip class fractions); with
    /// votes the consistency term asks the probability gap to reach the vote gap per class.
    public var pairs: String
    public var votes: String?
    /// Preference heads (P2C's ensemble of 3).
    public var heads = 3
    public var sampling = PartnerSampling.random
    /// Weights of the total λ_cls (CE(a) + CE(b))/2 + λ_cons L_cons + λ_pref L_pref − λ_div L_div.
    /// The reference defaults all to 1; its shipped scripts use λ_cons 1 (text) or 0.1 (vision) and
    /// λ_div 0.1, which we take as defaults.
    public var lambdaClassification: Float = 1
    public var lambdaPreference: Float = 1
    public var lambdaConsistency: Float = 1
    public var lambdaDiversity: Float = 0.1
    public init(pairs: String) { self.pairs = pairs }
}

/// An extra supervised head on the classifier's pooled features: a metadata field (`speaker`, or a
/// column of the data's CSV manifest) as the target of its own linear head and cross-entropy, weighted.
public struct AuxiliaryHeadConfig: Codable, Sendable, Equatable {
    public var field: String
    public var weight: Float
    public init(field: String, weight: Float) { self.field = field; self.weight = weight }

    /// Parses `field:weight` (`speaker:0.3`); a bare field weighs 1.
    public init(parsing spec: String) throws {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count), !parts[0].isEmpty else {
            throw NNError("--aux-head '\(spec)': expected field:weight, e.g. speaker:0.3")
        }
        let weight = parts.count == 2 ? Float(parts[1]) : 1
        guard let weight, weight > 0, weight.isFinite else {
            throw NNError("--aux-head '\(spec)': the weight must be a positive number")
        }
        self.init(field: parts[0], weight: weight)
    }
}

/// Training-time signals besides the labels; the saved classifier is unchanged by them.
public struct AuxiliaryConfig: Codable, Sendable, Equatable {
    public var preference: PreferenceConfig?
    public var heads: [AuxiliaryHeadConfig] = []
    /// A CSV manifest whose columns auxiliary heads may name (the data's own, when it is one).
    public var metadata: String?
    public init() {}

    public var isEmpty: Bool { preference == nil && heads.isEmpty }
}

/// The targets of one auxiliary head over a dataset's records: the field's values (sorted) and each
/// record's value index, −1 where the record has none.
public struct AuxiliaryTargets: Sendable {
    public var field: String
    public var weight: Float
    public var values: [String]
    public var targets: [Int]

    /// Reads `field` per record: `speaker` from the records, any other name from the column of that
    /// name in the `metadata` CSV (its path column resolved as the dataset reader resolves it).
    /// Values are those of the training records; a field no training record has is an error.
    public static func make(_ head: AuxiliaryHeadConfig, records: [ClipRecord], metadata: URL?) throws -> AuxiliaryTargets {
        let lookup: (ClipRecord) -> String?
        if head.field == "speaker" {
            lookup = { $0.speaker }
        } else {
            guard let metadata else {
                throw NNError("--aux-head \(head.field): the data has no CSV manifest to read a '\(head.field)' column from (fields: speaker, or a manifest column)")
            }
            let column = try MetadataColumn.read(metadata, column: head.field)
            lookup = { column[URL(fileURLWithPath: $0.path).standardizedFileURL.path] }
        }
        let raw = records.map { lookup($0).flatMap { $0.isEmpty ? nil : $0 } }
        let values = Array(Set(raw.compactMap { $0 })).sorted()
        guard values.count >= 2 else {
            throw NNError("--aux-head \(head.field): the training clips have \(values.count) distinct value(s) of '\(head.field)'; a head needs at least 2")
        }
        let index = Dictionary(uniqueKeysWithValues: values.enumerated().map { ($1, $0) })
        return AuxiliaryTargets(field: head.field, weight: head.weight, values: values, targets: raw.map { $0.flatMap { index[$0] } ?? -1 })
    }
}

/// One column of a CSV manifest keyed by each row's clip path (resolved against the manifest's folder,
/// as `Dataset.load` resolves it).
public enum MetadataColumn {
    public static let pathColumns = ["path", "filename", "slice_file_name", "file", "wav"]

    public static func read(_ url: URL, column: String) throws -> [String: String] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw NNError("\(url.path): cannot read (\(error.localizedDescription))")
        }
        let (header, rows) = try CSV.records(text, file: url.path)
        guard let pathKey = pathColumns.first(where: header.contains) else {
            throw NNError("\(url.path): no path column (one of \(pathColumns.joined(separator: ", ")))")
        }
        guard header.contains(column) else {
            throw NNError("\(url.path): no column '\(column)' (columns: \(header.joined(separator: ", ")))")
        }
        var base = url.deletingLastPathComponent()
        // UrbanSound8K keeps its audio in ../audio/fold<k>/ beside metadata/.
        let us8k = url.lastPathComponent == "UrbanSound8K.csv"
        if us8k { base = base.deletingLastPathComponent().appendingPathComponent("audio") }
        var out: [String: String] = [:]
        for row in rows {
            guard var path = row[pathKey], !path.isEmpty else { continue }
            if us8k, let fold = row["fold"] { path = "fold\(fold)/\(path)" }
            let full = path.hasPrefix("/") ? URL(fileURLWithPath: path) : base.appendingPathComponent(path)
            out[full.standardizedFileURL.path] = row[column] ?? ""
        }
        return out
    }

    /// The CSV manifest a dataset path reads through, if any (a .csv file, a folder's metadata.csv or
    /// manifest.csv, or UrbanSound8K's metadata).
    public static func manifest(of data: URL) -> URL? {
        if data.pathExtension.lowercased() == "csv" { return data }
        for name in ["metadata/UrbanSound8K.csv", "manifest.csv", "metadata.csv"] {
            let u = data.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: u.path) { return u }
        }
        return nil
    }
}
