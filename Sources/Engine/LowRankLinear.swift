import Foundation

/// One low-rank update of a linear layer's output columns: s · (x Dᵀ) Uᵀ added to `columns`, with the down
/// factor D [r, in] and the up factor U [columns.count, r] (a LoRA factor; a fused q/k/v projection adapts
/// its q and v thirds with one each).
public struct LowRankUpdate {
    public let down: Tensor, up: Tensor
    public let columns: Range<Int>

    public init(down: Tensor, up: Tensor, columns: Range<Int>) {
        self.down = down; self.up = up; self.columns = columns
    }
}

extension Tensor {
    /// y = x Wᵀ + b, then y[.., cₜ] += s · (x Dₜᵀ) Uₜᵀ for every update t, as one differentiable op (LoRA's
    /// training forward, loralib's W x + s · B A x).
    ///
    /// Composed from `linear`, `*` and a column add, the updates cost a full-width [rows, |cₜ|] tensor
    /// each, a pass to scale it, a copy of the product to add it into, and in the backward pass a slice of
    /// the gradient, a full-width input gradient per factor and the sums that join them. Here the rank-wide
    /// products h = x [D₁; D₂; ..]ᵀ run as one GEMM and the up products add into the base product's columns
    /// in place (GEMM with β = 1, α = s); backward, with g = ∂L/∂y and gₜ its columns cₜ:
    ///   ∂h   = [s · g₁ U₁, s · g₂ U₂, ..]       ∂x = g W + ∂h [D₁; D₂; ..]   (accumulated in place)
    ///   ∂Uₜ  = s · gₜᵀ hₜ                        ∂Dₜ = ∂hₜᵀ x
    ///   ∂W   = gᵀ x,  ∂b = Σ_rows g             (only where W and b train; LoRA freezes them)
    /// The frozen product's input gradient is `linear`'s own (the same GEMM route).
    public func linear(weight: Tensor, bias: Tensor?, lowRank updates: [LowRankUpdate], scale: Float) throws -> Tensor {
        try check(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
        let (outF, inF) = (weight.shape[0], weight.shape[1])
        try check(rank >= 1 && shape[rank - 1] == inF, "linear: input shape \(shape) does not end in \(inF) (weight \(weight.shape))")
        var offsets = [0]   // where each update's rank-wide columns start in h
        for u in updates {
            try check(u.down.rank == 2 && u.down.shape[1] == inF && u.down.shape[0] >= 1,
                      "linear: a low-rank down factor of shape \(u.down.shape) does not read \(inF) inputs")
            try check(u.columns.lowerBound >= 0 && u.columns.upperBound <= outF && !u.columns.isEmpty,
                      "linear: low-rank columns \(u.columns) outside the \(outF) outputs")
            try check(u.up.shape == [u.columns.count, u.down.shape[0]],
                      "linear: a low-rank up factor of shape \(u.up.shape), expected [\(u.columns.count), \(u.down.shape[0])]")
            offsets.append(offsets.last! + u.down.shape[0])
        }
        let rows = count / Swift.max(inF, 1)
        if updates.isEmpty || rows == 0 { return try linear(weight: weight, bias: bias) }
        let base = try GradMode.noGrad { try linear(weight: weight, bias: bias) }   // fresh: the updates add into it
        let x = self, width = offsets.last!
        // All down factors stacked [Σr, in], so x is read once for h [rows, Σr].
        let downs = Tensor.empty([width, inF])
        for (u, o) in zip(updates, offsets) { (downs.data + o * inF).update(from: u.down.data, count: u.down.count) }
        let h = Tensor.empty([rows, width])
        Kernels.gemm(transA: false, transB: true, m: rows, n: width, k: inF, a: x.data, lda: inF, b: downs.data, ldb: inF,
                     c: h.data, ldc: width)
        for (u, o) in zip(updates, offsets) {
            let r = u.down.shape[0]
            Kernels.gemm(transA: false, transB: true, m: rows, n: u.columns.count, k: r, alpha: scale, a: h.data + o, lda: width,
                         b: u.up.data, ldb: r, beta: 1, c: base.data + u.columns.lowerBound, ldc: outF)
        }
        let inputs = [x, weight] + (bias.map { [$0] } ?? []) + updates.flatMap { [$0.down, $0.up] }
        let needsH = x.requiresGrad || updates.contains { $0.down.requiresGrad }
        // x is kept only for weight gradients (as `linear` does for a frozen layer).
        let savedX: Tensor? = weight.requiresGrad || updates.contains { $0.down.requiresGrad } ? x : nil
        let xShape = x.shape, needsX = x.requiresGrad
        return base.recording(inputs) { g in
            var grads = Self.linearGradients(g, x: savedX, xShape: xShape, needsX: needsX, weight: weight, bias: bias, rows: rows)
            var gh: Tensor? = nil
            if needsH {
                let t = Tensor.empty([rows, width])
                for (u, o) in zip(updates, offsets) {
                    Kernels.gemm(transA: false, transB: false, m: rows, n: u.down.shape[0], k: u.columns.count, alpha: scale,
                                 a: g.data + u.columns.lowerBound, lda: outF, b: u.up.data, ldb: u.down.shape[0],
                                 c: t.data + o, ldc: width)
                }
                gh = t
            }
            if needsX, let gx = grads[0], let gh {
                Kernels.gemm(transA: false, transB: false, m: rows, n: inF, k: width, a: gh.data, lda: width,
                             b: downs.data, ldb: inF, beta: 1, c: gx.data, ldc: inF)
            }
            for (u, o) in zip(updates, offsets) {
                let r = u.down.shape[0]
                var gd: Tensor? = nil, gu: Tensor? = nil
                if u.down.requiresGrad, let gh, let savedX {
                    gd = Tensor.empty(u.down.shape)
                    Kernels.gemm(transA: true, transB: false, m: r, n: inF, k: rows, a: gh.data + o, lda: width,
                                 b: savedX.data, ldb: inF, c: gd!.data, ldc: inF)
                }
                if u.up.requiresGrad {
                    gu = Tensor.empty(u.up.shape)
                    Kernels.gemm(transA: true, transB: false, m: u.columns.count, n: r, k: rows, alpha: scale,
                                 a: g.data + u.columns.lowerBound, lda: outF, b: h.data + o, ldb: width, c: gu!.data, ldc: r)
                }
                grads += [gd, gu]
            }
            return grads
        }
    }

    /// ∂x = g W, ∂W = gᵀ x, ∂b = Σ_rows g of y = x Wᵀ + b (each only where its tensor needs it), on
    /// `linear`'s backward routes; [∂x, ∂W] or [∂x, ∂W, ∂b].
    static func linearGradients(_ g: Tensor, x savedX: Tensor?, xShape: [Int], needsX: Bool, weight: Tensor, bias: Tensor?,
                                rows: Int) -> [Tensor?] {
        let (outF, inF) = (weight.shape[0], weight.shape[1])
        var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
        if needsX {
            gx = Tensor.empty(xShape)
            BackwardGemm.inputGradient(rows: rows, outFeatures: outF, inFeatures: inF, g: g.data, weight: weight.data, into: gx!.data,
                                       route: BackwardGemm.route(.inputGradient, outFeatures: outF, inFeatures: inF))
        }
        if weight.requiresGrad, let savedX {
            gw = Tensor.empty(weight.shape)
            BackwardGemm.weightGradient(rows: rows, outFeatures: outF, inFeatures: inF, g: g.data, x: savedX.data, into: gw!.data,
                                        route: BackwardGemm.route(.weightGradient, outFeatures: outF, inFeatures: inF))
        }
        if let bias, bias.requiresGrad {
            gb = Tensor(shape: [outF], storage: Kernels.sumAxis(Tensor(shape: [rows, outF], storage: g.storage), 0).storage)
        }
        return bias == nil ? [gx, gw] : [gx, gw, gb]
    }
}
