import Engine

/// One P2C preference head: scores a clip for a class, s(x, y) = tanh(MLP([f(x) ; e_y])) ∈ (−1, 1),
/// with MLP = Linear(2d→d) · ReLU · Linear(d→d) · ReLU · Linear(d→1) (the text version of the
/// reference) and e_y a learned class embedding of width d.
///
/// The reference feeds the class as its index times a vector of ones (class 0 is all zeros, and the
/// scale grows with the index); a learned embedding is the same idea without an order or scale among
/// classes. Its rows start at N(0, 0.02²) so the first layer sees the features first.
public final class PreferenceHead: Module {
    @Child public private(set) var classEmbedding: Embedding
    @Child public private(set) var mlp: Sequential

    public init(width d: Int, classes: Int) {
        classEmbedding = Embedding(classes, d)
        mlp = Sequential([Linear(2 * d, d), ReLU(), Linear(d, d), ReLU(), Linear(d, 1)])
        super.init()
        let w = classEmbedding.weight
        for i in 0..<w.count { w.data[i] *= 0.02 }
    }

    public var classes: Int { classEmbedding.weight.shape[0] }

    /// Scores [N] of features [N, d] for classes `classes` (one per row).
    public func callAsFunction(_ features: Tensor, classes ys: [Int]) throws -> Tensor {
        try check(features.rank == 2 && features.shape[0] == ys.count,
                  "PreferenceHead: features \(features.shape) need one class per row (got \(ys.count))")
        try check(ys.allSatisfy { $0 >= 0 && $0 < classes }, "PreferenceHead: a class is outside [0, \(classes))")
        let x = try Tensor.concat([features, classEmbedding(ys)], axis: 1)
        return try mlp(x).tanh().reshape([ys.count])
    }
}
