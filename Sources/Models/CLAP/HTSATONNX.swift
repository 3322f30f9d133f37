import Engine
import NN

/// HTSAT (CLAP's audio tower, unfused) as ONNX nodes, the ops of `HTSAT.embedding` at inference on
/// features of exactly `config.frames` frames: bn0 over the mel bins; the bicubic stretch to the image's
/// frames as one MatMul with the constant [spec·r, frames] matrix the engine's own interpolation gives
/// (so the graph stretches exactly as Earshot does); the fold of r time chunks along frequency; the patch
/// Conv and norm; per Swin block a Gather into window order, the window attention (query, key and value
/// layers, the relative-position bias and, shifted, the window mask as constants), a Gather back and
/// the MLP; patch merging as Reshape/Transpose, LayerNorm and the reduction; the final norm and the
/// mean over tokens.
extension HTSAT {
    /// Appends the tower on `features` [batch, frames, mels] and returns the pooled embedding [batch, width].
    public func writeONNX(_ g: ONNXGraph, features: String, key prefix: String) throws -> String {
        let c = config
        guard !c.fusion else { throw ModelError("ONNX export: a fused HTSAT (four views a clip) is not written") }
        let perMel = g.batchNorm(g.node("Transpose", [features], [.ints("perm", [0, 2, 1])]), batchNorm, key: prefix + "batch_norm")
        var x = g.node("Transpose", [perMel], [.ints("perm", [0, 2, 1])])   // [B, T, F]
        if c.frames < c.specWidth {
            // The stretch along time is linear: its matrix is the interpolation of the identity.
            let identity = Tensor.zeros([1, 1, c.frames, c.frames])
            for i in 0..<c.frames { identity.data[i * c.frames + i] = 1 }
            let stretch = try identity.interpolate(size: (c.specWidth, c.frames), mode: .bicubic, alignCorners: true).reshape([c.specWidth, c.frames])
            x = g.node("MatMul", [g.weight(stretch, name: prefix + "time_stretch"), x])
        }
        let (r, chunk, f) = (c.freqRatio, c.specWidth / c.freqRatio, c.melBins)
        let folded = g.node("Transpose", [g.node("Reshape", [x, g.int64s([-1, r, chunk, f])])], [.ints("perm", [0, 1, 3, 2])])
        let image = g.node("Reshape", [folded, g.int64s([-1, 1, r * f, chunk])])
        var h = g.node("Transpose", [g.node("Reshape", [g.conv2d(image, patchEmbed.proj, key: prefix + "patch_embed.proj"), g.int64s([0, c.patchDim, -1])])],
                       [.ints("perm", [0, 2, 1])])
        if let norm = patchEmbed.norm { h = g.layerNorm(h, norm, key: prefix + "patch_embed.norm", width: c.patchDim) }
        for (s, stage) in layers.enumerated() {
            let width = c.patchDim << s
            for (b, block) in stage.blocks.enumerated() {
                guard type(of: block) == SwinLayer.self || block is AdaptedSwinLayer else {
                    throw ModelError("ONNX export: \(prefix)layers.\(s).blocks.\(b) is a \(type(of: block)), which has no ONNX writer")
                }
                h = try g.swinBlock(h, block, key: prefix + "layers.\(s).blocks.\(b)", width: width)
            }
            if let merge = stage.downsample {
                let blocks = g.node("Transpose", [g.node("Reshape", [h, g.int64s([-1, stage.rows / 2, 2, stage.cols / 2, 2, width])])],
                                    [.ints("perm", [0, 1, 3, 4, 2, 5])])
                let quads = g.node("Reshape", [blocks, g.int64s([-1, stage.rows / 2 * stage.cols / 2, 4 * width])])
                h = try g.linear(g.layerNorm(quads, merge.norm, key: prefix + "layers.\(s).downsample.norm", width: 4 * width),
                                 merge.reduction, key: prefix + "layers.\(s).downsample.reduction")
            }
        }
        h = g.layerNorm(h, norm, key: prefix + "norm", width: c.width)
        return g.node("ReduceMean", [h], [.ints("axes", [1]), .int("keepdims", 0)])
    }
}

extension ONNXGraph {
    /// One Swin block (`SwinLayer.callAsFunction`): h = x + Attend(LN₁ x), y = h + W₂ · GELU(W₁ · LN₂ h),
    /// with the adapters of an `AdaptedSwinLayer` wired beside them as in its `callAsFunction`.
    func swinBlock(_ x: String, _ block: SwinLayer, key: String, width d: Int) throws -> String {
        let u = layerNorm(x, block.layernormBefore, key: key + ".layernorm_before", width: d)
        let adapted = block as? AdaptedSwinLayer
        var echo: String? = nil
        let attended = try adapted?.attentionAdapter.map { adapter in
            let (out, adapterOut) = try wired(u, adapted!.wiring, adapter: adapter, key: key + ".attention_adapter") { try swinAttention($0, block, key: key, width: d) }
            if adapted!.echoesAttentionAdapter { echo = adapterOut }
            return out
        } ?? swinAttention(u, block, key: key, width: d)
        let h = node("Add", [x, attended])
        let n2 = layerNorm(h, block.layernormAfter, key: key + ".layernorm_after", width: d)
        func feedForward(_ v: String) throws -> String {
            try linear(gelu(try linear(v, block.intermediate.dense, key: key + ".intermediate.dense")), block.output.dense, key: key + ".output.dense")
        }
        var fed = try adapted?.mlpAdapter.map { try wired(n2, adapted!.wiring, adapter: $0, key: key + ".mlp_adapter", layer: feedForward).output } ?? feedForward(n2)
        if let echo { fed = node("Add", [fed, echo]) }
        return node("Add", [h, fed])
    }

    /// The (shifted) window attention and its output projection on normalised tokens u [B, L, D]: a Gather
    /// into window order, query, key and value layers, the relative-position bias and the window mask as
    /// constants, a Gather back.
    func swinAttention(_ u: String, _ block: SwinLayer, key: String, width d: Int) throws -> String {
        let attention = block.attention.selfAttention
        let (n, heads) = (block.window * block.window, attention.heads)
        let (tokens, dh) = (block.rows * block.cols, d / heads)
        let windows = node("Reshape", [node("Gather", [u, int64s(block.order)], [.int("axis", 1)]), int64s([-1, n, d])])   // [W, N, D]
        func split(_ layer: Linear, _ name: String) throws -> String {   // [W, H, N, dh]
            node("Transpose", [node("Reshape", [try linear(windows, layer, key: key + ".attention.self." + name), int64s([0, 0, heads, dh])])],
                 [.ints("perm", [0, 2, 1, 3])])
        }
        let q = node("Mul", [try split(attention.query, "query"), scalar(1 / Float(dh).squareRoot())])
        let k = node("Transpose", [try split(attention.key, "key")], [.ints("perm", [0, 1, 3, 2])])
        var scores = node("Add", [node("MatMul", [q, k]), weight(try attention.positionBias(), name: key + ".attention.self.position_bias")])
        if let mask = block.mask {
            let perItem = mask.shape[0]
            let grouped = node("Add", [node("Reshape", [scores, int64s([-1, perItem, heads, n, n])]), weight(mask, name: key + ".shift_mask")])
            scores = node("Reshape", [grouped, int64s([-1, heads, n, n])])
        }
        let mixed = node("MatMul", [node("Softmax", [scores], [.int("axis", -1)]), try split(attention.value, "value")])
        let joined = node("Reshape", [node("Transpose", [mixed], [.ints("perm", [0, 2, 1, 3])]), int64s([0, 0, d])])
        let attended = try linear(joined, block.attention.output.dense, key: key + ".attention.output.dense")
        return node("Gather", [node("Reshape", [attended, int64s([-1, tokens, d])]), int64s(block.inverse)], [.int("axis", 1)])
    }
}
