/// Special tokens written in the text itself ("[MASK]", "<mask>") become their ids before anything else
/// runs, as Hugging Face's `AddedVocabulary` does: matched on the raw text (leftmost, then longest),
/// `lstrip`/`rstrip` tokens swallowing the whitespace beside them; the text between matches is
/// normalised and tokenised on its own.
///
/// Not modelled: `single_word` tokens and added tokens with `normalized: true` (matched after
/// normalisation by the reference); no BERT or RoBERTa tokenizer file has either.
struct AddedTokens: Sendable {
    struct Token: Sendable {
        let content: [Unicode.Scalar]
        let id: Int
        let lstrip: Bool, rstrip: Bool
    }

    enum Piece: Equatable {
        case text(ArraySlice<Unicode.Scalar>)
        case token(Int)
    }

    let tokens: [Token]

    init(_ tokens: [Token]) { self.tokens = tokens.filter { !$0.content.isEmpty } }

    /// Rust's `char::is_whitespace`, which `trim_start`/`trim_end` use: the White_Space property.
    static func isWhitespace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    func split(_ text: [Unicode.Scalar]) -> [Piece] {
        guard !tokens.isEmpty else { return [.text(text[...])] }
        var pieces: [Piece] = []
        var textStart = 0, i = 0
        while i < text.count {
            // Longest token starting here (the matcher is leftmost-longest).
            var best: Token? = nil
            for t in tokens where t.content.count > (best?.content.count ?? 0) && i + t.content.count <= text.count {
                if text[i..<(i + t.content.count)].elementsEqual(t.content) { best = t }
            }
            guard let token = best else { i += 1; continue }
            var start = i, stop = i + token.content.count
            if token.lstrip { while start > textStart && Self.isWhitespace(text[start - 1]) { start -= 1 } }
            if token.rstrip { while stop < text.count && Self.isWhitespace(text[stop]) { stop += 1 } }
            if start > textStart { pieces.append(.text(text[textStart..<start])) }
            pieces.append(.token(token.id))
            textStart = stop; i = stop
        }
        if textStart < text.count { pieces.append(.text(text[textStart...])) }
        return pieces
    }
}
