import Foundation

/// Bilinear and bicubic resizing with PyTorch's `F.interpolate` semantics. Both are separable linear
/// maps, so x [N, C, H, W] becomes Wh · x · Wwᵀ with small interpolation matrices, and the gradient
/// comes from matmul's for free.
public enum InterpolationMode: String, Sendable { case bilinear, bicubic }

enum Interpolation {
    /// The [out, in] matrix resizing one axis.
    static func matrix(input n: Int, output m: Int, mode: InterpolationMode, alignCorners: Bool) -> Tensor {
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
}

extension Tensor {
    /// Resizes the last two axes of x [N, C, H, W] to `size`, like
    /// `F.interpolate(x, size, mode, align_corners)`.
    public func interpolate(size: (Int, Int), mode: InterpolationMode, alignCorners: Bool = false) throws -> Tensor {
        try check(rank == 4, "interpolate: input must be [N, C, H, W], got \(shape)")
        try check(size.0 > 0 && size.1 > 0, "interpolate: output size must be positive, got \(size)")
        let (h, w) = (shape[2], shape[3])
        let wh = Interpolation.matrix(input: h, output: size.0, mode: mode, alignCorners: alignCorners)
        let ww = Interpolation.matrix(input: w, output: size.1, mode: mode, alignCorners: alignCorners)
        let x = try reshape([shape[0] * shape[1], h, w])
        let y = try wh.matmul(x.matmul(ww.transpose(0, 1)))
        return try y.reshape([shape[0], shape[1], size.0, size.1])
    }
}
