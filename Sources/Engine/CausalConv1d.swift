/// Causal depthwise 1-d convolution in token-major layout: Mamba's `conv1d(x)[..., :L]` with
/// groups = channels, padding k − 1 and a bias, on x [B, L, C] instead of [B, C, L]:
///
///     y[b, t, c] = bias[c] + Σ_{j<k} w[c, j] · x[b, t − (k−1) + j, c]      (x = 0 before t = 0)
///
/// With `reverse` it is the causal convolution of the reversed sequence, written back at each token:
/// y[b, t, c] = bias[c] + Σ_j w[c, j] · x[b, t + (k−1) − j, c] (x = 0 past L − 1), i.e.
/// flip(conv(flip(x))) without the flips. Both are y[t] = bias + Σ_j w[j] x[t + o_j] with tap offset
/// o_j = ∓(k−1−j), so dx[t] = Σ_j w[j] g[t − o_j] and dw[j] = Σ_t g[t] x[t + o_j].
///
/// Each token's row of C channels is one SIMD pass per tap. The general conv1d (im2col + a GEMM per
/// group) would need two transposes and C one-row GEMMs here; this kernel is memory-bound instead.
enum CausalConvKernel {
    struct Problem {
        let batch, length, channels, taps: Int
        let reverse: Bool
        /// Offset of the input token read by tap j for the output at token t.
        @inline(always) func offset(_ j: Int) -> Int { reverse ? taps - 1 - j : j - (taps - 1) }
    }

    /// dst[0..<n] += w[0..<n] ⊙ src[0..<n].
    @inline(always) static func addProduct(_ dst: UnsafeMutablePointer<Float>, _ w: UnsafePointer<Float>,
                                           _ src: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            let a = UnsafeRawPointer(w + i).loadUnaligned(as: V8.self), b = UnsafeRawPointer(src + i).loadUnaligned(as: V8.self)
            let c = UnsafeRawPointer(dst + i).loadUnaligned(as: V8.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: VMath.fma(a, b, c), as: V8.self)
            i += 8
        }
        while i < n { dst[i] += w[i] * src[i]; i += 1 }
    }

    /// `wT` is the weight transposed to [k, C] so a tap's weights are contiguous. With `silu`, each
    /// output row goes through SiLU while it is still in L1 (Mamba's `causal_conv1d_fn(activation="silu")`).
    /// `context` ([B, k − 1, C]) holds the k − 1 tokens that a tap reads outside the sequence: tokens
    /// −(k−1)…−1 forwards, L…L+k−2 with `reverse` (zeros without it).
    static func forward(_ p: Problem, x: UnsafePointer<Float>, wT: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        out: UnsafeMutablePointer<Float>, silu: Bool = false, context: UnsafePointer<Float>? = nil) {
        let c = p.channels, len = p.length, k = p.taps
        parallelFor(p.batch * len, costPerItem: c * p.taps) { rows in
            for row in rows {
                let t = row % len, dst = out + row * c
                if let bias { dst.update(from: bias, count: c) } else { dst.update(repeating: 0, count: c) }
                for j in 0..<k {
                    let s = t + p.offset(j)
                    if s >= 0 && s < len {
                        addProduct(dst, wT + j * c, x + (row - t + s) * c, c)
                    } else if let context {
                        let item = row / len, i = p.reverse ? s - len : s + (k - 1)
                        addProduct(dst, wT + j * c, context + (item * (k - 1) + i) * c, c)
                    }
                }
                if silu { VMath.apply(SiLUFunction.self, dst, dst, c) }
            }
        }
    }

    /// The gradient at the pre-activation of a fused SiLU: g ⊙ SiLU′(pre), with pre recomputed from x
    /// row by row (4 FMAs a value) rather than kept from the forward.
    static func siluGradient(_ p: Problem, x: UnsafePointer<Float>, wT: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                             grad: UnsafePointer<Float>, into gPre: UnsafeMutablePointer<Float>) {
        forward(p, x: x, wT: wT, bias: bias, out: gPre)
        let c = p.channels
        parallelFor(p.batch * p.length, costPerItem: c * 8) { rows in
            for row in rows { VMath.apply2(SiLUBackward.self, grad + row * c, gPre + row * c, gPre + row * c, c) }
        }
    }

    /// dx from g (the flipped taps); dw [k, C] (transposed) and dBias from per-part partial sums.
    static func backward(_ p: Problem, x: UnsafePointer<Float>, wT: UnsafePointer<Float>, grad: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>, dwT: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>) {
        let c = p.channels, len = p.length, rows = p.batch * len, k = p.taps
        parallelFor(rows, costPerItem: c * k) { range in
            for row in range {
                let t = row % len, dst = dx + row * c
                dst.update(repeating: 0, count: c)
                for j in 0..<k {
                    let s = t - p.offset(j)
                    if s >= 0 && s < len { addProduct(dst, wT + j * c, grad + (row - t + s) * c, c) }
                }
            }
        }
        // Weight and bias gradients sum over every token: contiguous row ranges, one partial each.
        let parts = Swift.max(1, Swift.min(Threading.threads, rows / 64)), span = (k + 1) * c
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: parts * span)
        partials.initialize(repeating: 0, count: parts * span)
        defer { partials.deallocate() }
        AttentionKernel.parallelTasks(parts) { part in
            let mine = partials + part * span
            for row in (rows * part / parts)..<(rows * (part + 1) / parts) {
                let t = row % len, g = grad + row * c
                AttentionKernel.addRow(mine + k * c, g, c, times: 1)
                for j in 0..<k {
                    let s = t + p.offset(j)
                    if s >= 0 && s < len { addProduct(mine + j * c, g, x + (row - t + s) * c, c) }
                }
            }
        }
        dwT.update(from: partials, count: k * c)
        dBias.update(from: partials + k * c, count: c)
        for part in 1..<parts {
            AttentionKernel.addRow(dwT, partials + part * span, k * c, times: 1)
            AttentionKernel.addRow(dBias, partials + part * span + k * c, c, times: 1)
        }
    }
}

extension Tensor {
    /// Causal depthwise convolution of x [B, L, C] (token-major) with weight [C, 1, k] or [C, k] and an
    /// optional bias [C]: Mamba's `conv1d(x.transpose(1, 2))[..., :L].transpose(1, 2)`. With `reverse`,
    /// the same convolution of the reversed sequence, read and written in place (flip∘conv∘flip). With
    /// `silu`, SiLU of that (Mamba's `causal_conv1d_fn(..., activation="silu")`) in the same pass, and
    /// no pre-activation kept for the backward.
    ///
    /// `context` (inference only) is [B, k − 1, C]: the k − 1 tokens before this piece in scan order
    /// (forwards the ones before its first token, in token order; with `reverse` the ones after its
    /// last), read where the sequence would be zero-padded. A long sequence convolved piece by piece,
    /// each given its neighbour's edge tokens (zeros past the sequence's own ends), equals one
    /// convolution of the whole.
    public func causalDepthwiseConv1d(weight: Tensor, bias: Tensor? = nil, reverse: Bool = false, silu: Bool = false,
                                      context: Tensor? = nil) throws -> Tensor {
        try check(rank == 3, "causalDepthwiseConv1d: input must be [B, L, C], got \(shape)")
        let (batch, len, c) = (shape[0], shape[1], shape[2])
        try check((weight.rank == 3 && weight.shape[1] == 1 || weight.rank == 2) && weight.shape[0] == c,
                  "causalDepthwiseConv1d: weight must be [\(c), 1, k] or [\(c), k], got \(weight.shape)")
        if let bias { try check(bias.shape == [c], "causalDepthwiseConv1d: bias must be [\(c)], got \(bias.shape)") }
        let k = weight.shape[weight.rank - 1]
        try check(k > 0, "causalDepthwiseConv1d: empty kernel")
        if let context {
            try check(context.shape == [batch, k - 1, c],
                      "causalDepthwiseConv1d: context must be [B, k − 1, C] = \([batch, k - 1, c]), got \(context.shape)")
            let recording = GradMode.isEnabled && (requiresGrad || weight.requiresGrad || bias?.requiresGrad == true || context.requiresGrad)
            try check(!recording, "causalDepthwiseConv1d: context is for inference (no autograd recording)")
        }
        let p = CausalConvKernel.Problem(batch: batch, length: len, channels: c, taps: k, reverse: reverse)
        let wT = Tensor.empty([k, c])
        for ch in 0..<c { for j in 0..<k { wT.data[j * c + ch] = weight.data[ch * k + j] } }
        let out = Tensor.empty(shape)
        CausalConvKernel.forward(p, x: data, wT: wT.data, bias: bias?.data, out: out.data, silu: silu,
                                 context: context.flatMap { k > 1 ? UnsafePointer($0.data) : nil })
        let x = self
        return out.recording([x, weight] + (bias.map { [$0] } ?? [])) { g in
            let dx = Tensor.empty(x.shape), dwT = Tensor.empty([k, c]), dBias = Tensor.empty([c])
            var gPre = g
            if silu {
                gPre = Tensor.empty(x.shape)
                CausalConvKernel.siluGradient(p, x: x.data, wT: wT.data, bias: bias?.data, grad: g.data, into: gPre.data)
            }
            CausalConvKernel.backward(p, x: x.data, wT: wT.data, grad: gPre.data, dx: dx.data, dwT: dwT.data, dBias: dBias.data)
            let dw = Tensor.empty(weight.shape)
            for ch in 0..<c { for j in 0..<k { dw.data[ch * k + j] = dwT.data[j * c + ch] } }
            return bias == nil ? [dx, dw] : [dx, dw, dBias]
        }
    }
}
