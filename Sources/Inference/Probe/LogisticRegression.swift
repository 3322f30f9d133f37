import Foundation

/// Multinomial logistic regression with an L2 penalty on the weights (not the biases):
///
///     z_i = Wᵀx_i + b,   p_i = softmax(z_i)
///     L(W, b) = (1/n) Σ_i [logsumexp(z_i) − z_{i,y_i}] + (λ/2) ‖W‖²_F
///     ∂L/∂W = (1/n) Σ_i x_i (p_i − e_{y_i})ᵀ + λW,   ∂L/∂b = (1/n) Σ_i (p_i − e_{y_i})
///
/// The loss is the mean over clips, so λ means the same on 100 clips as on 3000 (scikit-learn's C is
/// 1/(λn)). Fitted by L-BFGS in full batch: strictly convex for λ > 0, so the start only changes how
/// many iterations it takes, not where it ends.
public struct LogisticRegression: Sendable {
    public let classes: Int
    public let dims: Int
    /// W as [dims, classes] row-major, then b [classes]: the layout of the optimiser's vector.
    public var parameters: [Double]
    public var lambda: Double

    public init(dims: Int, classes: Int, lambda: Double) {
        self.dims = dims; self.classes = classes; self.lambda = lambda
        parameters = [Double](repeating: 0, count: (dims + 1) * classes)
    }

    /// L and its gradient at `parameters` on (x, y).
    public static func loss(_ parameters: [Double], x: FeatureMatrix, y: [Int], classes: Int, lambda: Double) -> (value: Double, gradient: [Double]) {
        let (d, c, n) = (x.cols, classes, x.rows)
        precondition(parameters.count == (d + 1) * c && y.count == n, "LogisticRegression.loss: shapes do not match")
        var gradient = [Double](repeating: 0, count: parameters.count)
        var total = 0.0
        var z = [Double](repeating: 0, count: c)
        let biasOffset = d * c
        parameters.withUnsafeBufferPointer { w in
            x.values.withUnsafeBufferPointer { xv in
                gradient.withUnsafeMutableBufferPointer { g in
                    for i in 0..<n {
                        for k in 0..<c { z[k] = w[biasOffset + k] }
                        let row = i * d
                        // Loop over classes innermost: independent accumulators the compiler can vectorise.
                        for j in 0..<d {
                            let xij = xv[row + j]
                            if xij == 0 { continue }
                            let wj = j * c
                            for k in 0..<c { z[k] += xij * w[wj + k] }
                        }
                        let top = z.max() ?? 0
                        var sum = 0.0
                        for k in 0..<c { z[k] = Foundation.exp(z[k] - top); sum += z[k] }
                        total += Foundation.log(sum) + top - (Foundation.log(z[y[i]]) + top)
                        // z becomes the residual p − e_y.
                        for k in 0..<c { z[k] /= sum }
                        z[y[i]] -= 1
                        for j in 0..<d {
                            let xij = xv[row + j]
                            if xij == 0 { continue }
                            let gj = j * c
                            for k in 0..<c { g[gj + k] += xij * z[k] }
                        }
                        for k in 0..<c { g[biasOffset + k] += z[k] }
                    }
                }
            }
        }
        let invN = 1 / Double(max(n, 1))
        var penalty = 0.0
        for i in 0..<gradient.count {
            gradient[i] *= invN
            if i < biasOffset {
                penalty += parameters[i] * parameters[i]
                gradient[i] += lambda * parameters[i]
            }
        }
        return (total * invN + 0.5 * lambda * penalty, gradient)
    }

    /// Fits on (x, y) from the current parameters (a warm start: the previous λ's solution), at most
    /// `iterations` L-BFGS steps.
    @discardableResult
    public mutating func fit(_ x: FeatureMatrix, _ y: [Int], iterations: Int = 100) -> LBFGS.Result {
        precondition(x.cols == dims, "LogisticRegression.fit: \(x.cols) features for a \(dims)-feature model")
        let (c, lambda) = (classes, lambda)
        let result = LBFGS.minimize(parameters, iterations: iterations) { Self.loss($0, x: x, y: y, classes: c, lambda: lambda) }
        parameters = result.x
        return result
    }

    /// Class probabilities, one row per clip.
    public func probabilities(_ x: FeatureMatrix) -> [[Double]] {
        (0..<x.rows).map { i in
            var z = Array(parameters[(dims * classes)...])
            for j in 0..<dims {
                let xij = x.values[i * dims + j]
                for k in 0..<classes { z[k] += xij * parameters[j * classes + k] }
            }
            let top = z.max() ?? 0
            let e = z.map { Foundation.exp($0 - top) }
            let sum = e.reduce(0, +)
            return e.map { $0 / sum }
        }
    }

    /// The most probable class of each clip (the lowest index among ties).
    public func predict(_ x: FeatureMatrix) -> [Int] {
        probabilities(x).map { p in p.indices.max { p[$0] < p[$1] || (p[$0] == p[$1] && $0 > $1) } ?? 0 }
    }
}
