import Foundation

/// Limited-memory BFGS (Nocedal & Wright, algorithm 7.4/7.5) with a backtracking Armijo line search:
/// the direction is −H·g, H the inverse-Hessian estimate from the last `memory` pairs
/// s = x₊ − x, y = g₊ − g (two-loop recursion, initial scaling γ = sᵀy / yᵀy). A pair with sᵀy ≤ 0 is
/// dropped, keeping H positive definite. For the probe's strictly convex losses this converges in tens
/// of iterations; `iterations` bounds the work whatever the data.
public enum LBFGS {
    public struct Result: Sendable {
        public var x: [Double]
        public var value: Double
        public var iterations: Int
        /// Whether ‖g‖∞ fell below the tolerance (else the budget or the line search ended it).
        public var converged: Bool
    }

    /// Minimises `f` (value and gradient) from `x0`.
    public static func minimize(_ x0: [Double], iterations: Int = 100, memory: Int = 10, tolerance: Double = 1e-6,
                                _ f: ([Double]) -> (value: Double, gradient: [Double])) -> Result {
        var x = x0
        var (value, g) = f(x)
        var ss: [[Double]] = [], ys: [[Double]] = [], rhos: [Double] = []
        for k in 0..<max(iterations, 0) {   // a negative count is no iterations, not a trap
            if g.lazy.map(abs).max() ?? 0 < tolerance { return Result(x: x, value: value, iterations: k, converged: true) }
            // Two-loop recursion: d = −H g.
            var q = g
            var alphas = [Double](repeating: 0, count: ss.count)
            for i in stride(from: ss.count - 1, through: 0, by: -1) {
                alphas[i] = rhos[i] * dot(ss[i], q)
                axpy(-alphas[i], ys[i], &q)
            }
            let gamma = ss.isEmpty ? 1 / max(norm(g), 1e-12) : dot(ss.last!, ys.last!) / dot(ys.last!, ys.last!)
            for i in q.indices { q[i] *= gamma }
            for i in ss.indices {
                let beta = rhos[i] * dot(ys[i], q)
                axpy(alphas[i] - beta, ss[i], &q)
            }
            var direction = q.map { -$0 }
            var slope = dot(g, direction)
            if !(slope < 0) {
                // Not a descent direction (numerical trouble): restart from steepest descent.
                (ss, ys, rhos) = ([], [], [])
                direction = g.map { -$0 / max(norm(g), 1e-12) }
                slope = dot(g, direction)
            }
            // Backtracking: the first step of 1 is the quasi-Newton step; halve until Armijo holds.
            var step = 1.0, accepted = false
            var next = x, nextValue = value, nextGradient = g
            for _ in 0..<40 {
                next = zip(x, direction).map { $0 + step * $1 }
                (nextValue, nextGradient) = f(next)
                if nextValue.isFinite && nextValue <= value + 1e-4 * step * slope { accepted = true; break }
                step *= 0.5
            }
            guard accepted else { return Result(x: x, value: value, iterations: k, converged: false) }
            let s = zip(next, x).map { $0 - $1 }, y = zip(nextGradient, g).map { $0 - $1 }
            let sy = dot(s, y)
            if sy > 1e-12 {
                ss.append(s); ys.append(y); rhos.append(1 / sy)
                if ss.count > memory { ss.removeFirst(); ys.removeFirst(); rhos.removeFirst() }
            }
            let improvement = value - nextValue
            (x, value, g) = (next, nextValue, nextGradient)
            // Progress below the last digits of the value: further steps only chase rounding.
            if improvement <= 1e-13 * max(abs(value), 1) {
                return Result(x: x, value: value, iterations: k + 1, converged: g.lazy.map(abs).max() ?? 0 < tolerance)
            }
        }
        return Result(x: x, value: value, iterations: iterations, converged: g.lazy.map(abs).max() ?? 0 < tolerance)
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        for i in a.indices { s += a[i] * b[i] }
        return s
    }

    static func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }

    static func axpy(_ alpha: Double, _ x: [Double], _ y: inout [Double]) {
        for i in y.indices { y[i] += alpha * x[i] }
    }
}
