import Engine

/// How a text encoder's token states become one vector per text.
public enum TextPooling: String, Sendable, Codable {
    /// Σⱼ mⱼ hⱼ / max(Σⱼ mⱼ, 1e-9) over the attention mask m (sentence-transformers' MeanPooling).
    case mean
    /// h₀, the [CLS] / <s> state.
    case cls
    /// tanh(W h₀ + b), the model's pooler (LAION-CLAP's RoBERTa text feature).
    case pooler
}

extension Tensor {
    /// Mean of `self` [B, N, D] over each row's first `lengths[b]` positions: Σⱼ mⱼ hⱼ / max(Σⱼ mⱼ, 1e-9),
    /// built from differentiable ops so a text tower trains through it. A row of length 0 gives zeros.
    public func maskedMean(lengths: [Int]) throws -> Tensor {
        guard rank == 3, lengths.count == shape[0] else { throw TextError("maskedMean: expected [B, N, D] with B lengths, got \(shape) and \(lengths.count)") }
        let (b, n) = (shape[0], shape[1])
        let mask = Tensor.zeros([b, n, 1]), counts = Tensor.zeros([b, 1])
        for i in 0..<b {
            for j in 0..<Swift.min(lengths[i], n) { mask.data[i * n + j] = 1 }
            counts.data[i] = Swift.max(Float(Swift.min(lengths[i], n)), 1e-9)
        }
        return try (self * mask).sum(axis: 1) / counts
    }
}

extension BertModel {
    /// One vector per text: [B, D].
    public func pool(_ hidden: Tensor, lengths: [Int], _ pooling: TextPooling) throws -> Tensor {
        switch pooling {
        case .mean: return try hidden.maskedMean(lengths: lengths)
        case .cls: return try hidden.slice(axis: 1, start: 0, end: 1).squeeze(1)
        case .pooler:
            guard let pooler else { throw TextError("text encoder: pooling .pooler asked of a checkpoint saved without pooler.dense") }
            return try pooler(hidden)
        }
    }
}
