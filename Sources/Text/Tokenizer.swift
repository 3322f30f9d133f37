import Foundation

/// Errors from reading tokenizer files and loading text encoders; the message names the file or key.
public struct TextError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// `error` from loading the files in `folder` (a tokenizer or text model), prefixed with the folder unless
/// its message already begins with a path there: the loaders name the file they failed on.
package func describing(_ error: any Error, under folder: URL) -> String {
    let text = "\(error)"
    return text.hasPrefix(folder.path) ? text : "\(folder.path): \(text)"
}

/// One text as a model reads it: `[CLS] … [SEP]` (BERT) or `<s> … </s>` (RoBERTa), already truncated.
public struct Encoding: Equatable, Sendable {
    public var ids: [Int]
    /// 1 for every token of `ids` (padding, added by `TextTokenizer.encode(batch:)`, gets 0).
    public var attentionMask: [Int]
    /// Whether tokens were cut to fit `maxLength` (callers say so once; the reference cuts silently).
    public var truncated: Bool
}

/// Texts padded on the right into one [B, N] batch, row-major, with the attention mask a text encoder
/// needs: mask[b][j] = 1 for j < lengths[b], else 0.
public struct TokenBatch: Equatable, Sendable {
    public let ids: [Int]
    public let attentionMask: [Int]
    public let batch: Int, length: Int
    /// Valid tokens per text (the attention kernel's key lengths).
    public let lengths: [Int]
    /// How many texts were truncated.
    public let truncatedCount: Int

    public func row(_ b: Int) -> ArraySlice<Int> { ids[(b * length)..<((b + 1) * length)] }
}

/// How `encode(batch:)` pads: to the longest text of the batch (Hugging Face `padding=True`) or to
/// `maxLength` (`padding="max_length"`, what LAION-CLAP's text hook asks for).
public enum Padding: Sendable { case longest, maxLength }

/// A tokenizer that gives the ids Hugging Face `tokenizers` gives for the same files: special tokens
/// in the text split out first, the rest normalised, pre-tokenised and split into subwords, then the
/// model's template added around the result, cut to `maxLength` tokens counting the template.
public protocol TextTokenizer: Sendable {
    /// The number of ids (the largest id + 1), what the text encoder's embedding table must hold.
    var vocabularySize: Int { get }
    var padID: Int { get }
    /// Tokens per text including the template's special tokens (77 for CLAP; 128/256/512 for BERTs).
    var maxLength: Int { get set }
    /// The template: ids before and after the text's tokens.
    var prefixIDs: [Int] { get }
    var suffixIDs: [Int] { get }
    /// The ids of the text alone: no template, no truncation.
    func tokenize(_ text: String) -> [Int]
    /// The id of a token string, or nil.
    func id(of token: String) -> Int?
}

extension TextTokenizer {
    /// Template + tokens, the tokens cut so the whole is at most `maxLength` (HF truncation
    /// "longest_first" on a single text: the template is kept, the text's tail is dropped).
    public func encode(_ text: String) -> Encoding {
        var tokens = tokenize(text)
        let room = max(0, maxLength - prefixIDs.count - suffixIDs.count)
        let truncated = tokens.count > room
        if truncated { tokens.removeLast(tokens.count - room) }
        let ids = prefixIDs + tokens + suffixIDs
        return Encoding(ids: ids, attentionMask: Array(repeating: 1, count: ids.count), truncated: truncated)
    }

    /// Encodes each text and pads them on the right with `padID` into one batch.
    public func encode(batch texts: [String], padding: Padding = .longest) -> TokenBatch {
        let encodings = texts.map { encode($0) }
        let longest = encodings.map(\.ids.count).max() ?? 0
        let n = padding == .maxLength ? max(maxLength, longest) : longest
        var ids: [Int] = [], mask: [Int] = []
        ids.reserveCapacity(texts.count * n); mask.reserveCapacity(texts.count * n)
        for e in encodings {
            ids += e.ids + Array(repeating: padID, count: n - e.ids.count)
            mask += e.attentionMask + Array(repeating: 0, count: n - e.ids.count)
        }
        return TokenBatch(ids: ids, attentionMask: mask, batch: texts.count, length: n,
                          lengths: encodings.map(\.ids.count), truncatedCount: encodings.filter(\.truncated).count)
    }
}

/// A vocabulary keyed by a token's exact scalars. Swift `String` equality is canonical equivalence
/// ("é" == "e\u{301}"), the reference's is byte equality, so keys are UTF-8 bytes.
struct Vocabulary: Sendable {
    private(set) var ids: [[UInt8]: Int] = [:]
    private(set) var size = 0

    init(_ pairs: [(String, Int)]) {
        for (token, id) in pairs {
            ids[Array(token.utf8)] = id
            size = max(size, id + 1)
        }
    }

    subscript(_ token: String) -> Int? { ids[Array(token.utf8)] }
    subscript(_ scalars: ArraySlice<Unicode.Scalar>) -> Int? { ids[utf8(scalars)] }
    subscript(bytes bytes: [UInt8]) -> Int? { ids[bytes] }
    var count: Int { ids.count }
}

func utf8<S: Sequence>(_ scalars: S) -> [UInt8] where S.Element == Unicode.Scalar {
    var out: [UInt8] = []
    for s in scalars { out.append(contentsOf: UTF8.encode(s)!) }
    return out
}

func string<S: Sequence>(_ scalars: S) -> String where S.Element == Unicode.Scalar {
    var s = String.UnicodeScalarView()
    s.append(contentsOf: scalars)
    return String(s)
}
