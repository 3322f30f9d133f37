import Engine

/// The bidirectional mixer without autograd, in pieces of `pieceTokens` tokens, with in_proj and
/// out_proj once per token. The two branches scan opposite ways, so no single pass over the pieces
/// can finish a token; the mixer makes two, each a streaming pass in its branch's scan order:
///
///     pass 1 (backward branch, its scan order):  x = in_proj_x(u)            kept per piece
///                                                 y_b = scan_b(conv_b(x))     kept per piece, ungated
///     pass 2 (forward branch, its scan order):   z = in_proj_z(u)
///                                                 g = (y_b + scan_f(conv_f(x)))·SiLU(z)
///                                                 out += out_proj(g)/2         piece by piece
///
/// using (y_f·s + y_b·s) = (y_f + y_b)·s for the gate s = SiLU(z). Each scan carries its state
/// from piece to piece and each conv its k − 1 edge inputs (`causalDepthwiseConv1d(context:)`),
/// so the result is the whole-sequence mixer's. Between the passes x and y_b are held, two
/// [B, L, d_inner] tensors, one piece at a time; Δ, B, C, the conv outputs and z exist only per
/// piece. With a `norm`, u is that norm of the input, formed per piece twice (a LayerNorm is cheap)
/// rather than held whole.
extension MambaMixer {
    /// mixer(norm(input)) (or mixer(input)) without autograd, in pieces; the result is added into
    /// `output` ([B, L, D]) when given and returned, else a new tensor.
    func mixStreaming(_ input: Tensor, norm: LayerNorm?, flipped: Bool, addingTo output: Tensor?) throws -> Tensor {
        try check(input.rank == 3 && input.shape[2] == config.dim, "MambaMixer: input must be [B, L, \(config.dim)], got \(input.shape)")
        let (batch, len, dim) = (input.shape[0], input.shape[1], input.shape[2])
        if let output { try check(output.shape == input.shape, "MambaMixer: output \(output.shape) does not match the input \(input.shape)") }
        let inner = config.inner
        let piece = Swift.max(MambaMixer.pieceTokens, 1)
        let starts = Array(stride(from: 0, to: len, by: piece))
        let w = inProj.weight
        let (wx, wz) = (try w.slice(axis: 0, start: 0, end: inner), try w.slice(axis: 0, start: inner))
        let bx = try inProj.bias?.slice(axis: 0, start: 0, end: inner), bz = try inProj.bias?.slice(axis: 0, start: inner)
        func bounds(_ j: Int) -> (Int, Int) { (starts[j], Swift.min(starts[j] + piece, len)) }
        func order(_ reverse: Bool) -> [Int] { reverse ? Array(starts.indices.reversed()) : Array(starts.indices) }
        func normalized(_ j: Int) throws -> Tensor {
            let (s, e) = bounds(j)
            let part = starts.count == 1 ? input : try input.slice(axis: 1, start: s, end: e)
            return try norm.map { try $0(part) } ?? part
        }
        var xs = [Tensor?](repeating: nil, count: starts.count), ys = xs
        if let conv1dB, let xProjB, let dtProjB, let aBLog, let dB {
            let run = BranchRun(self, conv: conv1dB, xProj: xProjB, dtProj: dtProjB, aLog: aBLog, d: dB, batch: batch, reverse: !flipped,
                                branch: "backward branch (conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b)")
            for j in order(!flipped) {
                let x = try normalized(j).linear(weight: wx, bias: bx)
                xs[j] = x
                ys[j] = try run.next(x, z: nil, addingTo: nil, tokens: bounds(j))
            }
        }
        let run = BranchRun(self, conv: conv1d, xProj: xProj, dtProj: dtProj, aLog: aLog, d: d, batch: batch, reverse: flipped,
                            branch: "forward branch (conv1d, x_proj, dt_proj, A_log, D)")
        // if_divide_out's halving folded into out_proj's (small) weight.
        let wOut = isBidirectional ? outProj.weight * 0.5 : outProj.weight
        let out = output ?? Tensor.empty([batch, len, dim])
        for j in order(flipped) {
            let u = try normalized(j)
            let x = try xs[j] ?? u.linear(weight: wx, bias: bx)
            let z = try u.linear(weight: wz, bias: bz)
            let g = try run.next(x, z: z, addingTo: ys[j], tokens: bounds(j))
            (xs[j], ys[j]) = (nil, nil)
            let o = try g.linear(weight: wOut, bias: nil)
            let (s, e) = bounds(j), rows = (e - s) * dim
            for item in 0..<batch {
                let src = o.data + item * rows, dst = out.data + (item * len + s) * dim
                if output == nil { dst.update(from: src, count: rows) } else { for i in 0..<rows { dst[i] += src[i] } }
            }
        }
        return out
    }
}

/// One branch of the mixer run piece by piece in its scan order: the scan's carried state and the
/// conv's k − 1 edge inputs pass from each piece to the next.
final class BranchRun {
    let conv: CausalConv1d, xProj: Linear, dtProj: Linear
    let a: Tensor, d: Tensor
    let reverse: Bool, branch: String
    let n: Int, rank: Int, k: Int
    let state: Tensor
    var context: Tensor

    init(_ mixer: MambaMixer, conv: CausalConv1d, xProj: Linear, dtProj: Linear, aLog: Tensor, d: Tensor, batch: Int,
         reverse: Bool, branch: String) {
        let c = mixer.config
        (self.conv, self.xProj, self.dtProj, self.d, self.reverse, self.branch) = (conv, xProj, dtProj, d, reverse, branch)
        (n, rank, k) = (c.stateSize, c.dtRank, c.convKernel)
        a = aLog.exp() * -1
        state = Tensor.zeros([Tensor.selectiveScanStateCount(batch: batch, channels: c.inner, states: c.stateSize)])
        context = Tensor.zeros([batch, c.convKernel - 1, c.inner])
    }

    /// The branch's scan output for the next piece x [B, l, d_inner] in scan order (gated by z, or
    /// ungated without it; see `Tensor.selectiveScan(gatingTheSum:)` for `addingTo`).
    func next(_ x: Tensor, z: Tensor?, addingTo sum: Tensor?, tokens: (Int, Int)) throws -> Tensor {
        let xc = try conv(x, reverse: reverse, silu: true, context: context)
        context = edge(after: x)
        let xdbl = try xProj(xc)
        let dt = try xdbl.slice(axis: 2, start: 0, end: rank)
        let b = try xdbl.slice(axis: 2, start: rank, end: rank + n), c = try xdbl.slice(axis: 2, start: rank + n)
        do {
            return try Tensor.selectiveScan(xc, delta: dt.linear(weight: dtProj.weight, bias: nil), a: a, b: b, c: c, d: d, z: z,
                                            deltaBias: dtProj.bias, deltaSoftplus: true, reverse: reverse, addingTo: sum,
                                            gatingTheSum: sum != nil, carrying: state)
        } catch let error as EngineError where error.message.hasPrefix("selectiveScan:") {
            throw NNError("MambaMixer \(branch): \(error.message) (tokens \(tokens.0)..<\(tokens.1))")
        }
    }

    /// The k − 1 inputs the conv reads before the following piece in scan order: the last k − 1 of
    /// (context, x) forwards, the first k − 1 of (x, context) in reverse (x may be shorter than k − 1).
    func edge(after x: Tensor) -> Tensor {
        let (batch, l, ch) = (x.shape[0], x.shape[1], x.shape[2]), m = k - 1
        let next = Tensor.empty([batch, m, ch])
        for item in 0..<batch {
            for i in 0..<m {
                // Position in the concatenation, then which part holds it.
                let src: UnsafeMutablePointer<Float>
                if reverse {
                    src = i < l ? x.data + (item * l + i) * ch : context.data + (item * m + i - l) * ch
                } else {
                    let p = l + i   // of (context, x), length m + l: the last m start at l
                    src = p < m ? context.data + (item * m + p) * ch : x.data + (item * l + p - m) * ch
                }
                (next.data + (item * m + i) * ch).update(from: src, count: ch)
            }
        }
        return next
    }
}

extension VimBlock {
    /// The block's hidden output mixer(norm(r)) without autograd (no residual sum, no drop path: what
    /// an inference pass over a Vim pair needs), added into `output` when given and returned. A stock
    /// mixer longer than `MambaMixer.piecesAbove` tokens streams in pieces with the norm applied per
    /// piece, so no normalised copy of r is held.
    public func inferenceMix(_ r: Tensor, flipped: Bool, addingTo output: Tensor?) throws -> Tensor {
        if !GradMode.isEnabled && mixer.streams && r.shape[1] > MambaMixer.piecesAbove {
            return try mixer.mixStreaming(r, norm: norm, flipped: flipped, addingTo: output)
        }
        let h = try mixer(norm(r), flipped: flipped)
        guard let output else { return h }
        try output.addInPlace(h)
        return output
    }
}

extension Tensor {
    /// self += other, elementwise in place (same shape; inference: nothing is recorded).
    public func addInPlace(_ other: Tensor) throws {
        try check(other.shape == shape, "addInPlace: shape \(other.shape) does not match \(shape)")
        let (dst, src) = (data, other.data)
        for i in 0..<count { dst[i] += src[i] }
    }
}
