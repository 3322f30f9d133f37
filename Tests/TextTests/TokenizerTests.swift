import Foundation
import XCTest
@testable import Text

let textFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// What tools/make_text_fixtures.py recorded from Hugging Face `tokenizers`.
struct Expected: Decodable {
    struct Padded: Decodable { let ids: [[Int]]; let mask: [[Int]] }
    struct Set: Decodable {
        let ids77: [[Int]]
        let ids128: [[Int]]?
        let ids512: [[Int]]?
        let padded: Padded
        let max_length77: Padded?
    }
    let minilm: Set, wordpiece_tiny: Set, bpe_tiny: Set

    static let shared: Expected = try! JSONDecoder().decode(
        Expected.self, from: Data(contentsOf: textFixtures.appendingPathComponent("tokens_expected.json")))
    static let corpus: [String] = try! JSONDecoder().decode(
        [String].self, from: Data(contentsOf: textFixtures.appendingPathComponent("corpus.json")))
}

/// Every corpus line through our tokenizers against the ids Hugging Face `tokenizers` gave.
final class TokenizerParityTests: XCTestCase {
    func assertSame(_ tokenizer: some TextTokenizer, _ expected: [[Int]], _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(expected.count, Expected.corpus.count)
        var wrong = 0
        for (text, ids) in zip(Expected.corpus, expected) {
            let ours = tokenizer.encode(text).ids
            if ours != ids {
                wrong += 1
                if wrong <= 5 { XCTFail("\(what): \(text.debugDescription.prefix(80)): ours \(ours.prefix(30)) reference \(ids.prefix(30))", file: file, line: line) }
            }
        }
        XCTAssertEqual(wrong, 0, "\(what): lines that differ", file: file, line: line)
    }

    func testMiniLMVocabTxtMatchesAtEveryLength() throws {
        var t = try WordPieceTokenizer.load(vocabTxt: textFixtures.appendingPathComponent("minilm_vocab.txt"))
        XCTAssertEqual(t.vocabularySize, 30522)
        XCTAssertEqual(t.maxLength, 77)
        assertSame(t, Expected.shared.minilm.ids77, "minilm 77")
        t.maxLength = 128
        assertSame(t, try XCTUnwrap(Expected.shared.minilm.ids128), "minilm 128")
        t.maxLength = 512
        assertSame(t, try XCTUnwrap(Expected.shared.minilm.ids512), "minilm 512")
    }

    func testTinyWordPieceFromTokenizerJSONAndVocabTxt() throws {
        let dir = textFixtures.appendingPathComponent("wordpiece_tiny")
        let fromJSON = try TokenizerFiles.load(tokenizerJSON: dir.appendingPathComponent("tokenizer.json"), maxLength: 77)
        XCTAssertTrue(fromJSON is WordPieceTokenizer)
        assertSame(fromJSON, Expected.shared.wordpiece_tiny.ids77, "wordpiece tokenizer.json")
        let fromTxt = try WordPieceTokenizer.load(vocabTxt: dir.appendingPathComponent("vocab.txt"))
        assertSame(fromTxt, Expected.shared.wordpiece_tiny.ids77, "wordpiece vocab.txt")
    }

    func testByteLevelBPEFromTokenizerJSONAndVocabMerges() throws {
        let dir = textFixtures.appendingPathComponent("bpe_tiny")
        var fromJSON = try TokenizerFiles.load(tokenizerJSON: dir.appendingPathComponent("tokenizer.json"), maxLength: 77)
        XCTAssertTrue(fromJSON is ByteLevelBPETokenizer)
        assertSame(fromJSON, Expected.shared.bpe_tiny.ids77, "bpe tokenizer.json")
        fromJSON.maxLength = 512
        assertSame(fromJSON, try XCTUnwrap(Expected.shared.bpe_tiny.ids512), "bpe 512")
        let fromFiles = try ByteLevelBPETokenizer.load(vocabJSON: dir.appendingPathComponent("vocab.json"),
                                                       merges: dir.appendingPathComponent("merges.txt"))
        assertSame(fromFiles, Expected.shared.bpe_tiny.ids77, "bpe vocab.json + merges.txt")
        XCTAssertEqual(fromFiles.padID, 1)
        XCTAssertEqual(fromFiles.vocabularySize, 600)
    }

    func testPaddedBatchesAndMasks() throws {
        let lines = Array(Expected.corpus[5..<14])
        let cases: [(any TextTokenizer, Expected.Padded, Padding)] = [
            (try WordPieceTokenizer.load(vocabTxt: textFixtures.appendingPathComponent("minilm_vocab.txt")), Expected.shared.minilm.padded, .longest),
            (try TokenizerFiles.load(folder: textFixtures.appendingPathComponent("bpe_tiny")), Expected.shared.bpe_tiny.padded, .longest),
            (try TokenizerFiles.load(folder: textFixtures.appendingPathComponent("bpe_tiny")), try XCTUnwrap(Expected.shared.bpe_tiny.max_length77), .maxLength),
        ]
        for (tokenizer, expected, padding) in cases {
            let batch = tokenizer.encode(batch: lines, padding: padding)
            XCTAssertEqual(batch.batch, lines.count)
            XCTAssertEqual(batch.length, expected.ids[0].count)
            XCTAssertEqual((0..<batch.batch).map { Array(batch.row($0)) }, expected.ids)
            XCTAssertEqual(batch.attentionMask, expected.mask.flatMap { $0 })
            XCTAssertEqual(batch.lengths, expected.mask.map { $0.reduce(0, +) })
        }
    }

    /// Named behaviours, so a regression says which rule broke.
    func testRulesOneByOne() throws {
        let t = try WordPieceTokenizer.load(vocabTxt: textFixtures.appendingPathComponent("minilm_vocab.txt"))
        func tokens(_ s: String) -> [String] {
            let inverse = Dictionary(uniqueKeysWithValues: t.vocabulary.ids.map { (String(decoding: $0.key, as: UTF8.self), $0.value) }.map { ($1, $0) })
            return t.tokenize(s).map { inverse[$0]! }
        }
        XCTAssertEqual(tokens("Café NAÏVE"), ["cafe", "naive"])                       // accents stripped, lower-cased
        XCTAssertEqual(tokens("hello,world!!"), ["hello", ",", "world", "!", "!"])    // punctuation split per character
        XCTAssertEqual(tokens("中文"), ["中", "文"])                                    // CJK one per character
        XCTAssertEqual(tokens(String(repeating: "a", count: 101)), ["[UNK]"])          // over 100 characters
        XCTAssertEqual(tokens("[MASK] [mask]"), ["[MASK]", "[", "mask", "]"])          // special tokens only verbatim
        XCTAssertEqual(tokens("a\u{0}b\u{200B}c"), ["abc"])                             // controls and format chars dropped
        let e = t.encode(String(repeating: "dog ", count: 100))
        XCTAssertTrue(e.truncated)
        XCTAssertEqual(e.ids.count, 77)
        XCTAssertEqual(e.ids.first, 101); XCTAssertEqual(e.ids.last, 102)
        XCTAssertEqual(t.encode("").ids, [101, 102])
        XCTAssertFalse(t.encode("dog").truncated)
        // The GPT-2 pattern's whitespace rule: a run keeps its last space for the word after it.
        let pieces = ByteLevelBPETokenizer.preTokenize(Array("a   b  \n".unicodeScalars)[...]).map { string($0) }
        XCTAssertEqual(pieces, ["a", "  ", " b", "  \n"])
        XCTAssertEqual(ByteLevelBPETokenizer.preTokenize(Array("I'll don't 'S".unicodeScalars)[...]).map { string($0) },
                       ["I", "'ll", " don", "'t", " '", "S"])
        XCTAssertEqual(ByteLevelBPETokenizer.byteToUnicode[32], "Ġ")
        XCTAssertEqual(Set(ByteLevelBPETokenizer.byteToUnicode).count, 256)
    }

    func testBadFilesAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-text-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try TokenizerFiles.load(folder: dir)) { XCTAssertTrue("\($0)".contains("no tokenizer.json"), "\($0)") }
        let vocab = dir.appendingPathComponent("vocab.txt")
        try "[PAD]\n[UNK]\nhello\n".write(to: vocab, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try WordPieceTokenizer.load(vocabTxt: vocab)) { XCTAssertTrue("\($0)".contains("no [CLS] token"), "\($0)") }
        let v = dir.appendingPathComponent("vocab.json"), m = dir.appendingPathComponent("merges.txt")
        try #"{"<s>":0,"<pad>":1,"</s>":2,"a":3,"b":4}"#.write(to: v, atomically: true, encoding: .utf8)
        try "#version: 0.2\na b\n".write(to: m, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ByteLevelBPETokenizer.load(vocabJSON: v, merges: m)) { XCTAssertTrue("\($0)".contains("'ab' is not in the vocabulary"), "\($0)") }
    }
}
