/// A small RFC 4180 CSV reader (quoted fields, doubled quotes, CRLF), enough for dataset metadata.
public enum CSV {
    public static func parse(_ text: String) -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field = ""
        var quoted = false, iterator = text.makeIterator()
        var pending: Character? = nil
        func next() -> Character? { if let p = pending { pending = nil; return p }; return iterator.next() }
        while let ch = next() {
            if quoted {
                if ch == "\"" {
                    if let n = next() { if n == "\"" { field.append("\"") } else { quoted = false; pending = n } } else { quoted = false }
                } else { field.append(ch) }
                continue
            }
            switch ch {
            case "\"": quoted = true
            case ",": row.append(field); field = ""
            case "\n", "\r\n", "\r":
                row.append(field); field = ""
                if !(row.count == 1 && row[0].isEmpty) { rows.append(row) }
                row = []
            default: field.append(ch)
            }
        }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }

    /// Rows as dictionaries keyed by the header row.
    public static func records(_ text: String) -> (header: [String], rows: [[String: String]]) {
        let all = parse(text)
        guard let header = all.first?.map({ $0.trimmingCharacters(in: .whitespaces) }) else { return ([], []) }
        let rows = all.dropFirst().map { values in
            Dictionary(zip(header, values.map { $0.trimmingCharacters(in: .whitespaces) }), uniquingKeysWith: { a, _ in a })
        }
        return (header, rows)
    }
}

import Foundation
