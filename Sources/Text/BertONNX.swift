import Engine
import NN

/// A BERT/RoBERTa text tower (`BertModel`) and its pooling as ONNX nodes, on `input_ids` and
/// `attention_mask` [batch, tokens] (int64, 1 for a token, 0 for padding, as Hugging Face tokenizers give
/// them). The same ops as `BertModel.callAsFunction` and `pool`:
///
///     positions  BERT 0, 1, 2, …; RoBERTa pad + cumsum(id ≠ pad) where id ≠ pad, else pad
///                (`create_position_ids_from_input_ids`: from the ids, not the mask)
///     h = LN(word[id] + position[p] + type[0])
///     per layer  h = LN(h + Wₒ · softmax(Q Kᵀ / √d + bias) V),  h = LN(h + W₂ · GELU(W₁ h))
///                with bias = (1 − mask) · float-min on the keys (the reference's additive mask)
///     pooling    pooler tanh(W h₀ + b), cls h₀, or mean Σ m h / max(Σ m, 1e-9)
extension ONNXGraph {
    /// Appends the tower on `ids` and `mask` and returns the pooled text vectors [batch, hidden].
    public func bertText(_ model: BertModel, ids: String, mask: String, pooling: TextPooling, key prefix: String) throws -> String {
        let c = model.config, d = c.hiddenSize, heads = c.heads, dh = d / heads
        let positions: String
        if c.robertaPositions {
            let pad = int64s([c.padTokenID], dims: [])
            let real = node("Cast", [node("Not", [node("Equal", [ids, pad])])], [.int("to", 7)])
            positions = node("Add", [node("Mul", [node("CumSum", [real, int64s([1], dims: [])]), real]), pad])
        } else {
            let length = node("Squeeze", [node("Shape", [ids], [.int("start", 1), .int("end", 2)]), int64s([0])])
            positions = node("Unsqueeze", [node("Range", [int64s([0], dims: []), length, int64s([1], dims: [])]), int64s([0])])
        }
        let e = model.embeddings
        let typeZero = try e.tokenTypeEmbeddings.weight.slice(axis: 0, start: 0, end: 1)
        let summed = node("Add", [node("Add", [node("Gather", [weight(e.wordEmbeddings.weight, name: prefix + "embeddings.word_embeddings.weight"), ids]),
                                               node("Gather", [weight(e.positionEmbeddings.weight, name: prefix + "embeddings.position_embeddings.weight"), positions])]),
                                  weight(typeZero, name: prefix + "embeddings.token_type_embeddings.weight")])
        var h = layerNorm(summed, e.layerNorm, key: prefix + "embeddings.LayerNorm", width: d)
        // [B, 1, 1, N]: 0 for a token, the float minimum for padding, added to every query's scores.
        let maskFloat = node("Cast", [mask], [.int("to", 1)])
        let keyBias = node("Unsqueeze", [node("Mul", [node("Sub", [scalar(1), maskFloat]), scalar(-Float.greatestFiniteMagnitude)]), int64s([1, 2])])
        for (i, layer) in model.encoder.layer.enumerated() {
            let key = prefix + "encoder.layer.\(i)"
            let a = layer.attention.selfAttention
            func split(_ l: Linear, _ name: String) throws -> String {   // [B, H, N, dh]
                node("Transpose", [node("Reshape", [try linear(h, l, key: key + ".attention.self." + name), int64s([0, 0, heads, dh])])],
                     [.ints("perm", [0, 2, 1, 3])])
            }
            let q = node("Mul", [try split(a.query, "query"), scalar(1 / Float(dh).squareRoot())])
            let scores = node("Add", [node("MatMul", [q, node("Transpose", [try split(a.key, "key")], [.ints("perm", [0, 1, 3, 2])])]), keyBias])
            let mixed = node("MatMul", [node("Softmax", [scores], [.int("axis", -1)]), try split(a.value, "value")])
            let joined = node("Reshape", [node("Transpose", [mixed], [.ints("perm", [0, 2, 1, 3])]), int64s([0, 0, d])])
            let out = layer.attention.output
            h = layerNorm(node("Add", [try linear(joined, out.dense, key: key + ".attention.output.dense"), h]), out.layerNorm,
                          key: key + ".attention.output.LayerNorm", width: d)
            let inner = try linear(h, layer.intermediate.dense, key: key + ".intermediate.dense")
            let activated = layer.approximateGELU ? approximateGELU(inner) : gelu(inner)
            h = layerNorm(node("Add", [try linear(activated, layer.output.dense, key: key + ".output.dense"), h]), layer.output.layerNorm,
                          key: key + ".output.LayerNorm", width: d)
        }
        let first = node("Squeeze", [node("Slice", [h, int64s([0]), int64s([1]), int64s([1])]), int64s([1])])
        switch pooling {
        case .cls: return first
        case .pooler:
            guard let pooler = model.pooler else { throw TextError("ONNX export: pooling .pooler asked of a text tower saved without pooler.dense") }
            return node("Tanh", [try linear(first, pooler.dense, key: prefix + "pooler.dense")])
        case .mean:
            let m = node("Unsqueeze", [maskFloat, int64s([2])])
            let total = node("ReduceSum", [node("Mul", [h, m]), int64s([1])], [.int("keepdims", 0)])
            let count = node("Max", [node("ReduceSum", [maskFloat, int64s([1])], [.int("keepdims", 1)]), scalar(1e-9)])
            return node("Div", [total, count])
        }
    }
}
