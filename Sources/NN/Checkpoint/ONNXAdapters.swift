import Engine
import Foundation

/// Parameter-efficient wrappers as ONNX nodes, so that a run fine-tuned with adapters, a mixture of
/// adapters or prefixes exports as it classifies: the same formulas as the modules' `callAsFunction`
/// (Bottleneck.swift, Conformer.swift, Mixture.swift, Prefix.swift), one node each. LoRA needs none
/// (a run merges it into plain layers when it loads); an unmerged `LoRALinear` is refused by `linear`.
extension ONNXGraph {
    /// An adapter module on tokens x [B, L, D]: a bottleneck, a conformer adapter, or a dense or soft
    /// mixture of bottlenecks; anything else is refused naming `key` and its type.
    public func adapter(_ x: String, _ layer: any UnaryLayer, key: String) throws -> String {
        switch layer {
        case let a as BottleneckAdapter:
            return try linear(gelu(try linear(x, a.down, key: key + ".down")), a.up, key: key + ".up")
        case let c as ConformerAdapter:
            return try conformerAdapter(x, c, key: key)
        case let m as DenseMixture:
            // y = Σₑ softmax(router(x))ₑ · expertₑ(x)
            let weights = node("Softmax", [try linear(x, m.router, key: key + ".router")], [.int("axis", -1)])
            var sum: String? = nil
            for (e, expert) in m.experts.enumerated() {
                let share = node("Slice", [weights, int64s([e]), int64s([e + 1]), int64s([-1])])
                let term = node("Mul", [try adapter(x, expert, key: key + ".experts.\(e)"), share])
                sum = sum.map { node("Add", [$0, term]) } ?? term
            }
            return sum!
        case let m as SoftMixture:
            return try softMixture(x, m, key: key)
        default:
            throw NNError("ONNX export: \(key) is a \(type(of: layer)), which has no ONNX writer")
        }
    }

    /// PETL_AST's conformer adapter: pw2(SiLU(BN(dw(GLU(pw1(xᵀ))))))ᵀ. With `batchStatisticsAlways` (the
    /// reference's quirk, the default) the batch norm normalises by the batch's own mean and biased
    /// variance over (batch, tokens) at inference too, so the graph computes them; else its running ones.
    func conformerAdapter(_ x: String, _ c: ConformerAdapter, key: String) throws -> String {
        let d = c.bn.weight.count
        let h = conv1d(node("Transpose", [x], [.ints("perm", [0, 2, 1])]), c.pw1, key: key + ".pw1")   // [B, 2d, L]
        let halves = nodes("Split", [h, int64s([d, d])], [.int("axis", 1)], outputs: 2)
        let glu = node("Mul", [halves[0], node("Sigmoid", [halves[1]])])
        let conv = conv1d(glu, c.dw, key: key + ".dw")
        let normed: String
        if c.batchStatisticsAlways {
            let mean = node("ReduceMean", [conv], [.ints("axes", [0, 2]), .int("keepdims", 1)])
            let centred = node("Sub", [conv, mean])
            let variance = node("ReduceMean", [node("Mul", [centred, centred])], [.ints("axes", [0, 2]), .int("keepdims", 1)])
            let unit = node("Div", [centred, node("Sqrt", [node("Add", [variance, scalar(c.bn.eps)])])])
            let shape = [1, d, 1]
            normed = node("Add", [node("Mul", [unit, weight(try c.bn.weight.reshape(shape), name: key + ".bn.weight")]),
                                  weight(try c.bn.bias.reshape(shape), name: key + ".bn.bias")])
        } else {
            normed = batchNorm(conv, c.bn, key: key + ".bn")
        }
        return node("Transpose", [conv1d(silu(normed), c.pw2, key: key + ".pw2")], [.ints("perm", [0, 2, 1])])
    }

    /// Soft-MoA (`SoftMixture`): logits = X Φ, dispatch softmax over tokens, combine softmax over slots,
    /// each expert on its slots, Y = combine · [expert outputs]. With `normalize`, X is L2-normalised
    /// per token in the graph and Φ (a constant) before it is written.
    func softMixture(_ input: String, _ m: SoftMixture, key: String) throws -> String {
        let (d, e, s) = (m.slotParams.shape[0], m.experts.count, m.slots)
        var x = input
        var phi = m.slotParams
        if let scale = m.scale {
            x = node("Div", [input, node("Add", [node("ReduceL2", [input], [.ints("axes", [2]), .int("keepdims", 1)]), scalar(1e-6)])])
            phi = try GradMode.noGrad { try SoftMixture.l2Normalized(m.slotParams, axis: 1) * scale }
        }
        let logits = node("MatMul", [x, weight(try phi.reshape([d, e * s]), name: key + ".slot_params")])   // [B, M, E·S]
        let dispatch = node("Softmax", [logits], [.int("axis", 1)]), combine = node("Softmax", [logits], [.int("axis", 2)])
        let slotInputs = node("MatMul", [node("Transpose", [dispatch], [.ints("perm", [0, 2, 1])]), x])     // [B, E·S, D]
        let outputs = try m.experts.enumerated().map { i, expert in
            try adapter(node("Slice", [slotInputs, int64s([i * s]), int64s([(i + 1) * s]), int64s([1])]), expert, key: key + ".experts.\(i)")
        }
        return node("MatMul", [combine, e == 1 ? outputs[0] : node("Concat", outputs, [.int("axis", 1)])])
    }

    /// `Conv1d` as Conv on [B, C, L].
    public func conv1d(_ x: String, _ layer: Conv1d, key: String) -> String {
        var inputs = [x, weight(layer.weight, name: key + ".weight")]
        if let bias = layer.bias { inputs.append(weight(bias, name: key + ".bias")) }
        return node("Conv", inputs, [.ints("kernel_shape", [layer.weight.shape[2]]), .ints("strides", [layer.stride]),
                                     .ints("pads", [layer.padding, layer.padding]), .ints("dilations", [layer.dilation]),
                                     .int("group", layer.groups)])
    }

    /// An adapter wired to the layer it adapts (`AdapterWiring`): parallel layer(x) + A(x); sequential
    /// A(layer(x)) [+ layer(x)]; before layer(A(x)) + A(x). Returns the output and, where parallel, the
    /// adapter's own output (what an `AdapterEcho` carries to the block's MLP).
    public func wired(_ x: String, _ wiring: AdapterWiring, adapter: any UnaryLayer, key: String,
               layer: (String) throws -> String) throws -> (output: String, adapterOutput: String?) {
        switch wiring.placement {
        case .before:
            let a = try self.adapter(x, adapter, key: key)
            return (node("Add", [try layer(a), a]), nil)
        case .parallel:
            let y = try layer(x), a = try self.adapter(x, adapter, key: key)
            return (node("Add", [y, a]), a)
        case .sequential:
            let y = try layer(x), a = try self.adapter(y, adapter, key: key)
            return (wiring.residual ? node("Add", [a, y]) : a, nil)
        }
    }

    /// The MLP's own layers: fc2(GELU(fc1 x)) (dropout is the identity at inference).
    func mlp(_ x: String, _ m: MLP, key: String) throws -> String {
        let hidden = try linear(x, m.fc1, key: key + ".fc1")
        return try linear(m.approximateGELU ? approximateGELU(hidden) : gelu(hidden), m.fc2, key: key + ".fc2")
    }

    /// Prefix tuning's attention: softmax(Q [Pₖ; K]ᵀ / √d_head) [Pᵥ; V] per head, then the projection.
    func prefixAttention(_ x: String, _ attn: PrefixAttention, key: String, width: Int) throws -> String {
        guard let qkv = attn.qkv else { throw NNError("\(key): ONNX export needs a fused qkv projection") }
        let heads = attn.heads, dh = width / heads, p = attn.prefixKey.shape[1]
        let parts = nodes("Split", [try linear(x, qkv, key: key + ".qkv"), int64s([width, width, width])], [.int("axis", 2)], outputs: 3)
        let batch = node("Shape", [x], [.int("start", 0), .int("end", 1)])
        let prefixShape = node("Concat", [batch, int64s([p, width])], [.int("axis", 0)])
        func split(_ t: String) -> String {   // [B, L, D] → [B, H, L, dh]
            node("Transpose", [node("Reshape", [t, int64s([0, -1, heads, dh])])], [.ints("perm", [0, 2, 1, 3])])
        }
        let q = split(parts[0])
        let k = split(node("Concat", [node("Expand", [weight(attn.prefixKey, name: key + ".prefix_key"), prefixShape]), parts[1]], [.int("axis", 1)]))
        let v = split(node("Concat", [node("Expand", [weight(attn.prefixValue, name: key + ".prefix_value"), prefixShape]), parts[2]], [.int("axis", 1)]))
        let scores = node("MatMul", [node("Mul", [q, scalar(1 / Float(dh).squareRoot())]), node("Transpose", [k], [.ints("perm", [0, 1, 3, 2])])])
        let mixed = node("MatMul", [node("Softmax", [scores], [.int("axis", -1)]), v])
        let joined = node("Reshape", [node("Transpose", [mixed], [.ints("perm", [0, 2, 1, 3])]), int64s([0, 0, width])])
        return try linear(joined, attn.proj, key: key + ".proj")
    }

    /// A pre-LN transformer block (`ViTBlock`), x + attn(LN₁ x), then + MLP(LN₂ ·), with whatever
    /// parameter-efficient wrappers it carries: adapters at the attention and the MLP (`AdaptedAttention`,
    /// `AdaptedMLP`), a mixture's echo (`EchoedMLP`), prefixes (`PrefixAttention`). Another layer type (an
    /// unmerged LoRA among them, by `linear`) is refused naming its key.
    public func transformerBlock(_ x: String, _ block: ViTBlock, key: String, width: Int) throws -> String {
        guard type(of: block) == ViTBlock.self, type(of: block.norm1) == LayerNorm.self, type(of: block.norm2) == LayerNorm.self else {
            throw NNError("ONNX export: \(key) is a \(type(of: block)) with norms \(type(of: block.norm1)), \(type(of: block.norm2)), which has no ONNX writer")
        }
        let n1 = layerNorm(x, block.norm1, key: key + ".norm1", width: width)
        var echo: String? = nil
        let attended: String
        switch block.attn {
        case let a as AdaptedAttention:
            let (out, adapterOut) = try wired(n1, a.wiring, adapter: a.adapter, key: key + ".attn.adapter") {
                try self.selfAttention($0, a, key: key + ".attn", width: width)
            }
            attended = out
            if a.wiring.echo != nil { echo = adapterOut }
        case let p as PrefixAttention:
            attended = try prefixAttention(n1, p, key: key + ".attn", width: width)
        case let a where type(of: a) == MultiHeadAttention.self:
            attended = try selfAttention(n1, a, key: key + ".attn", width: width)
        default:
            throw NNError("ONNX export: \(key).attn is a \(type(of: block.attn)), which has no ONNX writer")
        }
        let h = node("Add", [x, attended])
        let n2 = layerNorm(h, block.norm2, key: key + ".norm2", width: width)
        let fed: String
        switch block.mlp {
        case let m as AdaptedMLP:
            fed = try wired(n2, m.wiring, adapter: m.adapter, key: key + ".mlp.adapter") { try self.mlp($0, m, key: key + ".mlp") }.output
        case let m as EchoedMLP:
            guard let echo else { throw NNError("ONNX export: \(key).mlp echoes an attention adapter its block does not have") }
            fed = node("Add", [try mlp(n2, m, key: key + ".mlp"), echo])
        case let m where type(of: m) == MLP.self:
            fed = try mlp(n2, m, key: key + ".mlp")
        default:
            throw NNError("ONNX export: \(key).mlp is a \(type(of: block.mlp)), which has no ONNX writer")
        }
        return node("Add", [h, fed])
    }
}
