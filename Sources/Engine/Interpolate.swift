import Foundation

/// Bilinear and bicubic resizing with PyTorch's `F.interpolate` semantics. Both are separable linear
/// maps, so x [N, C, H, W] becomes Wh · x · Wwᵀ with small interpolation matrices, and the gradient
/// comes from matmul's for free.
public enum InterpolationMode: String, Sendable { case bilinear, bicubic }

enum Interpolation {
    /// The [out, in] matrix resizing one axis.
    static func matrix(input n: Int, output m: Int, mode: InterpolationMode, alignCorners: Bool, antialias: Bool = false) -> Tensor {
        if antialias { return antialiasedLinear(input: n, output: m) }
        let w = Tensor.zeros([m, n])
        let scale: Double = alignCorners ? (m > 1 ? Double(n - 1) / Double(m - 1) : 0) : Double(n) / Double(m)
        for i in 0..<m {
            var src = alignCorners ? Double(i) * scale : (Double(i) + 0.5) * scale - 0.5
            switch mode {
            case .bilinear:
                if !alignCorners && src < 0 { src = 0 }
                let i0 = min(Int(src.rounded(.down)), n - 1)
                let i1 = min(i0 + 1, n - 1)
                let t = Float(src - Double(i0))
                w.data[i * n + i0] += 1 - t
                w.data[i * n + i1] += t
            case .bicubic:
                let i0 = Int(src.rounded(.down))
                let t = src - Double(i0)
                let a = -0.75
                func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
                func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
                let coeffs = [far(t + 1), near(t), near(1 - t), far(2 - t)]
                for (k, c) in coeffs.enumerated() {
                    let idx = min(max(i0 - 1 + k, 0), n - 1)
                    w.data[i * n + idx] += Float(c)
                }
            }
        }
        return w
    }

    /// Antialiased linear resizing of one axis (PyTorch's `F.interpolate(mode="bilinear", antialias=True)`,
    /// align_corners false; what torchvision's `Resize` does to tensors since 0.17). With the scale
    /// s = n / m, output i reads the inputs j within the support σ = max(s, 1) of its centre c = s·(i + ½),
    /// j ∈ [⌊c − σ + ½⌋, ⌊c + σ + ½⌋) clipped to the axis, with the triangle weights
    /// w_j = max(0, 1 − |(j − c + ½) / max(s, 1)|) normalised to sum 1: a downsampling by s averages
    /// over s inputs instead of sampling two, and at s ≤ 1 this is plain linear interpolation.
    static func antialiasedLinear(input n: Int, output m: Int) -> Tensor {
        let w = Tensor.zeros([m, n])
        let scale = Double(n) / Double(m)
        let support = max(scale, 1), invScale = scale >= 1 ? 1 / scale : 1
        for i in 0..<m {
            let center = scale * (Double(i) + 0.5)
            // Truncation toward zero, as the reference's int64 casts (the lower end may be in (−1, 0)).
            let lo = max(Int(center - support + 0.5), 0), hi = min(Int(center + support + 0.5), n)
            guard hi > lo else { continue }
            let weights = (lo..<hi).map { j in max(0, 1 - abs((Double(j) - center + 0.5) * invScale)) }
            let total = weights.reduce(0, +)
            guard total > 0 else { continue }
            for (k, v) in weights.enumerated() { w.data[i * n + lo + k] = Float(v / total) }
        }
        return w
    }
}

extension Tensor {
    /// Resizes the last two axes of x [N, C, H, W] to `size`, like
    /// `F.interpolate(x, size, mode, align_corners, antialias)` (antialias: bilinear without aligned corners only).
    public func interpolate(size: (Int, Int), mode: InterpolationMode, alignCorners: Bool = false, antialias: Bool = false) throws -> Tensor {
        try check(rank == 4, "interpolate: input must be [N, C, H, W], got \(shape)")
        try check(size.0 > 0 && size.1 > 0, "interpolate: output size must be positive, got \(size)")
        try check(!antialias || (mode == .bilinear && !alignCorners), "interpolate: antialias is implemented for bilinear without align_corners only")
        let (h, w) = (shape[2], shape[3])
        let wh = Interpolation.matrix(input: h, output: size.0, mode: mode, alignCorners: alignCorners, antialias: antialias)
        let ww = Interpolation.matrix(input: w, output: size.1, mode: mode, alignCorners: alignCorners, antialias: antialias)
        let x = try reshape([shape[0] * shape[1], h, w])
        let y = try wh.matmul(x.matmul(ww.transpose(0, 1)))
        return try y.reshape([shape[0], shape[1], size.0, size.1])
    }
}
