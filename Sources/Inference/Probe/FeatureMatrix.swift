import Foundation

/// Clip embeddings as a dense row-major matrix of doubles: one row per clip. The probe's classifiers
/// are small (a few hundred dimensions, a few thousand clips), so plain loops in double precision keep
/// them exact enough to check gradients by finite differences without a BLAS call.
public struct FeatureMatrix: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    public var values: [Double]

    public init(rows: Int, cols: Int, values: [Double]) {
        precondition(values.count == rows * cols, "FeatureMatrix: \(values.count) values for \(rows)x\(cols)")
        self.rows = rows; self.cols = cols; self.values = values
    }

    /// Rows of equal length (an empty list is a 0x0 matrix).
    public init(_ rows: [[Double]]) {
        let cols = rows.first?.count ?? 0
        precondition(rows.allSatisfy { $0.count == cols }, "FeatureMatrix: rows of different lengths")
        self.init(rows: rows.count, cols: cols, values: rows.flatMap { $0 })
    }

    public func row(_ i: Int) -> ArraySlice<Double> { values[(i * cols)..<((i + 1) * cols)] }

    /// The rows at `indices`, in that order.
    public func rows(_ indices: [Int]) -> FeatureMatrix {
        var out = [Double](); out.reserveCapacity(indices.count * cols)
        for i in indices { out.append(contentsOf: row(i)) }
        return FeatureMatrix(rows: indices.count, cols: cols, values: out)
    }
}

/// z-scores fitted on a training set: x' = (x − μ) / σ per column, μ and σ (population) from the
/// training rows only, so no statistic of a test clip leaks into the model that scores it. A column
/// constant on the training rows (σ < 1e-12) carries nothing to learn from and is zeroed.
public struct Standardizer: Sendable {
    public let mean: [Double]
    /// 1/σ per column, or 0 for a constant column.
    public let inverseScale: [Double]

    public init(fitting x: FeatureMatrix) {
        var mean = [Double](repeating: 0, count: x.cols), square = [Double](repeating: 0, count: x.cols)
        for i in 0..<x.rows {
            let base = i * x.cols
            for j in 0..<x.cols { mean[j] += x.values[base + j] }
        }
        let n = Double(max(x.rows, 1))
        for j in 0..<x.cols { mean[j] /= n }
        for i in 0..<x.rows {
            let base = i * x.cols
            for j in 0..<x.cols { let d = x.values[base + j] - mean[j]; square[j] += d * d }
        }
        self.mean = mean
        inverseScale = square.map { s in let sd = (s / n).squareRoot(); return sd < 1e-12 ? 0 : 1 / sd }
    }

    public func apply(_ x: FeatureMatrix) -> FeatureMatrix {
        var v = x.values
        for i in 0..<x.rows {
            let base = i * x.cols
            for j in 0..<x.cols { v[base + j] = (v[base + j] - mean[j]) * inverseScale[j] }
        }
        return FeatureMatrix(rows: x.rows, cols: x.cols, values: v)
    }
}
