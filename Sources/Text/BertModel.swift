import Engine
import NN

/// BERT's embeddings: LayerNorm(word[id] + position[p] + tokenType[0]), then dropout.
public final class BertEmbeddings: Module {
    public let wordEmbeddings: Embedding
    public let positionEmbeddings: Embedding
    public let tokenTypeEmbeddings: Embedding
    public let layerNorm: LayerNorm
    public let dropout: Dropout
    override public var keyOverrides: [String: String] { ["layerNorm": "LayerNorm"] }

    init(_ c: BertConfig) {
        wordEmbeddings = Embedding(c.vocabSize, c.hiddenSize)
        positionEmbeddings = Embedding(c.maxPositions, c.hiddenSize)
        tokenTypeEmbeddings = Embedding(c.typeVocabSize, c.hiddenSize)
        layerNorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        dropout = Dropout(c.hiddenDropout)
    }

    /// ids and positions are [B·N], row-major; every token has type 0 (single texts).
    func callAsFunction(ids: [Int], positions: [Int], batch: Int, length: Int) throws -> Tensor {
        let shape = [batch, length]
        let words = try wordEmbeddings(ids, shape: shape)
        let positions = try positionEmbeddings(positions, shape: shape)
        let types = try tokenTypeEmbeddings([0], shape: [1, 1])
        return try dropout(layerNorm(words + positions + types))
    }
}

/// Multi-head self-attention with Hugging Face's separate query/key/value projections, softmax over the
/// valid keys of each text only (right padding: keys past `keyLengths[b]` get zero probability, as
/// the reference's additive mask of the float minimum gives).
public final class BertSelfAttention: Module {
    @Child public private(set) var query: Linear
    @Child public private(set) var key: Linear
    @Child public private(set) var value: Linear
    public let heads: Int

    init(_ c: BertConfig) {
        query = Linear(c.hiddenSize, c.hiddenSize); key = Linear(c.hiddenSize, c.hiddenSize); value = Linear(c.hiddenSize, c.hiddenSize)
        heads = c.heads
    }

    /// x [B, N, D] → [B, N, D], heads concatenated (before the output projection).
    func callAsFunction(_ x: Tensor, keyLengths: [Int]) throws -> Tensor {
        let packed = try Linear.packedProjection(x, query: query, key: key, value: value)
        return try packed.packedSelfAttention(heads: heads, keyLengths: keyLengths)
    }
}

/// LayerNorm(dropout(dense(x)) + residual): BERT's post-LN sub-layer output (`attention.output`, `output`).
public final class BertResidualOutput: Module {
    @Child public private(set) var dense: Linear
    public let layerNorm: LayerNorm
    public let dropout: Dropout
    override public var keyOverrides: [String: String] { ["layerNorm": "LayerNorm"] }

    init(_ inFeatures: Int, _ c: BertConfig) {
        dense = Linear(inFeatures, c.hiddenSize)
        layerNorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        dropout = Dropout(c.hiddenDropout)
    }

    func callAsFunction(_ x: Tensor, residual: Tensor) throws -> Tensor {
        try layerNorm(dropout(dense(x)) + residual)
    }
}

public final class BertAttention: Module {
    public let selfAttention: BertSelfAttention
    public let output: BertResidualOutput
    override public var keyOverrides: [String: String] { ["selfAttention": "self"] }

    init(_ c: BertConfig) { selfAttention = BertSelfAttention(c); output = BertResidualOutput(c.hiddenSize, c) }
}

/// `intermediate.dense` (then GELU).
public final class BertIntermediate: Module {
    @Child public private(set) var dense: Linear
    init(_ c: BertConfig) { dense = Linear(c.hiddenSize, c.intermediateSize) }
}

/// One post-LN encoder layer:
/// h = LN(x + Wₒ·attn(x)), out = LN(h + W₂·GELU(W₁·h)).
public final class BertLayer: Module {
    public let attention: BertAttention
    public let intermediate: BertIntermediate
    public let output: BertResidualOutput
    let approximateGELU: Bool

    init(_ c: BertConfig) {
        attention = BertAttention(c); intermediate = BertIntermediate(c); output = BertResidualOutput(c.intermediateSize, c)
        approximateGELU = c.approximateGELU
    }

    func callAsFunction(_ x: Tensor, keyLengths: [Int]) throws -> Tensor {
        let h = try attention.output(attention.selfAttention(x, keyLengths: keyLengths), residual: x)
        return try output(intermediate.dense(h).gelu(approximate: approximateGELU), residual: h)
    }
}

public final class BertEncoder: Module {
    public let layer: [BertLayer]
    init(_ c: BertConfig) { layer = (0..<c.layers).map { _ in BertLayer(c) } }
}

/// tanh(dense(h₀)): the first token's state through a square projection (`pooler.dense`), what
/// LAION-CLAP takes from RoBERTa as the text feature.
public final class BertPooler: Module {
    @Child public private(set) var dense: Linear
    init(_ c: BertConfig) { dense = Linear(c.hiddenSize, c.hiddenSize) }

    func callAsFunction(_ hidden: Tensor) throws -> Tensor {
        try dense(hidden.slice(axis: 1, start: 0, end: 1).squeeze(1)).tanh()
    }
}

/// Hugging Face `BertModel` / `RobertaModel` (same keys: `embeddings.*`, `encoder.layer.{i}.*`,
/// `pooler.dense.*`), for right-padded batches of single texts.
public final class BertModel: Module {
    public let config: BertConfig
    public let embeddings: BertEmbeddings
    public let encoder: BertEncoder
    /// nil for checkpoints saved without one (`add_pooling_layer=False`).
    public let pooler: BertPooler?

    public init(_ config: BertConfig, pooler: Bool = true) {
        self.config = config
        embeddings = BertEmbeddings(config)
        encoder = BertEncoder(config)
        self.pooler = pooler ? BertPooler(config) : nil
    }

    /// The last hidden state [B, N, D] of a padded batch.
    public func callAsFunction(_ batch: TokenBatch) throws -> Tensor {
        try self(ids: batch.ids, batch: batch.batch, length: batch.length, lengths: batch.lengths)
    }

    /// `ids` [B·N] row-major, each row's first `lengths[b]` tokens valid (the rest padding).
    public func callAsFunction(ids: [Int], batch: Int, length: Int, lengths: [Int]) throws -> Tensor {
        guard batch > 0, length > 0 else { throw TextError("text encoder: an empty batch [\(batch), \(length)] (no texts?)") }
        guard ids.count == batch * length, lengths.count == batch else {
            throw TextError("text encoder: \(ids.count) ids and \(lengths.count) lengths for a [\(batch), \(length)] batch")
        }
        guard length <= config.maxTokens else {
            throw TextError("text encoder: \(length) tokens, more than the \(config.maxTokens) positions the model has (truncate with the tokenizer's maxLength)")
        }
        if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw TextError("text encoder: token id \(bad) is outside the vocabulary of \(config.vocabSize) (a tokenizer of another model?)")
        }
        if let bad = lengths.first(where: { $0 < 0 || $0 > length }) { throw TextError("text encoder: length \(bad) outside 0...\(length)") }
        var h = try embeddings(ids: ids, positions: positions(ids, batch: batch, length: length), batch: batch, length: length)
        for layer in encoder.layer { h = try layer(h, keyLengths: lengths) }
        return h
    }

    /// BERT: 0, 1, 2, …; RoBERTa: pad + 1 + (non-pad tokens so far) for a non-pad token, pad for a pad
    /// token (`create_position_ids_from_input_ids`, which looks at the ids, not the mask).
    func positions(_ ids: [Int], batch: Int, length: Int) -> [Int] {
        guard config.robertaPositions else { return (0..<batch).flatMap { _ in 0..<length } }
        let pad = config.padTokenID
        var out = [Int](repeating: pad, count: ids.count)
        for b in 0..<batch {
            var seen = 0
            for j in 0..<length where ids[b * length + j] != pad { seen += 1; out[b * length + j] = pad + seen }
        }
        return out
    }
}
