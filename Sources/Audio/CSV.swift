/// A small RFC 4180 CSV reader (quoted fields, doubled quotes, CRLF), enough for dataset metadata.
public enum CSV {
    /// Rows of fields, each with the line it starts on (1-based; a quoted field may span lines).
    /// A quote left open at the end of the text throws, naming the line it opened on: read on, it would
    /// swallow every later row into one field.
    public static func parseLines(_ text: String) throws(CSVError) -> [(line: Int, fields: [String])] {
        var rows: [(line: Int, fields: [String])] = [], row: [String] = [], field = ""
        var quoted = false, iterator = text.makeIterator()
        var line = 1, rowLine = 1, quoteLine = 1
        var pending: Character? = nil
        func next() -> Character? { if let p = pending { pending = nil; return p }; return iterator.next() }
        while let ch = next() {
            if quoted {
                if ch == "\"" {
                    if let n = next() { if n == "\"" { field.append("\"") } else { quoted = false; pending = n } } else { quoted = false }
                } else {
                    if ch == "\n" || ch == "\r\n" || ch == "\r" { line += 1 }
                    field.append(ch)
                }
                continue
            }
            switch ch {
            case "\"": quoted = true; quoteLine = line
            case ",": row.append(field); field = ""
            case "\n", "\r\n", "\r":
                row.append(field); field = ""
                if !(row.count == 1 && row[0].isEmpty) { rows.append((rowLine, row)) }
                row = []
                line += 1; rowLine = line
            default: field.append(ch)
            }
        }
        if quoted { throw CSVError("line \(quoteLine): a quoted field opens here and is never closed") }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append((rowLine, row)) }
        return rows
    }

    /// Rows of fields (see `parseLines`).
    public static func parse(_ text: String) throws(CSVError) -> [[String]] { try parseLines(text).map(\.fields) }

    /// Rows as dictionaries keyed by the header row. A row with fewer fields lacks the last keys (as
    /// pandas reads it); a row with more non-empty fields than the header throws naming its line, since
    /// it is usually a path or caption with an unquoted comma, whose columns would all shift silently.
    /// Errors are prefixed with `file`.
    public static func records(_ text: String, file: String) throws(CSVError) -> (header: [String], rows: [[String: String]]) {
        let all: [(line: Int, fields: [String])]
        do { all = try parseLines(text) } catch { throw CSVError("\(file): \(error.message)") }
        guard let header = all.first?.fields.map({ $0.trimmingCharacters(in: .whitespaces) }) else { return ([], []) }
        var rows: [[String: String]] = []
        rows.reserveCapacity(all.count - 1)
        for (line, values) in all.dropFirst() {
            if values.count > header.count, values[header.count...].contains(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }) {
                throw CSVError("\(file): line \(line) has \(values.count) fields but the header has \(header.count) (quote a field that holds a comma)")
            }
            rows.append(Dictionary(zip(header, values.map { $0.trimmingCharacters(in: .whitespaces) }), uniquingKeysWith: { a, _ in a }))
        }
        return (header, rows)
    }
}

/// A CSV that cannot be read as a table, with the line at fault.
public struct CSVError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

import Foundation
