import Foundation

/// Hugging Face `BertNormalizer`, in its order: clean text (drop NUL, U+FFFD and control characters,
/// map whitespace to " "), pad CJK ideographs with spaces, strip accents (NFD, then drop nonspacing
/// marks, Mn), lowercase (each scalar's full lowercase mapping, no context: Σ is always σ).
public struct BertNormalizer: Sendable, Equatable {
    public var cleanText = true
    public var handleChineseChars = true
    /// nil: follow `lowercase` (the reference's default).
    public var stripAccents: Bool? = nil
    public var lowercase = true

    public init(cleanText: Bool = true, handleChineseChars: Bool = true, stripAccents: Bool? = nil, lowercase: Bool = true) {
        self.cleanText = cleanText; self.handleChineseChars = handleChineseChars
        self.stripAccents = stripAccents; self.lowercase = lowercase
    }

    public func normalize(_ text: some Collection<Unicode.Scalar>) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for c in text {
            if cleanText {
                if c.value == 0 || c.value == 0xFFFD || Self.isControl(c) { continue }
                if Self.isWhitespace(c) { out.append(" "); continue }
            }
            if handleChineseChars && Self.isChinese(c) { out += [" ", c, " "]; continue }
            out.append(c)
        }
        if stripAccents ?? lowercase {
            out = Array(string(out).decomposedStringWithCanonicalMapping.unicodeScalars)
            out.removeAll { $0.properties.generalCategory == .nonspacingMark }
        }
        if lowercase { out = out.flatMap { $0.properties.lowercaseMapping.unicodeScalars } }
        return out
    }

    /// \t, \n, \r or White_Space (Rust's `char::is_whitespace`).
    static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        c == "\t" || c == "\n" || c == "\r" || c.properties.isWhitespace
    }

    /// Any "other" category (Cc, Cf, Cn, Co, Cs) except \t, \n, \r, which are whitespace. So \u{0B},
    /// \u{85} and the zero-width characters are dropped, not turned into spaces.
    static func isControl(_ c: Unicode.Scalar) -> Bool {
        if c == "\t" || c == "\n" || c == "\r" { return false }
        switch c.properties.generalCategory {
        case .control, .format, .unassigned, .privateUse, .surrogate: return true
        default: return false
        }
    }

    /// The CJK Unified Ideograph blocks BERT splits per character (not Hiragana, Katakana or Hangul).
    static func isChinese(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        default: return false
        }
    }
}

/// Hugging Face `BertPreTokenizer`: words split at whitespace (dropped) and at every punctuation
/// character, each kept as a word of its own. Punctuation is ASCII punctuation (which includes
/// symbols such as $ + < = > ^ ` | ~) or a Unicode P* category.
public enum BertPreTokenizer {
    public static func split(_ text: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var start = 0
        for (i, c) in text.enumerated() {
            if BertNormalizer.isWhitespace(c) {
                if start < i { words.append(text[start..<i]) }
                start = i + 1
            } else if isPunctuation(c) {
                if start < i { words.append(text[start..<i]) }
                words.append(text[i...i])
                start = i + 1
            }
        }
        if start < text.count { words.append(text[start...]) }
        return words
    }

    static func isPunctuation(_ c: Unicode.Scalar) -> Bool {
        if c.isASCII {
            let v = c.value
            return (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v) || (0x7B...0x7E).contains(v)
        }
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
}
