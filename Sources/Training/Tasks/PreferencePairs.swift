import Audio
import Foundation

/// A preference between two clips of one class: `target` is 1 when `a` is preferred (the clearer,
/// more typical example of the class), 0 when `b` is, 0.5 for a tie. Clips are named by the paths
/// of their dataset records.
public struct PreferencePair: Sendable, Equatable {
    public var a: String, b: String
    public var label: String
    public var target: Float
    public init(a: String, b: String, label: String, target: Float) {
        self.a = a; self.b = b; self.label = label; self.target = target
    }
}

public struct PreferenceFileError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Pairs files and votes files, the preference sources' common currency.
///
/// A pairs file is a CSV with the header `clip_a,clip_b,class,preference`: each clip is a path as
/// the data names it (absolute, relative to the pairs file's folder, or a file name that is unique in
/// the data), `class` is the label both clips carry, and `preference` is `a`, `b` or `tie` (also read:
/// `1`, `0`, `0.5`, the target P(a ≻ b)). A votes file is a CSV `clip,<class>,<class>,...` of each
/// clip's vote fractions per class (annotators or captions naming the class); they sum to one per
/// clip, and classes not given are 0.
///
/// Reading checks every row against the data before any training: a clip not in the data, two clips
/// with different labels, a class the data does not have, a preference that is none of the above, and
/// vote fractions that do not sum to one are each an error naming the file, the row and the value.
public enum PreferenceFile {
    public static let header = ["clip_a", "clip_b", "class", "preference"]

    /// The target P(a ≻ b) a preference cell names, nil if none.
    public static func target(_ cell: String) -> Float? {
        switch cell.trimmingCharacters(in: .whitespaces).lowercased() {
        case "a", "1", "1.0": return 1
        case "b", "0", "0.0": return 0
        case "tie", "0.5", ".5": return 0.5
        default: return nil
        }
    }

    /// The cell written for a target (`a`, `b`, `tie`).
    public static func cell(_ target: Float) -> String { target > 0.5 ? "a" : target < 0.5 ? "b" : "tie" }

    /// Reads and checks a pairs file against `data`; the pairs name the data's record paths.
    public static func readPairs(_ url: URL, data: Dataset) throws -> [PreferencePair] {
        let (header, rows) = try CSV.records(try read(url), file: url.path)
        for column in Self.header where !header.contains(column) {
            throw PreferenceFileError("\(url.path): no '\(column)' column (a pairs file has the header \(Self.header.joined(separator: ",")); found \(header.joined(separator: ",")))")
        }
        let clips = ClipLookup(data, base: url.deletingLastPathComponent())
        let known = Set(data.classes)
        return try rows.enumerated().map { i, row in
            let line = "\(url.path): row \(i + 2)"
            let label = row["class"] ?? ""
            guard known.contains(label) else {
                throw PreferenceFileError("\(line): unknown class '\(label)' (the data has \(data.classes.prefix(12).joined(separator: ", "))\(data.classes.count > 12 ? ", ..." : ""))")
            }
            guard let target = target(row["preference"] ?? "") else {
                throw PreferenceFileError("\(line): preference '\(row["preference"] ?? "")' is none of a, b, tie (or 1, 0, 0.5)")
            }
            let a = try clips.record(row["clip_a"] ?? "", where: "\(line), clip_a")
            let b = try clips.record(row["clip_b"] ?? "", where: "\(line), clip_b")
            guard a.path != b.path else { throw PreferenceFileError("\(line): clip_a and clip_b are the same clip (\(a.path))") }
            for (name, r) in [("clip_a", a), ("clip_b", b)] where r.labels != [label] {
                let other = name == "clip_a" ? b : a
                throw PreferenceFileError("\(line): pair with different labels: \(name) \(r.path) is labelled \(r.labels.joined(separator: ";")), "
                                          + "the pair's class is '\(label)' (\(other.path): \(other.labels.joined(separator: ";"))); pairs are within one class")
            }
            return PreferencePair(a: a.path, b: b.path, label: label, target: target)
        }
    }

    /// Reads and checks a votes file: each clip's fractions in the data's class order. Fractions must
    /// lie in [0, 1] and sum to one within `tolerance`.
    public static func readVotes(_ url: URL, data: Dataset, tolerance: Float = 1e-3) throws -> [String: [Float]] {
        let (header, rows) = try CSV.records(try read(url), file: url.path)
        guard header.first == "clip" else {
            throw PreferenceFileError("\(url.path): the first column must be 'clip' (a votes file has the header clip,<class>,<class>,...; found \(header.joined(separator: ",")))")
        }
        let classColumns = Array(header.dropFirst())
        for c in classColumns where data.classIndex(c) == nil {
            throw PreferenceFileError("\(url.path): unknown class column '\(c)' (the data has \(data.classes.prefix(12).joined(separator: ", ")))")
        }
        let clips = ClipLookup(data, base: url.deletingLastPathComponent())
        var votes: [String: [Float]] = [:]
        for (i, row) in rows.enumerated() {
            let line = "\(url.path): row \(i + 2)"
            let record = try clips.record(row["clip"] ?? "", where: "\(line), clip")
            var fractions = [Float](repeating: 0, count: data.classes.count)
            for c in classColumns {
                let cell = (row[c] ?? "").trimmingCharacters(in: .whitespaces)
                guard let v = cell.isEmpty ? 0 : Float(cell), v >= 0, v <= 1 else {
                    throw PreferenceFileError("\(line): vote fraction '\(cell)' for class '\(c)' is not a number in [0, 1]")
                }
                fractions[data.classIndex(c)!] = v
            }
            let sum = fractions.reduce(0, +)
            guard Swift.abs(sum - 1) <= tolerance else {
                throw PreferenceFileError("\(line): the vote fractions of \(record.path) sum to \(sum), not 1 (tolerance \(tolerance))")
            }
            guard votes[record.path] == nil else { throw PreferenceFileError("\(line): \(record.path) has votes on an earlier row too") }
            votes[record.path] = fractions
        }
        return votes
    }

    /// Writes pairs (paths as given) with the header `clip_a,clip_b,class,preference`.
    public static func writePairs(_ pairs: [PreferencePair], to url: URL) throws {
        var text = header.joined(separator: ",") + "\n"
        for p in pairs { text += [p.a, p.b, p.label, cell(p.target)].map(csvField).joined(separator: ",") + "\n" }
        try Data(text.utf8).write(to: url, options: .atomic)
    }

    /// Writes vote fractions per clip in `classes` order.
    public static func writeVotes(_ votes: [(clip: String, fractions: [Float])], classes: [String], to url: URL) throws {
        var text = (["clip"] + classes).map(csvField).joined(separator: ",") + "\n"
        for v in votes { text += ([csvField(v.clip)] + v.fractions.map { String($0) }).joined(separator: ",") + "\n" }
        try Data(text.utf8).write(to: url, options: .atomic)
    }

    static func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    static func read(_ url: URL) throws -> String {
        do { return try String(contentsOf: url, encoding: .utf8) } catch {
            throw PreferenceFileError("\(url.path): cannot read (\(error.localizedDescription))")
        }
    }
}

/// Finds a dataset record by the name a pairs or votes file gives it: its path, a path relative to
/// the file's folder, or a file name that only one record has.
struct ClipLookup {
    let byPath: [String: ClipRecord]
    let byName: [String: [ClipRecord]]
    let base: URL

    init(_ data: Dataset, base: URL) {
        var byPath: [String: ClipRecord] = [:], byName: [String: [ClipRecord]] = [:]
        for r in data.records {
            byPath[URL(fileURLWithPath: r.path).standardizedFileURL.path] = r
            byName[URL(fileURLWithPath: r.path).lastPathComponent, default: []].append(r)
        }
        self.byPath = byPath; self.byName = byName; self.base = base
    }

    func record(_ name: String, where place: String) throws -> ClipRecord {
        let name = name.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty else { throw PreferenceFileError("\(place): empty clip name") }
        let url = name.hasPrefix("/") ? URL(fileURLWithPath: name) : base.appendingPathComponent(name)
        if let r = byPath[url.standardizedFileURL.path] { return r }
        let named = byName[URL(fileURLWithPath: name).lastPathComponent] ?? []
        if named.count == 1 { return named[0] }
        if named.count > 1 {
            throw PreferenceFileError("\(place): clip '\(name)' is ambiguous: \(named.count) clips in the data have that file name; give its path")
        }
        throw PreferenceFileError("\(place): clip '\(name)' is not in the data")
    }
}
