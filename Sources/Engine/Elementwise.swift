/// Raw kernels that never record a graph: used by ops' forward passes and by backward closures.
package enum Kernels {}

protocol BinaryOp { static func apply(_ a: V8, _ b: V8) -> V8 }
enum AddOp: BinaryOp { @inline(always) static func apply(_ a: V8, _ b: V8) -> V8 { a + b } }
enum SubOp: BinaryOp { @inline(always) static func apply(_ a: V8, _ b: V8) -> V8 { a - b } }
enum MulOp: BinaryOp { @inline(always) static func apply(_ a: V8, _ b: V8) -> V8 { a * b } }
enum DivOp: BinaryOp { @inline(always) static func apply(_ a: V8, _ b: V8) -> V8 { a / b } }
enum MaxOp: BinaryOp { @inline(always) static func apply(_ a: V8, _ b: V8) -> V8 { a.replacing(with: b, where: b .> a) } }
enum MinOp: BinaryOp { @inline(always) static func apply(_ a: V8, _ b: V8) -> V8 { a.replacing(with: b, where: b .< a) } }

extension Kernels {
    /// Broadcasting binary kernel with fast paths for equal shapes and scalar operands.
    static func binary<Op: BinaryOp>(_ a: Tensor, _ b: Tensor, _ outShape: [Int], _: Op.Type) -> Tensor {
        let out = Tensor.empty(outShape)
        let pa = a.data, pb = b.data, po = out.data
        if a.shape == b.shape {
            let n = out.count
            parallelFor((n + 4095) / 4096, costPerItem: 4096) { r in
                let lo = r.lowerBound * 4096, hi = min(n, r.upperBound * 4096)
                VMath.apply2(Op.self, pa + lo, pb + lo, po + lo, hi - lo)
            }
            return out
        }
        if b.count == 1 && a.count == out.count {
            let s = V8(repeating: pb[0]), n = out.count
            parallelFor((n + 4095) / 4096, costPerItem: 4096) { r in
                let lo = r.lowerBound * 4096, hi = min(n, r.upperBound * 4096)
                VMath.applyScalar(Op.self, pa + lo, s, po + lo, hi - lo, scalarFirst: false)
            }
            return out
        }
        if a.count == 1 && b.count == out.count {
            let s = V8(repeating: pa[0]), n = out.count
            parallelFor((n + 4095) / 4096, costPerItem: 4096) { r in
                let lo = r.lowerBound * 4096, hi = min(n, r.upperBound * 4096)
                VMath.applyScalar(Op.self, pb + lo, s, po + lo, hi - lo, scalarFirst: true)
            }
            return out
        }
        let sa = broadcastStrides(a.shape, to: outShape), sb = broadcastStrides(b.shape, to: outShape)
        let n = outShape.last ?? 1
        let la = sa.last ?? 0, lb = sb.last ?? 0
        forEachRow(outShape, [sa, sb]) { row, off in
            let x = pa + off[0], y = pb + off[1], o = po + row * n
            switch (la, lb) {
            case (1, 1): VMath.apply2(Op.self, x, y, o, n)
            case (1, _): VMath.applyScalar(Op.self, x, V8(repeating: y[0]), o, n, scalarFirst: false)
            case (_, 1): VMath.applyScalar(Op.self, y, V8(repeating: x[0]), o, n, scalarFirst: true)
            default: let r = Op.apply(V8(repeating: x[0]), V8(repeating: y[0]))[0]; o.update(repeating: r, count: n)
            }
        }
        return out
    }

    static func add(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, (try? broadcastShape(a.shape, b.shape, op: "add")) ?? a.shape, AddOp.self) }
    static func mul(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, (try? broadcastShape(a.shape, b.shape, op: "mul")) ?? a.shape, MulOp.self) }
    static func sub(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, (try? broadcastShape(a.shape, b.shape, op: "sub")) ?? a.shape, SubOp.self) }
    static func div(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, (try? broadcastShape(a.shape, b.shape, op: "div")) ?? a.shape, DivOp.self) }

    static func scale(_ a: Tensor, _ s: Float) -> Tensor {
        let out = Tensor.empty(a.shape)
        VMath.applyScalar(MulOp.self, a.data, V8(repeating: s), out.data, a.count, scalarFirst: false)
        return out
    }

    /// Elementwise `F`, parallel over large tensors.
    static func map<F: VectorFunction>(_ a: Tensor, _: F.Type) -> Tensor {
        let out = Tensor.empty(a.shape)
        let n = a.count, pa = a.data, po = out.data
        parallelFor((n + 4095) / 4096, costPerItem: 4096 * 4) { r in
            let lo = r.lowerBound * 4096, hi = min(n, r.upperBound * 4096)
            VMath.apply(F.self, pa + lo, po + lo, hi - lo)
        }
        return out
    }

    /// Elementwise two-input `F` over same-shaped tensors, parallel over large ones.
    static func map2<F: BinaryOp>(_ a: Tensor, _ b: Tensor, _: F.Type) -> Tensor {
        let out = Tensor.empty(a.shape)
        let n = a.count, pa = a.data, pb = b.data, po = out.data
        parallelFor((n + 4095) / 4096, costPerItem: 4096 * 4) { r in
            let lo = r.lowerBound * 4096, hi = min(n, r.upperBound * 4096)
            VMath.apply2(F.self, pa + lo, pb + lo, po + lo, hi - lo)
        }
        return out
    }
}

// MARK: Differentiable arithmetic

extension Tensor {
    public static func + (a: Tensor, b: Tensor) throws -> Tensor {
        let shape = try broadcastShape(a.shape, b.shape, op: "add")
        // The closures below name flags and shapes, never an operand they do not read: a captured
        // operand stays alive until the backward pass (every residual stream, for `+`).
        let (sa, sb, needA, needB) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
        return Kernels.binary(a, b, shape, AddOp.self).recording([a, b]) { g in
            [needA ? Kernels.sumTo(g, sa) : nil, needB ? Kernels.sumTo(g, sb) : nil]
        }
    }

    public static func - (a: Tensor, b: Tensor) throws -> Tensor {
        let shape = try broadcastShape(a.shape, b.shape, op: "sub")
        let (sa, sb, needA, needB) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
        return Kernels.binary(a, b, shape, SubOp.self).recording([a, b]) { g in
            [needA ? Kernels.sumTo(g, sa) : nil, needB ? Kernels.scale(Kernels.sumTo(g, sb), -1) : nil]
        }
    }

    public static func * (a: Tensor, b: Tensor) throws -> Tensor {
        let shape = try broadcastShape(a.shape, b.shape, op: "mul")
        // Each operand's gradient reads the other: keep one only where the other needs a gradient.
        let (sa, sb) = (a.shape, b.shape)
        let keptA: Tensor? = b.requiresGrad ? a : nil, keptB: Tensor? = a.requiresGrad ? b : nil
        return Kernels.binary(a, b, shape, MulOp.self).recording([a, b]) { g in
            [keptB.map { Kernels.sumTo(Kernels.mul(g, $0), sa) }, keptA.map { Kernels.sumTo(Kernels.mul(g, $0), sb) }]
        }
    }

    public static func / (a: Tensor, b: Tensor) throws -> Tensor {
        let shape = try broadcastShape(a.shape, b.shape, op: "div")
        let out = Kernels.binary(a, b, shape, DivOp.self)
        let (sa, sb, needA, needB) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
        return out.recording([a, b]) { g in
            let gb: Tensor? = needB ? Kernels.sumTo(Kernels.scale(Kernels.div(Kernels.mul(g, out), b), -1), sb) : nil
            return [needA ? Kernels.sumTo(Kernels.div(g, b), sa) : nil, gb]
        }
    }

    /// Elementwise maximum; the gradient goes to the larger operand (to `a` on ties).
    public func maximum(_ other: Tensor) throws -> Tensor {
        let shape = try broadcastShape(self.shape, other.shape, op: "maximum")
        let a = self, b = other
        return Kernels.binary(a, b, shape, MaxOp.self).recording([a, b]) { g in
            let pickA = Kernels.binary(a, b, shape, GreaterEqualOp.self)
            return [a.requiresGrad ? Kernels.sumTo(Kernels.mul(g, pickA), a.shape) : nil,
                    b.requiresGrad ? Kernels.sumTo(Kernels.mul(g, Kernels.map(pickA, OneMinus.self)), b.shape) : nil]
        }
    }

    public static func + (a: Tensor, s: Float) -> Tensor { try! a + Tensor.scalar(s) }
    public static func - (a: Tensor, s: Float) -> Tensor { try! a - Tensor.scalar(s) }
    public static func * (a: Tensor, s: Float) -> Tensor {
        Kernels.scale(a, s).recording([a]) { g in [Kernels.scale(g, s)] }
    }
    public static func * (s: Float, a: Tensor) -> Tensor { a * s }
    public static func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }
    public static func + (s: Float, a: Tensor) -> Tensor { a + s }
    public static func - (s: Float, a: Tensor) -> Tensor { try! Tensor.scalar(s) - a }
    public static prefix func - (a: Tensor) -> Tensor { a * -1 }
}

enum GreaterEqualOp: BinaryOp {
    @inline(always) static func apply(_ a: V8, _ b: V8) -> V8 {
        V8(repeating: 0).replacing(with: 1, where: a .>= b)
    }
}
