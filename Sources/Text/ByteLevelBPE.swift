/// RoBERTa's and GPT-2's tokenizer as Hugging Face `tokenizers` runs it (`ByteLevel` pre-tokenizer
/// without prefix space, `BPE`, `RobertaProcessing`'s `<s> $A </s>` template).
///
/// The text is split by GPT-2's pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`; each piece's UTF-8
/// bytes are mapped to printable characters (`ByteLevelBPETokenizer.byteToUnicode`), and the piece,
/// starting as one symbol per byte, is merged pair by pair: always the adjacent pair of lowest merge
/// rank, until no adjacent pair has one.
public struct ByteLevelBPETokenizer: TextTokenizer {
    let vocabulary: Vocabulary
    let added: AddedTokens
    /// (left id, right id) → (rank, merged id).
    let merges: [Pair: (rank: Int, id: Int)]
    /// The vocabulary id of each byte's character (nil where the vocabulary lacks it).
    let byteIDs: [Int?]
    public let unkID: Int?
    /// Llama-3 style: a piece that is itself in the vocabulary is taken whole (false for RoBERTa/GPT-2).
    public let ignoreMerges: Bool
    public let padID: Int
    public let prefixIDs: [Int]
    public let suffixIDs: [Int]
    public var maxLength: Int

    public var vocabularySize: Int { vocabulary.size }

    struct Pair: Hashable { let a: Int, b: Int }

    /// - `merges`: pairs of token strings in rank order (merges.txt lines after the header).
    /// - `special`: added tokens matched in raw text, with whether each swallows whitespace on its left
    ///   (RoBERTa's `<mask>` does).
    public init(vocab: [(String, Int)], merges: [(String, String)], bos: String = "<s>", eos: String = "</s>",
                pad: String = "<pad>", unk: String? = "<unk>",
                special: [(token: String, lstrip: Bool)] = [("<s>", false), ("<pad>", false), ("</s>", false), ("<unk>", false), ("<mask>", true)],
                ignoreMerges: Bool = false, maxLength: Int = 77) throws {
        let vocabulary = Vocabulary(vocab)
        func need(_ token: String) throws -> Int {
            guard let id = vocabulary[token] else { throw TextError("BPE vocabulary has no \(token) token") }
            return id
        }
        let added = AddedTokens(special.compactMap { s in
            vocabulary[s.token].map { AddedTokens.Token(content: Array(s.token.unicodeScalars), id: $0, lstrip: s.lstrip, rstrip: false) }
        })
        try self.init(vocab: vocab, merges: merges, added: added, prefix: [need(bos)], suffix: [need(eos)], pad: pad, unk: unk,
                      ignoreMerges: ignoreMerges, maxLength: maxLength)
    }

    init(vocab: [(String, Int)], merges: [(String, String)], added: AddedTokens, prefix: [Int], suffix: [Int],
         pad: String, unk: String?, ignoreMerges: Bool, maxLength: Int) throws {
        let vocabulary = Vocabulary(vocab)
        var table: [Pair: (rank: Int, id: Int)] = [:]
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocabulary[a], let ib = vocabulary[b] else {
                throw TextError("BPE merge \(rank + 1) '\(a) \(b)': a part is not in the vocabulary")
            }
            guard let merged = vocabulary[a + b] else {
                throw TextError("BPE merge \(rank + 1) '\(a) \(b)': the merged token '\(a + b)' is not in the vocabulary")
            }
            if table[Pair(a: ia, b: ib)] == nil { table[Pair(a: ia, b: ib)] = (rank, merged) }
        }
        guard let padID = vocabulary[pad] else { throw TextError("BPE vocabulary has no \(pad) token") }
        self.vocabulary = vocabulary
        self.merges = table
        byteIDs = Self.byteToUnicode.map { vocabulary[string([$0])] }
        unkID = unk.flatMap { vocabulary[$0] }
        self.ignoreMerges = ignoreMerges
        self.added = added
        prefixIDs = prefix
        suffixIDs = suffix
        self.padID = padID
        self.maxLength = maxLength
    }

    public func id(of token: String) -> Int? { vocabulary[token] }

    public func tokenize(_ text: String) -> [Int] {
        var ids: [Int] = []
        for piece in added.split(Array(text.unicodeScalars)) {
            switch piece {
            case .token(let id): ids.append(id)
            case .text(let t):
                for word in Self.preTokenize(t) { bpe(word, into: &ids) }
            }
        }
        return ids
    }

    /// One pre-tokenized piece through the byte map and the merges.
    func bpe(_ word: ArraySlice<Unicode.Scalar>, into ids: inout [Int]) {
        let bytes = utf8(word)
        if ignoreMerges, let id = vocabulary[bytes: utf8(bytes.map { Self.byteToUnicode[Int($0)] })] {
            ids.append(id); return
        }
        var symbols: [Int] = []
        symbols.reserveCapacity(bytes.count)
        for b in bytes {
            if let id = byteIDs[Int(b)] { symbols.append(id) } else if let unkID { symbols.append(unkID) }
        }
        // Merge ranks only grow along a chain (a merged token exists before any merge that uses it), so
        // merging every occurrence of the lowest-ranked pair, left to right, is the reference's
        // priority-queue order.
        while symbols.count > 1 {
            var best: (rank: Int, id: Int)? = nil, bestPair = Pair(a: 0, b: 0)
            for i in 0..<(symbols.count - 1) {
                let p = Pair(a: symbols[i], b: symbols[i + 1])
                if let m = merges[p], m.rank < (best?.rank ?? .max) { best = m; bestPair = p }
            }
            guard let merge = best else { break }
            var out: [Int] = []
            out.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == bestPair.a && symbols[i + 1] == bestPair.b {
                    out.append(merge.id); i += 2
                } else {
                    out.append(symbols[i]); i += 1
                }
            }
            symbols = out
        }
        ids += symbols
    }

    /// GPT-2's byte → character map: printable Latin-1 bytes stand for themselves, the other 68
    /// (controls, space, soft hyphen, …) for U+0100 onwards in byte order, so no piece has a space.
    public static let byteToUnicode: [Unicode.Scalar] = {
        let kept = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var map = [Unicode.Scalar](repeating: " ", count: 256)
        for b in kept { map[b] = Unicode.Scalar(UInt32(b))! }
        var n = 0
        for b in 0..<256 where !kept.contains(b) { map[b] = Unicode.Scalar(UInt32(256 + n))!; n += 1 }
        return map
    }()

    /// GPT-2's pre-tokenization pattern, by hand: at each position the first alternative that matches
    /// wins, and each quantifier is greedy. Whitespace (`\s`) is White_Space, letters L*, numbers N*.
    static func preTokenize(_ text: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        let t = Array(text)
        let n = t.count
        var pieces: [ArraySlice<Unicode.Scalar>] = []
        func isSpace(_ i: Int) -> Bool { t[i].properties.isWhitespace }
        func isLetter(_ i: Int) -> Bool { t[i].properties.generalCategory.isLetter }
        func isNumber(_ i: Int) -> Bool { t[i].properties.generalCategory.isNumber }
        func isOther(_ i: Int) -> Bool { !isSpace(i) && !isLetter(i) && !isNumber(i) }
        func run(from i: Int, _ cls: (Int) -> Bool) -> Int { var j = i; while j < n && cls(j) { j += 1 }; return j }
        var i = 0
        while i < n {
            var end: Int? = nil
            // 's 't 're 've 'm 'll 'd (case-sensitive)
            if t[i] == "'" {
                for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
                    let s = Array(suffix.unicodeScalars)
                    if i + 1 + s.count <= n && t[(i + 1)..<(i + 1 + s.count)].elementsEqual(s) { end = i + 1 + s.count; break }
                }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            if end == nil {
                for cls in [isLetter, isNumber, isOther] as [(Int) -> Bool] {
                    if cls(i) { end = run(from: i, cls); break }
                    if t[i] == " " && i + 1 < n && cls(i + 1) { end = run(from: i + 1, cls); break }
                }
            }
            // `\s+(?!\S)`: a whitespace run, less its last character when a non-space follows it;
            // `\s+`: a single whitespace character before a non-space (the case the first leaves).
            if end == nil {
                let j = run(from: i, isSpace)
                end = (j == n || j - 1 == i) ? j : j - 1
            }
            pieces.append(text[(text.startIndex + i)..<(text.startIndex + end!)])
            i = end!
        }
        return pieces
    }
}

extension Unicode.GeneralCategory {
    var isLetter: Bool {
        switch self { case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: true; default: false }
    }
    var isNumber: Bool {
        switch self { case .decimalNumber, .letterNumber, .otherNumber: true; default: false }
    }
}
