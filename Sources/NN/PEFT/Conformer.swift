import Engine

/// The conformer adapter of PETL_AST (Cappellazzo et al., 2024), a conformer convolution module with a
/// bottleneck, on tokens x [B, N, D] (convolving along the tokens):
///   pw2(SiLU(BN(dw(GLU(pw1(xᵀ))))))ᵀ
/// pw1 a 1x1 conv D → 2·d, GLU over channels (a · σ(b)), dw a depthwise conv of width 31 ('same'
/// padding), BN a BatchNorm1d over d channels, pw2 a 1x1 conv d → D. Reference quirks, followed:
/// its LayerNorm's output is discarded (so there is none here), and its BatchNorm stays in training mode
/// (`batchStatisticsAlways`: batch statistics even at inference; false for the usual running statistics).
public final class ConformerAdapter: Module, UnaryLayer {
    @Child public private(set) var pw1: Conv1d
    @Child public private(set) var dw: Conv1d
    @Child public private(set) var bn: BatchNorm
    @Child public private(set) var pw2: Conv1d
    public let batchStatisticsAlways: Bool

    public init(dim: Int, bottleneck: Int, kernel: Int = 31, batchStatisticsAlways: Bool = true) {
        pw1 = Conv1d(dim, 2 * bottleneck, kernel: 1)
        dw = Conv1d(bottleneck, bottleneck, kernel: kernel, padding: (kernel - 1) / 2, groups: bottleneck)
        bn = BatchNorm(bottleneck)
        pw2 = Conv1d(bottleneck, dim, kernel: 1)
        self.batchStatisticsAlways = batchStatisticsAlways
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let d = bn.weight.count
        let h = try pw1(x.transpose(1, 2))                                        // [B, 2d, N]
        let glu = try h.slice(axis: 1, start: 0, end: d) * h.slice(axis: 1, start: d, end: 2 * d).sigmoid()
        let wasTraining = bn.training
        if batchStatisticsAlways && !wasTraining { bn.train() }
        defer { if batchStatisticsAlways && !wasTraining { bn.eval() } }
        return try pw2(bn(dw(glu)).silu()).transpose(1, 2)                        // [B, N, D]
    }
}
