/// BERT's tokenizer as Hugging Face `tokenizers` runs it (`BertNormalizer`, `BertPreTokenizer`,
/// `WordPiece`, the `[CLS] $A [SEP]` template).
///
/// WordPiece splits each word greedily from the left, taking at each step the longest vocabulary
/// entry that matches (continuation pieces carry the `##` prefix); a word longer than
/// `maxInputCharsPerWord` scalars, or one with any position no entry matches, becomes `[UNK]` whole.
public struct WordPieceTokenizer: TextTokenizer {
    let vocabulary: Vocabulary
    let added: AddedTokens
    public var normalizer: BertNormalizer
    public let unkID: Int
    public let continuingPrefix: String
    public let maxInputCharsPerWord: Int
    public let padID: Int
    public let prefixIDs: [Int]
    public let suffixIDs: [Int]
    public var maxLength: Int

    public var vocabularySize: Int { vocabulary.size }

    /// - `vocab`: token → id; `special`: the added tokens matched in raw text (their ids must be in
    ///   `vocab` or beyond it). `cls`/`sep`/`pad`/`unk` are token strings looked up in `vocab`.
    public init(vocab: [(String, Int)], normalizer: BertNormalizer = BertNormalizer(), unk: String = "[UNK]",
                cls: String = "[CLS]", sep: String = "[SEP]", pad: String = "[PAD]",
                special: [String] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                continuingPrefix: String = "##", maxInputCharsPerWord: Int = 100, maxLength: Int = 77) throws {
        let vocabulary = Vocabulary(vocab)
        func need(_ token: String) throws -> Int {
            guard let id = vocabulary[token] else { throw TextError("WordPiece vocabulary has no \(token) token") }
            return id
        }
        self.vocabulary = vocabulary
        self.normalizer = normalizer
        unkID = try need(unk)
        prefixIDs = [try need(cls)]
        suffixIDs = [try need(sep)]
        padID = try need(pad)
        added = AddedTokens(special.compactMap { t in
            vocabulary[t].map { AddedTokens.Token(content: Array(t.unicodeScalars), id: $0, lstrip: false, rstrip: false) }
        })
        self.continuingPrefix = continuingPrefix
        self.maxInputCharsPerWord = maxInputCharsPerWord
        self.maxLength = maxLength
    }

    init(vocabulary: Vocabulary, added: AddedTokens, normalizer: BertNormalizer, unkID: Int, clsID: Int, sepID: Int,
         padID: Int, continuingPrefix: String, maxInputCharsPerWord: Int, maxLength: Int) {
        self.vocabulary = vocabulary; self.added = added; self.normalizer = normalizer; self.unkID = unkID
        prefixIDs = [clsID]; suffixIDs = [sepID]; self.padID = padID
        self.continuingPrefix = continuingPrefix; self.maxInputCharsPerWord = maxInputCharsPerWord; self.maxLength = maxLength
    }

    public func id(of token: String) -> Int? { vocabulary[token] }

    public func tokenize(_ text: String) -> [Int] {
        var ids: [Int] = []
        for piece in added.split(Array(text.unicodeScalars)) {
            switch piece {
            case .token(let id): ids.append(id)
            case .text(let t):
                for word in BertPreTokenizer.split(normalizer.normalize(t)) { wordPiece(word, into: &ids) }
            }
        }
        return ids
    }

    /// Greedy longest-match-first over one word's scalars.
    func wordPiece(_ word: ArraySlice<Unicode.Scalar>, into ids: inout [Int]) {
        let chars = Array(word)
        if chars.count > maxInputCharsPerWord { ids.append(unkID); return }
        let prefix = Array(continuingPrefix.utf8)
        var pieces: [Int] = []
        var start = 0
        while start < chars.count {
            var end = chars.count
            var found: Int? = nil
            while start < end {
                let key = (start > 0 ? prefix : []) + utf8(chars[start..<end])
                if let id = vocabulary[bytes: key] { found = id; break }
                end -= 1
            }
            guard let id = found else { ids.append(unkID); return }
            pieces.append(id)
            start = end
        }
        ids += pieces
    }
}
