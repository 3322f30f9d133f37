import Engine
import NN

/// AST (and SSAST classifiers, which are ASTs) as ONNX: the same ops as `AST.callAsFunction`, one node
/// each, in opset 17: features [B, T, F] → [B, 1, F, T] → patch Conv → [B, N, D]; cls and distillation
/// tokens expanded to the batch and concatenated in front; positions added; the blocks
/// (`ONNXGraph.transformerBlock`, with any adapters, mixtures or prefixes a parameter-efficient run put
/// there) and, with prompt tuning, the prompts; the final norm; cls-pair or mean-token pooling; the head's
/// norm and linear layer.
extension AST: ONNXExportable {
    public func writeONNX(_ g: ONNXGraph, features: String) throws -> (logits: String, embedding: String) {
        let d = config.dim
        let (_, tokens, batch) = g.patchTokens(features, v.patchEmbed.proj, width: d)
        let prefixShape = g.node("Concat", [batch, g.int64s([1, d])], [.int("axis", 0)])
        let cls = g.node("Expand", [g.weight(v.clsToken, name: "v.cls_token"), prefixShape])
        let dist = g.node("Expand", [g.weight(v.distToken, name: "v.dist_token"), prefixShape])
        var h = g.node("Add", [g.node("Concat", [cls, dist, tokens], [.int("axis", 1)]), g.weight(v.posEmbed, name: "v.pos_embed")])
        func slice(_ x: String, _ start: Int, _ end: Int) -> String {
            g.node("Slice", [x, g.int64s([start]), g.int64s([end]), g.int64s([1])])
        }
        // Prompt tuning (`AST.transform`): the distillation token gives way to the prompts; a deep set
        // replaces the prompt slots before each block.
        if v.prompts != nil { h = g.node("Concat", [slice(h, 0, 1), slice(h, 2, Int(Int32.max))], [.int("axis", 1)]) }
        for (i, block) in v.blocks.enumerated() {
            if let prompts = v.prompts, i < prompts.sets.count {
                let set = prompts.sets[i].tokens
                let expanded = g.node("Expand", [g.weight(set, name: "v.prompts.sets.\(i).tokens"),
                                                 g.node("Concat", [batch, g.int64s([set.shape[1], d])], [.int("axis", 0)])])
                let rest = i == 0 ? 1 : 1 + set.shape[1]
                h = g.node("Concat", [slice(h, 0, 1), expanded, slice(h, rest, Int(Int32.max))], [.int("axis", 1)])
            }
            h = try g.transformerBlock(h, block, key: "v.blocks.\(i)", width: d)
        }
        h = g.layerNorm(h, v.norm, key: "v.norm", width: d)
        let embedding: String
        switch config.pooling {
        case .clsPair:
            embedding = g.node("Squeeze", [g.node("Mul", [g.node("Add", [slice(h, 0, 1), slice(h, 1, 2)]), g.scalar(0.5)]), g.int64s([1])])
        case .meanTokens:
            embedding = g.node("ReduceMean", [slice(h, v.prefixTokens, Int(Int32.max))], [.ints("axes", [1]), .int("keepdims", 0)])
        }
        return (try g.normLinearHead(embedding, mlpHead, width: d), embedding)
    }
}
