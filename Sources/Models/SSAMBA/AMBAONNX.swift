import Engine
import NN

/// SSAMBA (`AMBA`) as ONNX, the ops of `AMBAEncoder.blocks` as Vim writes them: features [B, T, F] →
/// [B, 1, F, T] → patch Conv → [B, N, D]; the cls token expanded to the batch in front; positions added;
/// per layer pair (h_f, r_f) = L[2i](h, r) and (h_b, r_b) = L[2i+1](flip h, flip r) flipped back,
/// summed (with any adapter beside a mixer that a parameter-efficient run put there); norm_f twice on r + h; mean-token or cls pooling; the head's norm and linear layer. Each
/// mixer's selective scans are ONNX `Scan` loops (`ONNXGraph.selectiveScan`).
///
/// Like the model, the graph takes clips of any length from the trained frames up (a free frames axis): the
/// positions are resized along time to the clip's patch columns in the graph (Resize), as
/// `AMBAEncoder.positions` interpolates them.
extension AMBA: ONNXExportable {
    public func writeONNX(_ g: ONNXGraph, features: String) throws -> (logits: String, embedding: String) {
        let d = config.dim
        let (patches, tokens, batch) = g.patchTokens(features, v.patchEmbed.proj, width: d)
        let cls = g.node("Expand", [g.weight(v.clsToken, name: "v.cls_token"), g.node("Concat", [batch, g.int64s([1, d])], [.int("axis", 0)])])
        // Positions for the clip's patch columns t (the patch map's last axis): the trained grid resized along
        // time (bilinear, half-pixel: align_corners=False, as `AMBAEncoder.positions`; the identity at t = tGrid).
        let (fGrid, tGrid) = (config.fGrid, config.tGrid)
        let grid = try v.posEmbed.slice(axis: 1, start: 1).transpose(1, 2).reshape([1, d, fGrid, tGrid])
        let columns = g.node("Shape", [patches], [.int("start", 3), .int("end", 4)])
        let resized = g.node("Resize", [g.weight(grid, name: "v.pos_embed.grid"), "", "",
                                        g.node("Concat", [g.int64s([1, d, fGrid]), columns], [.int("axis", 0)])],
                             [.string("mode", "linear"), .string("coordinate_transformation_mode", "half_pixel")])
        let positions = g.node("Concat", [g.weight(try v.posEmbed.slice(axis: 1, start: 0, end: 1), name: "v.pos_embed.cls"),
                                          g.node("Transpose", [g.node("Reshape", [resized, g.int64s([1, d, -1])])], [.ints("perm", [0, 2, 1])])],
                               [.int("axis", 1)])
        var hidden = g.node("Add", [g.node("Concat", [cls, tokens], [.int("axis", 1)]), positions])
        var residual: String? = nil
        for i in stride(from: 0, to: v.layers.count - 1, by: 2) {
            let f = try g.vimBlock(hidden, residual: residual, v.layers[i], key: "v.layers.\(i)")
            let b = try g.vimBlock(g.flip(hidden), residual: residual.map { g.flip($0) }, v.layers[i + 1], key: "v.layers.\(i + 1)",
                                 flipped: true)
            (hidden, residual) = (g.node("Add", [f.hidden, g.flip(b.hidden)]), g.node("Add", [f.residual, g.flip(b.residual)]))
        }
        let last = residual.map { g.node("Add", [$0, hidden]) } ?? hidden
        let h = g.layerNorm(g.layerNorm(last, v.normF, key: "v.norm_f", width: d), v.normF, key: "v.norm_f", width: d)
        let embedding: String
        switch config.pooling {
        case .meanTokens:
            embedding = g.node("ReduceMean", [g.node("Slice", [h, g.int64s([1]), g.int64s([Int(Int32.max)]), g.int64s([1])])],
                               [.ints("axes", [1]), .int("keepdims", 0)])
        case .cls:
            embedding = g.node("Squeeze", [g.node("Slice", [h, g.int64s([0]), g.int64s([1]), g.int64s([1])]), g.int64s([1])])
        }
        return (try g.normLinearHead(embedding, mlpHead, width: d), embedding)
    }
}
