import Audio
import Foundation

/// Keyword-to-caption: captions for clips that only have labels (ESC-50, FSDD, class folders), so a
/// CLAP can train on them.
///
/// LAION-CLAP's keyword-to-caption (the paper's K2C) is not a template: AudioSet keywords were turned
/// into sentences offline by a T5 model (`keytotext`), de-biased (man/woman → person), and stored in the
/// dataset's JSON (`text_augment_t5`); its training code only picks among the stored texts
/// (`select_text`, `--text-augment-selection`). No T5 model runs here; instead, documented templates:
/// - a clip's keywords are its labels, each renamed by `keywords` (label → words, e.g. "0" → "zero")
///   or else with `_` and `-` read as spaces ("crackling_fire" → "crackling fire");
/// - several keywords are joined "k₁", "k₁ and k₂", "k₁, k₂ and k₃" (LAION's template fallback
///   "sound of label-1, …, and label-n", without the serial comma);
/// - each template puts the joined keywords where `{}` (or `{label}`) is: `defaultTemplates`, or the
///   user's (`--caption-templates`, one per line);
/// - user-written captions per label (`--label-captions`, CSV `label,caption`, several rows per label)
///   are added to the templated ones.
/// A clip then has several captions; training draws one per clip per epoch, validation counts any.
public struct KeywordCaptioner: Sendable, Equatable {
    public var templates: [String]
    /// Label → the words that name it in captions and zero-shot prompts.
    public var keywords: [String: String]
    /// Label → captions a person wrote for it.
    public var labelCaptions: [String: [String]]

    public static let defaultTemplates = ["the sound of {}", "a recording of {}", "{} can be heard", "this is a sound of {}",
                                          "an audio clip of {}"]

    public init(templates: [String] = KeywordCaptioner.defaultTemplates, keywords: [String: String] = [:],
                labelCaptions: [String: [String]] = [:]) throws {
        guard !templates.isEmpty else { throw CLAPError("keyword-to-caption: no caption templates") }
        for t in templates where !t.contains("{}") && !t.contains("{label}") {
            throw CLAPError("keyword-to-caption: template '\(t)' has no {} where the keywords go")
        }
        self.templates = templates; self.keywords = keywords; self.labelCaptions = labelCaptions
    }

    /// The words for `label`.
    public func keyword(_ label: String) -> String {
        keywords[label] ?? label.replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: "-", with: " ")
    }

    /// "a", "a and b", "a, b and c".
    public static func join(_ words: [String]) -> String {
        guard words.count > 1 else { return words.first ?? "" }
        return words.dropLast().joined(separator: ", ") + " and " + words.last!
    }

    /// `template` with `{label}` (or else `{}`) replaced by `text`.
    public static func fill(_ template: String, with text: String) -> String {
        template.contains("{label}") ? template.replacingOccurrences(of: "{label}", with: text)
            : template.replacingOccurrences(of: "{}", with: text)
    }

    /// Every caption of a clip with `labels`: each template on the joined keywords, then the labels'
    /// own captions; none for a clip without labels.
    public func captions(labels: [String]) -> [String] {
        guard !labels.isEmpty else { return [] }
        let joined = Self.join(labels.map(keyword))
        var out = templates.map { Self.fill($0, with: joined) }
        for l in labels { out += labelCaptions[l] ?? [] }
        return out
    }

    /// Templates from a text file, one per line (blank lines and lines starting with # skipped).
    public static func templates(from url: URL) throws -> [String] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch { throw CLAPError("\(url.path): cannot read (\(error.localizedDescription))") }
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !lines.isEmpty else { throw CLAPError("\(url.path): no caption templates") }
        for (i, t) in lines.enumerated() where !t.contains("{}") && !t.contains("{label}") {
            throw CLAPError("\(url.path): template \(i + 1) '\(t)' has no {} where the keywords go")
        }
        return lines
    }

    /// A CSV with columns `label` and `value` (`keyword` or `caption`): label → values, in file order.
    public static func labelTable(from url: URL, valueColumn: String) throws -> [String: [String]] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch { throw CLAPError("\(url.path): cannot read (\(error.localizedDescription))") }
        let (header, rows) = try CSV.records(text, file: url.path)
        guard header.contains("label"), header.contains(valueColumn) else {
            throw CLAPError("\(url.path): needs columns label and \(valueColumn) (found \(header.joined(separator: ", ")))")
        }
        var out: [String: [String]] = [:]
        for (i, row) in rows.enumerated() {
            let label = row["label"]?.trimmingCharacters(in: .whitespaces) ?? "", value = row[valueColumn]?.trimmingCharacters(in: .whitespaces) ?? ""
            guard !label.isEmpty, !value.isEmpty else { throw CLAPError("\(url.path): row \(i + 2) has an empty label or \(valueColumn)") }
            out[label, default: []].append(value)
        }
        return out
    }
}
