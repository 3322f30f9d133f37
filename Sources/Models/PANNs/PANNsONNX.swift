import Engine
import NN

/// PANNs (Cnn6/10/14, clip head or decision-level max) as ONNX, the ops of `PANNs.logitsAndEmbedding` at
/// inference: bn0 over the mel bins (features transposed to [B, M, T] and back), each block's convolutions
/// with their batch norms and ReLUs and its average pooling, the mean over frequency, then the clip head
/// (max + mean over time, fc1, ReLU, the head) or the decision-level one (max- and average-pooling over 3
/// steps, fc1 and the head per step, the maximum over steps; and a third output, `framewise` [batch, frames,
/// classes], the per-frame probabilities `PANNs.framewise` gives, for sound-event detection). Any number of frames, as the model takes.
extension PANNs: ONNXExportable {
    public func writeONNX(_ g: ONNXGraph, features: String) throws -> (logits: String, embedding: String) {
        let perMel = g.batchNorm(g.node("Transpose", [features], [.ints("perm", [0, 2, 1])]), trunk.bn0, key: "bn0")
        var x = g.node("Unsqueeze", [g.node("Transpose", [perMel], [.ints("perm", [0, 2, 1])]), g.int64s([1])])   // [B, 1, T, M]
        for (i, block) in trunk.blocks.enumerated() {
            for (j, (conv, bn)) in [(block.conv1, block.bn1), (block.conv2, block.bn2)].enumerated() {
                guard let conv, let bn else { continue }
                x = g.node("Relu", [g.batchNorm(g.conv2d(x, conv, key: "blocks.\(i).conv\(j + 1)"), bn, key: "blocks.\(i).bn\(j + 1)")])
            }
            if block.pool > 1 { x = g.node("AveragePool", [x], [.ints("kernel_shape", [block.pool, block.pool]), .ints("strides", [block.pool, block.pool])]) }
        }
        let timeMap = g.node("ReduceMean", [x], [.ints("axes", [3]), .int("keepdims", 0)])   // [B, C, T']
        let key = config.transferHead ? "fc_transfer" : "fc_audioset"
        guard config.decisionLevelMax else {
            let pooled = g.node("Add", [g.node("ReduceMax", [timeMap], [.ints("axes", [2]), .int("keepdims", 0)]),
                                        g.node("ReduceMean", [timeMap], [.ints("axes", [2]), .int("keepdims", 0)])])
            let h = g.node("Relu", [try g.linear(pooled, fc1, key: "fc1")])
            return (try g.linear(h, head, key: key), h)
        }
        let window: [ONNXGraph.Attribute] = [.ints("kernel_shape", [3]), .ints("strides", [1]), .ints("pads", [1, 1])]
        let smoothed = g.node("Add", [g.node("MaxPool", [timeMap], window),
                                      g.node("AveragePool", [timeMap], window + [.int("count_include_pad", 1)])])
        let steps = g.node("Relu", [try g.linear(g.node("Transpose", [smoothed], [.ints("perm", [0, 2, 1])]), fc1, key: "fc1")])   // [B, T', E]
        let stepLogits = try g.linear(steps, head, key: key)                                                             // [B, T', K]
        let logits = g.node("ReduceMax", [stepLogits], [.ints("axes", [1]), .int("keepdims", 0)])
        // `framewise`: frame f reads step min(f / timeRatio, T' − 1) (each step's sigmoid repeated over the
        // frames it spans, the frames past the last whole step given the last step's).
        let frames = g.node("Squeeze", [g.node("Shape", [features], [.int("start", 1), .int("end", 2)]), g.int64s([0])])
        let lastStep = g.node("Sub", [g.node("Squeeze", [g.node("Shape", [stepLogits], [.int("start", 1), .int("end", 2)]), g.int64s([0])]),
                                      g.int64s([1], dims: [])])
        let index = g.node("Min", [g.node("Div", [g.node("Range", [g.int64s([0], dims: []), frames, g.int64s([1], dims: [])]),
                                                  g.int64s([config.timeRatio], dims: [])]), lastStep])
        let framewise = g.node("Gather", [g.node("Sigmoid", [stepLogits]), index], [.int("axis", 1)])
        g.extraOutputs.append((name: "framewise", value: framewise, dims: [.named("batch"), .named("frames"), .fixed(outputs)]))
        return (logits, g.node("ReduceMean", [steps], [.ints("axes", [1]), .int("keepdims", 0)]))
    }
}
