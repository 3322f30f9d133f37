import Foundation

/// Bilinear and bicubic resizing with PyTorch's `F.interpolate` semantics. Both are separable linear
/// maps, so x [N, C, H, W] becomes Wh · x · Wwᵀ with small interpolation matrices, and the gradient
/// comes from matmul's for free.
public enum InterpolationMode: String, Sendable { case bilinear, bicubic }

enum Interpolation {
    /// Output i of one resized axis reads inputs `start ..< start + weights.count` with these weights.
    struct Row { var start: Int; var weights: [Float] }

    /// The rows of the [out, in] matrix resizing one axis, each a short band of nonzero weights.
    static func rows(input n: Int, output m: Int, mode: InterpolationMode, alignCorners: Bool, antialias: Bool = false) -> [Row] {
        if antialias { return antialiasedLinear(input: n, output: m) }
        let scale: Double = alignCorners ? (m > 1 ? Double(n - 1) / Double(m - 1) : 0) : Double(n) / Double(m)
        return (0..<m).map { i in
            var src = alignCorners ? Double(i) * scale : (Double(i) + 0.5) * scale - 0.5
            switch mode {
            case .bilinear:
                if !alignCorners && src < 0 { src = 0 }
                let i0 = min(Int(src.rounded(.down)), n - 1)
                let i1 = min(i0 + 1, n - 1)
                let t = Float(src - Double(i0))
                return i1 == i0 ? Row(start: i0, weights: [(1 - t) + t]) : Row(start: i0, weights: [1 - t, t])
            case .bicubic:
                let i0 = Int(src.rounded(.down))
                let t = src - Double(i0)
                let a = -0.75
                func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
                func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
                let coeffs = [far(t + 1), near(t), near(1 - t), far(2 - t)]
                // Taps past either end read the edge (clamped), so several may land on one input.
                let idx = (0..<4).map { min(max(i0 - 1 + $0, 0), n - 1) }
                var row = Row(start: idx[0], weights: [Float](repeating: 0, count: idx[3] - idx[0] + 1))
                for (k, c) in coeffs.enumerated() { row.weights[idx[k] - row.start] += Float(c) }
                return row
            }
        }
    }

    /// The [out, in] matrix resizing one axis (for the graph: matmul's gradient is the resize's).
    static func matrix(input n: Int, output m: Int, mode: InterpolationMode, alignCorners: Bool, antialias: Bool = false) -> Tensor {
        let w = Tensor.zeros([m, n])
        for (i, row) in rows(input: n, output: m, mode: mode, alignCorners: alignCorners, antialias: antialias).enumerated() {
            for (k, v) in row.weights.enumerated() { w.data[i * n + row.start + k] += v }
        }
        return w
    }

    /// Antialiased linear resizing of one axis (PyTorch's `F.interpolate(mode="bilinear", antialias=True)`,
    /// align_corners false; what torchvision's `Resize` does to tensors since 0.17). With the scale
    /// s = n / m, output i reads the inputs j within the support σ = max(s, 1) of its centre c = s·(i + ½),
    /// j ∈ [⌊c − σ + ½⌋, ⌊c + σ + ½⌋) clipped to the axis, with the triangle weights
    /// w_j = max(0, 1 − |(j − c + ½) / max(s, 1)|) normalised to sum 1: a downsampling by s averages
    /// over s inputs instead of sampling two, and at s ≤ 1 this is plain linear interpolation.
    static func antialiasedLinear(input n: Int, output m: Int) -> [Row] {
        let scale = Double(n) / Double(m)
        let support = max(scale, 1), invScale = scale >= 1 ? 1 / scale : 1
        return (0..<m).map { i in
            let center = scale * (Double(i) + 0.5)
            // Truncation toward zero, as the reference's int64 casts (the lower end may be in (−1, 0)).
            let lo = max(Int(center - support + 0.5), 0), hi = min(Int(center + support + 0.5), n)
            guard hi > lo else { return Row(start: 0, weights: []) }
            let weights = (lo..<hi).map { j in max(0, 1 - abs((Double(j) - center + 0.5) * invScale)) }
            let total = weights.reduce(0, +)
            guard total > 0 else { return Row(start: 0, weights: []) }
            return Row(start: lo, weights: weights.map { Float($0 / total) })
        }
    }

    /// y [P, m, w] = rows · x [P, n, w] along the middle axis, reading only each row's band.
    static func applyRows(_ rows: [Row], _ x: UnsafePointer<Float>, planes: Int, inner: Int, inputs n: Int, into y: UnsafeMutablePointer<Float>) {
        let m = rows.count
        for p in 0..<planes {
            for (i, row) in rows.enumerated() {
                let out = y + (p * m + i) * inner
                out.update(repeating: 0, count: inner)
                for (k, v) in row.weights.enumerated() where v != 0 {
                    let src = x + (p * n + row.start + k) * inner
                    for j in 0..<inner { out[j] += v * src[j] }
                }
            }
        }
    }
}

extension Tensor {
    /// Resizes the last two axes of x [N, C, H, W] to `size`, like
    /// `F.interpolate(x, size, mode, align_corners, antialias)` (antialias: bilinear without aligned corners only).
    ///
    /// Outside a graph each output reads only the few inputs its weights cover (the global view of a
    /// 30-minute CLAP mel is 1,001 rows from 180,000: a dense 720 MB matrix otherwise); a recorded
    /// call multiplies by the dense matrices so the gradient is matmul's.
    public func interpolate(size: (Int, Int), mode: InterpolationMode, alignCorners: Bool = false, antialias: Bool = false) throws -> Tensor {
        try check(rank == 4, "interpolate: input must be [N, C, H, W], got \(shape)")
        try check(size.0 > 0 && size.1 > 0, "interpolate: output size must be positive, got \(size)")
        try check(!antialias || (mode == .bilinear && !alignCorners), "interpolate: antialias is implemented for bilinear without align_corners only")
        let (h, w) = (shape[2], shape[3]), planes = shape[0] * shape[1]
        guard GradMode.isEnabled && requiresGrad else {
            let rh = Interpolation.rows(input: h, output: size.0, mode: mode, alignCorners: alignCorners, antialias: antialias)
            let rw = Interpolation.rows(input: w, output: size.1, mode: mode, alignCorners: alignCorners, antialias: antialias)
            // Along W first (as x · Wwᵀ), through a transpose so both passes run over rows.
            let xt = try reshape([planes, h, w]).transpose(1, 2)             // [P, w, h]
            let yt = Tensor.empty([planes, size.1, h])
            Interpolation.applyRows(rw, xt.data, planes: planes, inner: h, inputs: w, into: yt.data)
            let y = try yt.transpose(1, 2)                                      // [P, h, W']
            let z = Tensor.empty([planes, size.0, size.1])
            Interpolation.applyRows(rh, y.data, planes: planes, inner: size.1, inputs: h, into: z.data)
            return try z.reshape([shape[0], shape[1], size.0, size.1])
        }
        let wh = Interpolation.matrix(input: h, output: size.0, mode: mode, alignCorners: alignCorners, antialias: antialias)
        let ww = Interpolation.matrix(input: w, output: size.1, mode: mode, alignCorners: alignCorners, antialias: antialias)
        let x = try reshape([planes, h, w])
        let y = try wh.matmul(x.matmul(ww.transpose(0, 1)))
        return try y.reshape([shape[0], shape[1], size.0, size.1])
    }
}
