import Foundation

/// Elementwise math and activations. Each forward is one SIMD pass; each backward is one fused pass
/// over (gradient, saved input or output).
extension Tensor {
    /// Scalar fallback for functions without a SIMD form (log, sqrt, pow): not on transformer hot paths.
    private func scalarMap(_ f: (Float) -> Float) -> Tensor {
        let out = Tensor.empty(shape)
        for i in 0..<count { out.data[i] = f(data[i]) }
        return out
    }

    public func exp() -> Tensor {
        let out = Kernels.map(self) { VMath.exp($0) }
        return out.recording([self]) { g in [Kernels.mul(g, out)] }
    }

    public func log() -> Tensor {
        let x = self
        return scalarMap { Foundation.log($0) }.recording([x]) { g in [Kernels.div(g, x)] }
    }

    public func sqrt() -> Tensor {
        let out = scalarMap { $0.squareRoot() }
        return out.recording([self]) { g in [Kernels.map2(g, out) { $0 * 0.5 / $1 }] }
    }

    public func square() -> Tensor {
        let x = self
        return Kernels.map(x) { $0 * $0 }.recording([x]) { g in [Kernels.map2(g, x) { 2 * $0 * $1 }] }
    }

    public func pow(_ p: Float) -> Tensor {
        let x = self
        return scalarMap { Foundation.pow($0, p) }.recording([x]) { g in
            let d = x.scalarMap { p * Foundation.pow($0, p - 1) }
            return [Kernels.mul(g, d)]
        }
    }

    public func abs() -> Tensor {
        let x = self
        return scalarMap { Swift.abs($0) }.recording([x]) { g in
            [Kernels.map2(g, x) { gv, xv in
                V8(repeating: 0).replacing(with: gv, where: xv .> 0).replacing(with: -gv, where: xv .< 0) }]
        }
    }

    /// Clamps into [lo, hi]; the gradient passes only where the input was inside.
    public func clamp(min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
        let x = self
        let vlo = V8(repeating: lo), vhi = V8(repeating: hi)
        let out = Kernels.map(x) { $0.replacing(with: vlo, where: $0 .< vlo).replacing(with: vhi, where: $0 .> vhi) }
        return out.recording([x]) { g in
            [Kernels.map2(g, x) { gv, xv in
                gv.replacing(with: 0, where: (xv .< vlo) .| (xv .> vhi)) }]
        }
    }

    public func relu() -> Tensor {
        let x = self
        return Kernels.map(x) { $0.replacing(with: 0, where: $0 .< 0) }.recording([x]) { g in
            [Kernels.map2(g, x) { gv, xv in gv.replacing(with: 0, where: xv .<= 0) }]
        }
    }

    /// GELU. Exact: x Φ(x) = 0.5 x (1 + erf(x / √2)). Tanh: 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))).
    public func gelu(approximate: Bool = false) -> Tensor {
        let x = self
        if approximate {
            let c = V8(repeating: 0.7978845608028654)
            let out = Kernels.map(x) { v in 0.5 * v * (1 + VMath.tanh(c * (v + 0.044715 * v * v * v))) }
            return out.recording([x]) { g in
                [Kernels.map2(g, x) { gv, v in
                    let u = c * (v + 0.044715 * v * v * v)
                    let t = VMath.tanh(u)
                    let du = c * (1 + 3 * 0.044715 * v * v)
                    return gv * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du)
                }]
            }
        }
        let out = Kernels.map(x) { v in 0.5 * v * (1 + VMath.erf(v * 0.7071067811865476)) }
        return out.recording([x]) { g in
            [Kernels.map2(g, x) { gv, v in
                let cdf = 0.5 * (1 + VMath.erf(v * 0.7071067811865476))
                let pdf = 0.3989422804014327 * VMath.exp(-0.5 * v * v)
                return gv * (cdf + v * pdf)
            }]
        }
    }

    public func sigmoid() -> Tensor {
        let out = Kernels.map(self) { VMath.sigmoid($0) }
        return out.recording([self]) { g in [Kernels.map2(g, out) { $0 * $1 * (1 - $1) }] }
    }

    public func tanh() -> Tensor {
        let out = Kernels.map(self) { VMath.tanh($0) }
        return out.recording([self]) { g in [Kernels.map2(g, out) { $0 * (1 - $1 * $1) }] }
    }

    /// SiLU (swish): x σ(x).
    public func silu() -> Tensor {
        let x = self
        return Kernels.map(x) { $0 * VMath.sigmoid($0) }.recording([x]) { g in
            [Kernels.map2(g, x) { gv, v in
                let s = VMath.sigmoid(v)
                return gv * s * (1 + v * (1 - s))
            }]
        }
    }

    /// softplus(x) = log(1 + e^x) / β, linear above `threshold` like PyTorch.
    public func softplus(beta: Float = 1, threshold: Float = 20) -> Tensor {
        let x = self
        let out = scalarMap { v in
            beta * v > threshold ? v : Foundation.log1p(Foundation.exp(beta * v)) / beta
        }
        return out.recording([x]) { g in
            let d = x.scalarMap { v in beta * v > threshold ? 1 : 1 / (1 + Foundation.exp(-beta * v)) }
            return [Kernels.mul(g, d)]
        }
    }
}
