import Engine
import Foundation
import Models
import NN
import Text

extension CLAP {
    /// The text side as an ONNX model: the text tower, its pooling, the text projection and the unit
    /// vector t = P_t(pool) / max(‖P_t(pool)‖, 1e-12), so a runtime embeds free text for search against the
    /// audio embeddings of `earshot export` (a CLAP classifier's `embedding`, normalised, or a zero-shot
    /// export's). Inputs `input_ids` and `attention_mask` [batch, tokens] (int64), as this CLAP's tokenizer
    /// gives them (the metadata names it and its limits); output `text_embedding` [batch, projection].
    /// logits_per_audio = exp(s_a) · a tᵀ with the scale in the metadata.
    /// `withMetadata` false leaves the metadata (written last) out: what the fixture hashes.
    public func textONNX(withMetadata: Bool = true) throws -> Data {
        let g = ONNXGraph()
        let (ids, mask) = ("input_ids", "attention_mask")
        g.int64Inputs = [ids, mask]
        let pooled = try g.bertText(model.textModel, ids: ids, mask: mask, pooling: model.textPooling, key: "text_model.")
        let projection = model.textProjection
        let e = try g.linear(g.node("Relu", [try g.linear(pooled, projection.linear1, key: "text_projection.linear1")]), projection.linear2,
                             key: "text_projection.linear2")
        let norm = g.node("Max", [g.node("Sqrt", [g.node("ReduceSumSquare", [e], [.ints("axes", [-1]), .int("keepdims", 1)])]), g.scalar(1e-12)])
        g.output(g.node("Div", [e, norm]), as: "text_embedding")
        let c = model.textConfig
        let meta = ["architecture": "clap-text",
                    "input": "input_ids and attention_mask [batch, tokens] (int64): this CLAP's tokenizer's, with its template tokens, "
                        + "right-padded with \(tokenizer.padID), at most \(tokenizer.maxLength) tokens (the tower has \(c.maxTokens) positions)",
                    "tokenizer": "\(type(of: tokenizer)), \(tokenizer.vocabularySize) ids, pad id \(tokenizer.padID), max length \(tokenizer.maxLength)",
                    "text_pooling": model.textPooling.rawValue,
                    "logit_scale_a": String(Foundation.exp(try model.logitScaleA.item())),
                    "logit_scale_t": String(Foundation.exp(try model.logitScaleT.item())),
                    "scores": "text_embedding is unit length: cosine similarity with a unit audio embedding is their dot product; "
                        + "logits_per_audio = logit_scale_a · a tᵀ"]
        return g.model(name: "clap-text", inputs: [(ids, [.named("batch"), .named("tokens")]), (mask, [.named("batch"), .named("tokens")])],
                       outputs: [("text_embedding", [.named("batch"), .fixed(model.projectionDim)])], metadata: withMetadata ? meta : [:])
    }
}
