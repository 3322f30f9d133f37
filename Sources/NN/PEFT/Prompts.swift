import Engine

/// Learned prompt tokens for prompt tuning (VPT; PETL_AST's prompt tuning of AST): `count` tokens of
/// width `dim` per set, one set (shallow: the first block only) or one per block (deep: each block's
/// prompt slots are replaced by its own set before it runs). Keys `sets.<i>` ([1, count, dim]).
public final class PromptTokens: Module {
    @Child public private(set) var sets: [PromptSet]

    /// PETL_AST's init: uniform on ±√(6 / (3·16·16 + D)).
    public init(count: Int, dim: Int, sets n: Int) {
        let bound = (6 / Float(3 * 16 * 16 + dim)).squareRoot()
        sets = (0..<n).map { _ in PromptSet(Tensor.uniform([1, count, dim], low: -bound, high: bound).requiringGrad()) }
    }

    public var count: Int { sets.first?.tokens.shape[1] ?? 0 }
    public var isDeep: Bool { sets.count > 1 }

    /// The prompts block `index` runs with, broadcast over `batch`; nil where a shallow set leaves the
    /// slots as the previous block wrote them.
    public func prompts(forBlock index: Int, batch: Int) throws -> Tensor? {
        guard index < sets.count else { return nil }
        let t = sets[index].tokens
        return try t.expand([batch, t.shape[1], t.shape[2]])
    }
}

/// One set of prompt tokens (a module so that each set has its own key).
public final class PromptSet: Module {
    public let tokens: Tensor
    public init(_ tokens: Tensor) { self.tokens = tokens }
}
