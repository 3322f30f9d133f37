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
        let out = Kernels.map(self, ExpFunction.self)
        return out.recording([self]) { g in [Kernels.mul(g, out)] }
    }

    public func log() -> Tensor {
        let x = self
        return scalarMap { Foundation.log($0) }.recording([x]) { g in [Kernels.div(g, x)] }
    }

    public func sqrt() -> Tensor {
        let out = scalarMap { $0.squareRoot() }
        return out.recording([self]) { g in [Kernels.map2(g, out, SqrtBackward.self)] }
    }

    public func square() -> Tensor {
        let x = self
        return Kernels.map(x, Square.self).recording([x]) { g in [Kernels.map2(g, x, SquareBackward.self)] }
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
            [Kernels.map2(g, x, AbsBackward.self)]
        }
    }

    /// Clamps into [lo, hi]; the gradient passes only where the input was inside.
    public func clamp(min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
        let x = self
        let out = x.scalarMap { Swift.min(Swift.max($0, lo), hi) }
        return out.recording([x]) { g in
            let inside = x.scalarMap { $0 >= lo && $0 <= hi ? 1 : 0 }
            return [Kernels.mul(g, inside)]
        }
    }

    public func relu() -> Tensor {
        // The backward pass reads the output (y > 0 exactly where x > 0), which the next layer keeps
        // anyway, so the input (a convolution's or batch norm's output) need not outlive the forward pass.
        let out = Kernels.map(self, ReLU.self)
        return out.recording([self]) { g in [Kernels.map2(g, out, ReLUBackward.self)] }
    }

    /// GELU. Exact: x Φ(x) = 0.5 x (1 + erf(x / √2)). Tanh: 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))).
    public func gelu(approximate: Bool = false) -> Tensor {
        let x = self
        if approximate {
            return Kernels.map(x, GELUTanh.self).recording([x]) { g in [Kernels.map2(g, x, GELUTanhBackward.self)] }
        }
        return Kernels.map(x, GELUErf.self).recording([x]) { g in [Kernels.map2(g, x, GELUErfBackward.self)] }
    }

    public func sigmoid() -> Tensor {
        let out = Kernels.map(self, SigmoidFunction.self)
        return out.recording([self]) { g in [Kernels.map2(g, out, SigmoidBackward.self)] }
    }

    public func tanh() -> Tensor {
        let out = Kernels.map(self, TanhFunction.self)
        return out.recording([self]) { g in [Kernels.map2(g, out, TanhBackward.self)] }
    }

    /// SiLU (swish): x σ(x).
    public func silu() -> Tensor {
        let x = self
        return Kernels.map(x, SiLUFunction.self).recording([x]) { g in [Kernels.map2(g, x, SiLUBackward.self)] }
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

// The vector functions above, as types so the kernels specialise and inline them (see `VMath.apply`).
enum Square: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { v * v } }
enum ReLU: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { v.replacing(with: 0, where: v .< 0) } }
enum OneMinus: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { 1 - v } }
/// g · 0.5 / √x, given the saved output √x.
enum SqrtBackward: BinaryOp { @inline(always) static func apply(_ g: V8, _ y: V8) -> V8 { g * 0.5 / y } }
enum SquareBackward: BinaryOp { @inline(always) static func apply(_ g: V8, _ x: V8) -> V8 { 2 * g * x } }
/// g · sign(x), zero at x = 0 like PyTorch.
enum AbsBackward: BinaryOp {
    @inline(always) static func apply(_ g: V8, _ x: V8) -> V8 {
        V8(repeating: 0).replacing(with: g, where: x .> 0).replacing(with: -g, where: x .< 0)
    }
}
enum ReLUBackward: BinaryOp { @inline(always) static func apply(_ g: V8, _ x: V8) -> V8 { g.replacing(with: 0, where: x .<= 0) } }
/// g · y (1 − y), given the saved output y = σ(x).
enum SigmoidBackward: BinaryOp { @inline(always) static func apply(_ g: V8, _ y: V8) -> V8 { g * y * (1 - y) } }
/// g · (1 − y²), given the saved output y = tanh(x).
enum TanhBackward: BinaryOp { @inline(always) static func apply(_ g: V8, _ y: V8) -> V8 { g * (1 - y * y) } }
