import Foundation

/// Reading the tokenizer files Hugging Face folders hold: `tokenizer.json` (either model), `vocab.txt`
/// (BERT), `vocab.json` + `merges.txt` (RoBERTa, GPT-2).
public enum TokenizerFiles {
    /// The tokenizer of a model folder: tokenizer.json if present, else vocab.txt, else vocab.json with
    /// merges.txt. `maxLength` nil: sentence-transformers' `max_seq_length` (sentence_bert_config.json)
    /// where the folder has one, else the file's truncation length, else 77 (CLAP's).
    public static func load(folder: URL, maxLength: Int? = nil) throws -> any TextTokenizer {
        let fm = FileManager.default
        func file(_ name: String) -> URL? {
            let u = folder.appendingPathComponent(name)
            return fm.fileExists(atPath: u.path) ? u : nil
        }
        var length = maxLength
        if length == nil, let st = file("sentence_bert_config.json"),
           let json = try? JSONSerialization.jsonObject(with: Data(contentsOf: st)) as? [String: Any] {
            length = (json["max_seq_length"] as? NSNumber)?.intValue
        }
        if let json = file("tokenizer.json") { return try load(tokenizerJSON: json, maxLength: length) }
        if let vocab = file("vocab.txt") {
            var lowercase = true
            if let cfg = file("tokenizer_config.json"),
               let json = try? JSONSerialization.jsonObject(with: Data(contentsOf: cfg)) as? [String: Any],
               let lower = json["do_lower_case"] as? Bool { lowercase = lower }
            return try WordPieceTokenizer.load(vocabTxt: vocab, lowercase: lowercase, maxLength: length ?? 77)
        }
        if let vocab = file("vocab.json"), let merges = file("merges.txt") {
            return try ByteLevelBPETokenizer.load(vocabJSON: vocab, merges: merges, maxLength: length ?? 77)
        }
        throw TextError("\(folder.path): no tokenizer.json, vocab.txt, or vocab.json with merges.txt")
    }

    /// A `tokenizer.json` with a WordPiece (BERT normaliser and pre-tokenizer) or a BPE (byte-level
    /// pre-tokenizer) model; its added tokens, template and special ids are read from the file.
    public static func load(tokenizerJSON url: URL, maxLength: Int? = nil) throws -> any TextTokenizer {
        let root = try jsonObject(url)
        func fail(_ m: String) -> TextError { TextError("\(url.path): \(m)") }
        guard let model = root["model"] as? [String: Any] else { throw fail("no \"model\" object") }
        let length = maxLength ?? ((root["truncation"] as? [String: Any])?["max_length"] as? NSNumber)?.intValue ?? 77
        let addedList = root["added_tokens"] as? [[String: Any]] ?? []
        let added = AddedTokens(addedList.compactMap { t in
            guard let content = t["content"] as? String, let id = (t["id"] as? NSNumber)?.intValue else { return nil }
            return AddedTokens.Token(content: Array(content.unicodeScalars), id: id,
                                     lstrip: t["lstrip"] as? Bool ?? false, rstrip: t["rstrip"] as? Bool ?? false)
        })
        guard let vocabDict = model["vocab"] as? [String: Any] else { throw fail("model has no vocab object") }
        var pairs: [(String, Int)] = vocabDict.compactMap { k, v in (v as? NSNumber).map { (k, $0.intValue) } }
        // Added tokens outside the model's vocabulary still have ids (the reference appends them).
        for t in addedList { if let c = t["content"] as? String, let id = (t["id"] as? NSNumber)?.intValue { pairs.append((c, id)) } }
        let vocabulary = Vocabulary(pairs)
        let (prefix, suffix) = try template(root["post_processor"], vocabulary, fail)
        let padToken = (root["padding"] as? [String: Any])?["pad_token"] as? String
        switch model["type"] as? String {
        case "WordPiece":
            var normalizer = BertNormalizer()
            if let n = root["normalizer"] as? [String: Any] {
                guard n["type"] as? String == "BertNormalizer" else { throw fail("WordPiece with a \(n["type"] ?? "?") normalizer is not supported (BertNormalizer is)") }
                normalizer = BertNormalizer(cleanText: n["clean_text"] as? Bool ?? true,
                                            handleChineseChars: n["handle_chinese_chars"] as? Bool ?? true,
                                            stripAccents: n["strip_accents"] as? Bool, lowercase: n["lowercase"] as? Bool ?? true)
            } else {
                normalizer = BertNormalizer(cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: false)
            }
            let unk = model["unk_token"] as? String ?? "[UNK]"
            guard let unkID = vocabulary[unk] else { throw fail("unk token \(unk) is not in the vocabulary") }
            guard let padID = vocabulary[padToken ?? "[PAD]"] else { throw fail("no pad token \(padToken ?? "[PAD]") in the vocabulary") }
            guard prefix.count == 1, suffix.count == 1 else { throw fail("expected a [CLS] $A [SEP] template, got \(prefix.count) + \(suffix.count) special tokens") }
            return WordPieceTokenizer(vocabulary: vocabulary, added: added, normalizer: normalizer, unkID: unkID,
                                      clsID: prefix[0], sepID: suffix[0], padID: padID,
                                      continuingPrefix: model["continuing_subword_prefix"] as? String ?? "##",
                                      maxInputCharsPerWord: (model["max_input_chars_per_word"] as? NSNumber)?.intValue ?? 100,
                                      maxLength: length)
        case "BPE":
            if let pre = root["pre_tokenizer"] as? [String: Any] {
                guard pre["type"] as? String == "ByteLevel" else { throw fail("BPE with a \(pre["type"] ?? "?") pre-tokenizer is not supported (ByteLevel is)") }
                guard pre["add_prefix_space"] as? Bool != true else { throw fail("ByteLevel with add_prefix_space is not supported") }
            }
            for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
                if let s = model[key] as? String, !s.isEmpty { throw fail("BPE \(key) \"\(s)\" is not supported") }
            }
            let merges: [(String, String)] = try (model["merges"] as? [Any] ?? []).map { m in
                if let pair = m as? [String], pair.count == 2 { return (pair[0], pair[1]) }
                if let line = m as? String, let p = mergePair(line) { return p }
                throw fail("malformed merge \(m)")
            }
            let vocabPairs = pairs
            return try ByteLevelBPETokenizer(
                vocab: vocabPairs, merges: merges, added: added, prefix: prefix, suffix: suffix,
                pad: padToken ?? "<pad>", unk: model["unk_token"] as? String,
                ignoreMerges: model["ignore_merges"] as? Bool ?? false, maxLength: length)
        case let other:
            throw fail("tokenizer model \(other ?? "nil") is not supported (WordPiece and BPE are)")
        }
    }

    /// The ids a post-processor puts before and after a single text.
    static func template(_ processor: Any?, _ vocabulary: Vocabulary, _ fail: (String) -> TextError) throws -> ([Int], [Int]) {
        guard let p = processor as? [String: Any] else { return ([], []) }
        func idOf(_ pair: Any?) throws -> Int {
            guard let a = pair as? [Any], a.count == 2, let id = (a[1] as? NSNumber)?.intValue else { throw fail("malformed special token \(pair ?? "nil")") }
            return id
        }
        switch p["type"] as? String {
        case "BertProcessing", "RobertaProcessing":
            return ([try idOf(p["cls"])], [try idOf(p["sep"])])
        case "TemplateProcessing":
            let specials = p["special_tokens"] as? [String: Any] ?? [:]
            var before: [Int] = [], after: [Int] = [], seenSequence = false
            for item in p["single"] as? [[String: Any]] ?? [] {
                if item["Sequence"] != nil { seenSequence = true; continue }
                guard let s = item["SpecialToken"] as? [String: Any], let name = s["id"] as? String else { continue }
                let ids = (specials[name] as? [String: Any])?["ids"] as? [NSNumber] ?? vocabulary[name].map { [NSNumber(value: $0)] } ?? []
                if ids.isEmpty { throw fail("template token \(name) has no id") }
                if seenSequence { after += ids.map(\.intValue) } else { before += ids.map(\.intValue) }
            }
            return (before, after)
        case let other:
            throw fail("post-processor \(other ?? "nil") is not supported")
        }
    }

    static func mergePair(_ line: String) -> (String, String)? {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        return (String(parts[0]), String(parts[1]))
    }

    static func jsonObject(_ url: URL) throws -> [String: Any] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw TextError("\(url.path): cannot read (\(error.localizedDescription))") }
        guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw TextError("\(url.path): not a JSON object") }
        return o
    }
}

extension WordPieceTokenizer {
    /// BERT's vocab.txt: one token a line, the id is the line number from 0.
    public static func load(vocabTxt url: URL, lowercase: Bool = true, maxLength: Int = 77) throws -> WordPieceTokenizer {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch { throw TextError("\(url.path): cannot read as UTF-8 (\(error.localizedDescription))") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        // The reference trims trailing whitespace of each line (Rust `trim_end`), "\r" included.
        let vocab = lines.enumerated().map { i, l in (String(l.unicodeScalars.reversed().drop(while: { $0.properties.isWhitespace }).reversed().map(Character.init)), i) }
        do {
            return try WordPieceTokenizer(vocab: vocab, normalizer: BertNormalizer(lowercase: lowercase), maxLength: maxLength)
        } catch let e as TextError { throw TextError("\(url.path): \(e.message)") }
    }
}

extension ByteLevelBPETokenizer {
    /// GPT-2/RoBERTa's vocab.json (token → id) and merges.txt (a "#version" header, then "a b" lines
    /// in rank order), with RoBERTa's special tokens.
    public static func load(vocabJSON: URL, merges: URL, maxLength: Int = 77) throws -> ByteLevelBPETokenizer {
        let vocab = try TokenizerFiles.jsonObject(vocabJSON).compactMap { k, v in (v as? NSNumber).map { (k, $0.intValue) } }
        let text: String
        do { text = try String(contentsOf: merges, encoding: .utf8) } catch { throw TextError("\(merges.path): cannot read as UTF-8") }
        var pairs: [(String, String)] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let l = line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
            if l.isEmpty || (n == 0 && l.hasPrefix("#version")) { continue }
            guard let p = TokenizerFiles.mergePair(l) else { throw TextError("\(merges.path): line \(n + 1) is not two tokens: \(l)") }
            pairs.append(p)
        }
        do {
            return try ByteLevelBPETokenizer(vocab: vocab, merges: pairs, maxLength: maxLength)
        } catch let e as TextError { throw TextError("\(vocabJSON.path): \(e.message)") }
    }
}
