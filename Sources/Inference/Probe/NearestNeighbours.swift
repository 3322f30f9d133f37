import Foundation

/// k-nearest-neighbour classification by cosine similarity, cos(a, b) = a·b / (‖a‖‖b‖): each query
/// takes the majority class of its k most similar training clips. A tie between classes goes to the
/// one whose tied neighbours are more similar in sum (then the lower class index), so k = 1 is
/// nearest-neighbour and no vote is decided by list order.
public struct CosineNeighbours: Sendable {
    /// Training rows scaled to unit length (a zero row stays zero: similarity 0 to everything).
    let train: FeatureMatrix
    let labels: [Int]
    public let classes: Int

    public init(train: FeatureMatrix, labels: [Int], classes: Int) {
        precondition(train.rows == labels.count, "CosineNeighbours: \(train.rows) rows, \(labels.count) labels")
        self.train = Self.unitRows(train); self.labels = labels; self.classes = classes
    }

    static func unitRows(_ x: FeatureMatrix) -> FeatureMatrix {
        var v = x.values
        for i in 0..<x.rows {
            let r = (i * x.cols)..<((i + 1) * x.cols)
            let norm = v[r].reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm > 0 { for j in r { v[j] /= norm } }
        }
        return FeatureMatrix(rows: x.rows, cols: x.cols, values: v)
    }

    /// The `k` most similar training rows of each query row, most similar first, with their similarities.
    public func neighbours(of queries: FeatureMatrix, k: Int) -> [[(index: Int, similarity: Double)]] {
        precondition(queries.cols == train.cols, "CosineNeighbours: \(queries.cols) features for \(train.cols)")
        let q = Self.unitRows(queries), take = min(k, train.rows), d = train.cols
        return q.values.withUnsafeBufferPointer { qv in
            train.values.withUnsafeBufferPointer { tv in
                (0..<q.rows).map { i in
                    var sims = [(index: Int, similarity: Double)]()
                    sims.reserveCapacity(train.rows)
                    for t in 0..<train.rows {
                        var s = 0.0
                        for j in 0..<d { s += qv[i * d + j] * tv[t * d + j] }
                        sims.append((t, s))
                    }
                    // Equal similarities keep the training order, so results do not depend on the sort's stability.
                    sims.sort { $0.similarity > $1.similarity || ($0.similarity == $1.similarity && $0.index < $1.index) }
                    return Array(sims.prefix(take))
                }
            }
        }
    }

    /// The class `k` neighbours (a prefix of a `neighbours` list) vote for.
    public func vote(_ neighbours: ArraySlice<(index: Int, similarity: Double)>) -> Int {
        var counts = [Int](repeating: 0, count: classes), weight = [Double](repeating: 0, count: classes)
        for n in neighbours { counts[labels[n.index]] += 1; weight[labels[n.index]] += n.similarity }
        return counts.indices.max { a, b in
            (counts[a], weight[a], -a) < (counts[b], weight[b], -b)
        } ?? 0
    }

    /// Predictions for every k in `ks` from one neighbour search (the largest k's).
    public func predict(_ queries: FeatureMatrix, ks: [Int]) -> [Int: [Int]] {
        let lists = neighbours(of: queries, k: ks.max() ?? 1)
        var out: [Int: [Int]] = [:]
        for k in ks { out[k] = lists.map { vote($0.prefix(k)) } }
        return out
    }
}
