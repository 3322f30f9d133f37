import Engine
import Foundation

/// Mamba layers as ONNX nodes. ONNX has no selective-scan op, so the recurrence is a `Scan` over the
/// tokens whose body is one step:
///
///     h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t x_t) B_tᵀ        (h [B, Din, N], h_{−1} = 0)
///     y_t = h_t C_t                                      ([B, Din, N] · [B, N, 1] → [B, Din, 1])
///
/// with exp(Δ A) and (Δ x) Bᵀ computed for all tokens before the loop ([B, L, Din, N] each: the body
/// is then two element-wise ops and a MatMul, which is what keeps a runtime's per-step overhead small;
/// 12.6 MB per tensor for SSAMBA-tiny's 513 tokens). D x, the gate SiLU(z), the backward branch and the
/// reversed layers of a Vim pair are ordinary nodes; the reversed pieces run on explicit flips
/// (Slice with step −1), as Vim's code writes them, where Earshot's kernels read in place.
extension ONNXGraph {
    /// x reversed along `axis` (Slice from the end to the start, step −1).
    public func flip(_ x: String, axis: Int = 1) -> String {
        node("Slice", [x, int64s([-1]), int64s([Int(Int64.min)]), int64s([axis]), int64s([-1])])
    }

    /// SiLU, x · σ(x).
    public func silu(_ x: String) -> String { node("Mul", [x, node("Sigmoid", [x])]) }

    /// The depthwise causal convolution (`CausalConv1d`) on token-major x [B, L, C]: Conv with groups C
    /// and k − 1 zeros in front, so output t reads inputs t − k + 1 … t.
    public func causalConv1d(_ x: String, _ layer: CausalConv1d, key: String) -> String {
        let k = layer.weight.shape[2], c = layer.weight.shape[0]
        var inputs = [node("Transpose", [x], [.ints("perm", [0, 2, 1])]), weight(layer.weight, name: key + ".weight")]
        if let bias = layer.bias { inputs.append(weight(bias, name: key + ".bias")) }
        let y = node("Conv", inputs, [.ints("kernel_shape", [k]), .ints("pads", [k - 1, 0]), .int("group", c)])
        return node("Transpose", [y], [.ints("perm", [0, 2, 1])])
    }

    /// `Tensor.selectiveScan` with softplus on Δ + bias, D and the SiLU(z) gate, in token order:
    /// x, δ, z [B, L, Din], b and c [B, L, N], a = −exp(A_log) [Din, N] → [B, L, Din].
    public func selectiveScan(x: String, delta: String, a: Tensor, b: String, c: String, d: Tensor, z: String,
                              deltaBias: Tensor?, key: String) -> String {
        let (channels, states) = (a.shape[0], a.shape[1])
        let biased = deltaBias.map { node("Add", [delta, weight($0, name: key + ".dt_proj.bias")]) } ?? delta
        let dt = node("Softplus", [biased])
        let last = int64s([-1])
        let decay = node("Exp", [node("Mul", [node("Unsqueeze", [dt, last]), weight(a, name: key + ".A")])])       // [B, L, Din, N]
        let drive = node("Mul", [node("Unsqueeze", [node("Mul", [dt, x]), last]), node("Unsqueeze", [b, int64s([2])])])
        let readout = node("Unsqueeze", [c, last])                                                               // [B, L, N, 1]
        let batch = node("Shape", [x], [.int("start", 0), .int("end", 1)])
        let h0 = node("ConstantOfShape", [node("Concat", [batch, int64s([channels, states])], [.int("axis", 0)])])

        let body = subgraph("scan_step")
        let (h, decayT, driveT, readoutT) = (body.input("h"), body.input("decay"), body.input("drive"), body.input("readout"))
        let hNext = body.node("Add", [body.node("Mul", [decayT, h]), driveT])
        let yT = body.node("MatMul", [hNext, readoutT])
        let state: [ONNXGraph.Dimension] = [.named("batch"), .fixed(channels), .fixed(states)]
        let bodyGraph = body.graph(name: key + ".scan_step",
                                   inputs: [(h, state), (decayT, state), (driveT, state), (readoutT, [.named("batch"), .fixed(states), .fixed(1)])],
                                   outputs: [(hNext, state), (yT, [.named("batch"), .fixed(channels), .fixed(1)])])
        let outs = nodes("Scan", [h0, decay, drive, readout],
                         [.graph("body", bodyGraph), .int("num_scan_inputs", 3), .ints("scan_input_axes", [1, 1, 1]), .ints("scan_output_axes", [1])],
                         outputs: 2, name: "scan")
        let y = node("Squeeze", [outs[1], last])                                                                 // [B, L, Din]
        let skip = node("Add", [y, node("Mul", [x, weight(d, name: key + ".D")])])
        return node("Mul", [skip, silu(z)])
    }

    /// One branch of a Mamba mixer on x and z [B, L, Din] in token order: conv, SiLU, x_proj split into
    /// (dt, B, C), dt_proj's weight, the scan.
    func mambaBranch(x: String, z: String, conv: CausalConv1d, xProj: Linear, dtProj: Linear, aLog: Tensor, d: Tensor,
                     config: MambaConfig, key: String, suffix: String) throws -> String {
        let xc = silu(causalConv1d(x, conv, key: key + ".conv1d" + suffix))
        let parts = nodes("Split", [try linear(xc, xProj, key: key + ".x_proj" + suffix), int64s([config.dtRank, config.stateSize, config.stateSize])],
                          [.int("axis", 2)], outputs: 3)
        let delta = node("MatMul", [parts[0], weight(try dtProj.weight.transpose(0, 1), name: key + ".dt_proj" + suffix + ".weight")])
        let a = try GradMode.noGrad { try aLog.exp() * -1 }
        return selectiveScan(x: xc, delta: delta, a: a, b: parts[1], c: parts[2], d: d, z: z, deltaBias: dtProj.bias, key: key + suffix)
    }

    /// `MambaMixer` on u [B, L, D]: in_proj split into x and z; the forward branch; with a backward
    /// branch, the same on the flipped x and z, flipped back; out_proj((y_f + y_b) / 2).
    public func mambaMixer(_ u: String, _ mixer: MambaMixer, key: String) throws -> String {
        let c = mixer.config
        let xz = nodes("Split", [try linear(u, mixer.inProj, key: key + ".in_proj"), int64s([c.inner, c.inner])], [.int("axis", 2)], outputs: 2)
        let forward = try mambaBranch(x: xz[0], z: xz[1], conv: mixer.conv1d, xProj: mixer.xProj, dtProj: mixer.dtProj, aLog: mixer.aLog,
                                      d: mixer.d, config: c, key: key, suffix: "")
        guard let conv1dB = mixer.conv1dB, let xProjB = mixer.xProjB, let dtProjB = mixer.dtProjB, let aBLog = mixer.aBLog, let dB = mixer.dB else {
            return try linear(forward, mixer.outProj, key: key + ".out_proj")
        }
        let backward = flip(try mambaBranch(x: flip(xz[0]), z: flip(xz[1]), conv: conv1dB, xProj: xProjB, dtProj: dtProjB, aLog: aBLog,
                                            d: dB, config: c, key: key, suffix: "_b"))
        return try linear(node("Mul", [node("Add", [forward, backward]), scalar(0.5)]), mixer.outProj, key: key + ".out_proj")
    }

    /// A Vim layer (`VimBlock`) at inference: r = residual + hidden (hidden alone in the first layer),
    /// hidden = mixer(norm(r)), plus adapter(norm(r)) in an `AdaptedVimBlock`; returns (hidden, r).
    /// `flipped`: the layer runs on a flipped sequence (the second of a Vim pair, flipped back after), where
    /// Earshot's adapter reads the tokens in their own order: the adapter is given them unflipped (a
    /// conformer adapter's convolution is not symmetric in time).
    public func vimBlock(_ hidden: String, residual: String?, _ block: VimBlock, key: String, flipped: Bool = false) throws -> (hidden: String, residual: String) {
        guard type(of: block.norm) == LayerNorm.self, type(of: block.mixer) == MambaMixer.self,
              type(of: block) == VimBlock.self || block is AdaptedVimBlock else {
            throw NNError("ONNX export: \(key) is a \(type(of: block)) (norm \(type(of: block.norm)), mixer \(type(of: block.mixer))), which has no ONNX writer")
        }
        let r = residual.map { node("Add", [$0, hidden]) } ?? hidden
        let u = layerNorm(r, block.norm, key: key + ".norm", width: block.mixer.config.dim)
        let mixed = try mambaMixer(u, block.mixer, key: key + ".mixer")
        guard let adapted = block as? AdaptedVimBlock else { return (mixed, r) }
        let a = flipped ? flip(try adapter(flip(u), adapted.adapter, key: key + ".adapter")) : try adapter(u, adapted.adapter, key: key + ".adapter")
        return (node("Add", [mixed, a]), r)
    }
}
