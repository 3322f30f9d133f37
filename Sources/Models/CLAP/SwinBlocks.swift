import Engine
import NN

/// Window self-attention with a learned relative-position bias (Swin), keyed as Hugging Face's
/// `attention.self` (`query`, `key`, `value`, `relative_position_bias_table`).
///
/// Per window of N = w² tokens and per head: softmax(Q Kᵀ / √d + B[h] + M) V, where
/// B[h][i][j] = table[idx(i, j)][h] with idx(i, j) = (Δr + w − 1)(2w − 1) + (Δc + w − 1) for the
/// row/column offsets (Δr, Δc) of token i from token j, and M the shifted-window mask (or none).
public final class SwinSelfAttention: Module {
    @Child public private(set) var query: Linear
    @Child public private(set) var key: Linear
    @Child public private(set) var value: Linear
    /// [(2w − 1)², heads].
    public let relativePositionBiasTable: Tensor
    public let heads: Int
    public let window: Int
    /// `relativePositionIndex(window:)`, computed once.
    let index: [Int]

    init(dim: Int, heads: Int, window: Int, qkvBias: Bool) {
        query = Linear(dim, dim, bias: qkvBias); key = Linear(dim, dim, bias: qkvBias); value = Linear(dim, dim, bias: qkvBias)
        relativePositionBiasTable = Init.truncatedNormal([(2 * window - 1) * (2 * window - 1), heads], std: 0.02).requiringGrad()
        self.heads = heads; self.window = window
        index = Self.relativePositionIndex(window: window)
    }

    /// idx(i, j) for i, j over the w × w window in row-major order: the reference's
    /// `relative_position_index` buffer, [N·N] flattened (recomputed, never loaded).
    public static func relativePositionIndex(window w: Int) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(w * w * w * w)
        for i in 0..<(w * w) { for j in 0..<(w * w) {
            out.append((i / w - j / w + w - 1) * (2 * w - 1) + (i % w - j % w + w - 1))
        } }
        return out
    }

    /// The bias [heads, N, N] gathered from the table (differentiable: the table trains through it).
    func positionBias() throws -> Tensor {
        let n = window * window
        return try relativePositionBiasTable.indexSelect(axis: 0, indices: index)
            .reshape([n, n, heads]).permute([2, 0, 1])
    }

    /// Windows x [W, N, D] (W = batch · windows per item) → [W, N, D], heads concatenated. `mask`, when
    /// the block is shifted, is [windows per item, 1, N, N] and is the same for every batch item.
    func callAsFunction(_ x: Tensor, mask: Tensor?) throws -> Tensor {
        let packed = try Linear.packedProjection(x, query: query, key: key, value: value)
        let bias = try positionBias()
        guard let mask else { return try packed.packedSelfAttention(heads: heads, bias: bias) }
        // The mask varies over a batch item's windows, the kernel's bias broadcasts over the batch only
        // as a whole: attend one batch item (its windows as the kernel's batch) at a time rather than
        // materialising [B · windows, H, N, N].
        let perItem = mask.shape[0]
        let combined = try bias.unsqueeze(0) + mask
        let items = x.shape[0] / perItem
        let outs = try (0..<items).map { b in
            try packed.slice(axis: 0, start: b * perItem, end: (b + 1) * perItem).packedSelfAttention(heads: heads, bias: combined)
        }
        return items == 1 ? outs[0] : try Tensor.concat(outs, axis: 0)
    }
}

/// `attention.output.dense` after the window attention.
public final class SwinSelfOutput: Module {
    @Child public private(set) var dense: Linear
    init(dim: Int) { dense = Linear(dim, dim) }
}

public final class SwinAttention: Module {
    public let selfAttention: SwinSelfAttention
    public let output: SwinSelfOutput
    override public var keyOverrides: [String: String] { ["selfAttention": "self"] }

    init(dim: Int, heads: Int, window: Int, qkvBias: Bool) {
        selfAttention = SwinSelfAttention(dim: dim, heads: heads, window: window, qkvBias: qkvBias)
        output = SwinSelfOutput(dim: dim)
    }
}

/// A `dense` layer (`intermediate.dense`, `output.dense`).
public final class SwinDense: Module {
    @Child public private(set) var dense: Linear
    init(_ inFeatures: Int, _ outFeatures: Int) { dense = Linear(inFeatures, outFeatures) }
}

/// One pre-LN Swin block on a (rows × cols) token grid, keyed as Hugging Face's `ClapAudioLayer`:
///
///     h = x + proj(WindowAttention(roll(LN₁(x), −s)))  rolled back by +s
///     y = h + W₂ · GELU(W₁ · LN₂(h))
///
/// With shift s > 0 (odd blocks: s = w/2) the grid is rolled by −s along both axes before it is cut
/// into windows, and tokens that were not neighbours before the roll are kept apart by adding −100
/// to their scores (the reference's mask: 3 regions per axis, [0, n−w), [n−w, n−s), [n−s, n)).
/// Roll and window partition are both permutations of token positions, so they are one gather here
/// (and its inverse afterwards), with the same result as the reference's roll/partition/reverse.
/// Not final: `AdaptedSwinLayer` wraps a block (its tensors shared, `init(sharing:)`) to add adapters.
public class SwinLayer: Module {
    @Child public private(set) var layernormBefore: LayerNorm
    public let attention: SwinAttention
    @Child public private(set) var layernormAfter: LayerNorm
    public let intermediate: SwinDense
    public let output: SwinDense
    @Child public private(set) var dropPath: DropPath
    /// Grid, window and the shift actually used (0 where the grid is one window).
    public let rows: Int, cols: Int, window: Int, shift: Int
    /// Window order → grid position, and its inverse.
    let order: [Int], inverse: [Int]
    /// [windows, 1, N, N] of 0 and −100, nil without a shift. Boxed: a constant, not a checkpoint
    /// tensor (reflection would give it a key).
    let maskBox: ConstantTensor?
    /// The shifted-window mask [windows, 1, N, N] (0 and −100), nil for an unshifted block.
    public var mask: Tensor? { maskBox?.tensor }

    init(dim: Int, heads: Int, grid: (Int, Int), window: Int, shift requested: Int, mlpHidden: Int, eps: Float, dropPath: Float, qkvBias: Bool) {
        layernormBefore = LayerNorm(dim, eps: eps)
        attention = SwinAttention(dim: dim, heads: heads, window: window, qkvBias: qkvBias)
        layernormAfter = LayerNorm(dim, eps: eps)
        intermediate = SwinDense(dim, mlpHidden)
        output = SwinDense(mlpHidden, dim)
        self.dropPath = DropPath(dropPath)
        (rows, cols, self.window) = (grid.0, grid.1, window)
        // The reference (`set_shift_and_window_size`): a grid no larger than the window is one window, unshifted.
        shift = min(grid.0, grid.1) <= window ? 0 : requested
        (order, inverse) = SwinLayer.windowOrder(rows: rows, cols: cols, window: window, shift: shift)
        maskBox = shift > 0 ? ConstantTensor(tensor: SwinLayer.shiftMask(rows: rows, cols: cols, window: window, shift: shift)) : nil
    }

    /// A block holding `other`'s children and constants themselves (same tensors, same keys), for
    /// wrappers that subclass it.
    init(sharing other: SwinLayer) {
        layernormBefore = other.layernormBefore
        attention = other.attention
        layernormAfter = other.layernormAfter
        intermediate = other.intermediate
        output = other.output
        dropPath = other.dropPath
        (rows, cols, window, shift) = (other.rows, other.cols, other.window, other.shift)
        (order, inverse, maskBox) = (other.order, other.inverse, other.maskBox)
    }

    /// The block's width D.
    public var width: Int { attention.output.dense.weight.shape[0] }

    /// order[k] = the grid position (row-major) of the k-th token in window order after rolling the grid
    /// by −shift: window (a, b) row-major, then (i, j) within it; that token is the original one at
    /// ((a·w + i + s) mod rows, (b·w + j + s) mod cols).
    static func windowOrder(rows: Int, cols: Int, window w: Int, shift s: Int) -> ([Int], [Int]) {
        var order: [Int] = []
        order.reserveCapacity(rows * cols)
        for a in 0..<(rows / w) { for b in 0..<(cols / w) { for i in 0..<w { for j in 0..<w {
            order.append(((a * w + i + s) % rows) * cols + (b * w + j + s) % cols)
        } } } }
        var inverse = [Int](repeating: 0, count: order.count)
        for (k, p) in order.enumerated() { inverse[p] = k }
        return (order, inverse)
    }

    /// mask[window][0][i][j] = 0 where tokens i and j of the (rolled) window come from the same region,
    /// else −100; regions per axis of length n: [0, n − w), [n − w, n − s), [n − s, n).
    static func shiftMask(rows: Int, cols: Int, window w: Int, shift s: Int) -> Tensor {
        func region(_ x: Int, _ n: Int) -> Int { (x >= n - w ? 1 : 0) + (x >= n - s ? 1 : 0) }
        let n = w * w, windows = (rows / w) * (cols / w)
        let mask = Tensor.zeros([windows, 1, n, n])
        var k = 0
        for a in 0..<(rows / w) { for b in 0..<(cols / w) {
            let ids = (0..<n).map { t in region(a * w + t / w, rows) * 3 + region(b * w + t % w, cols) }
            for i in 0..<n { for j in 0..<n where ids[i] != ids[j] { mask.data[(k * n + i) * n + j] = -100 } }
            k += 1
        } }
        return mask
    }

    /// x [B, rows·cols, D] → [B, rows·cols, D].
    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = try x + dropPath(attend(layernormBefore(x)))
        return try h + dropPath(feedForward(layernormAfter(h)))
    }

    /// The attention half on normalised tokens u [B, rows·cols, D] in grid order: the (shifted) window
    /// attention and its output projection, back in grid order.
    func attend(_ u: Tensor) throws -> Tensor {
        let (b, l, d) = (u.shape[0], u.shape[1], u.shape[2])
        let n = window * window
        let windows = try u.indexSelect(axis: 1, indices: order).reshape([b * l / n, n, d])
        let attended = try attention.output.dense(attention.selfAttention(windows, mask: mask))
        return try attended.reshape([b, l, d]).indexSelect(axis: 1, indices: inverse)
    }

    /// The feed-forward half on normalised tokens: W₂ · GELU(W₁ · u).
    func feedForward(_ u: Tensor) throws -> Tensor {
        try output.dense(intermediate.dense(u).gelu())
    }
}

/// A tensor a module computes for itself and never saves (`Module` gives every stored `Tensor` a key).
struct ConstantTensor { let tensor: Tensor }

/// Patch merging between stages: each 2 × 2 block of tokens [x(2r, 2c), x(2r+1, 2c), x(2r, 2c+1),
/// x(2r+1, 2c+1)] concatenated (4D), LayerNorm, then a bias-free Linear 4D → 2D: the grid halves, the
/// width doubles (`downsample.norm`, `downsample.reduction`).
public final class SwinPatchMerging: Module {
    @Child public private(set) var reduction: Linear
    @Child public private(set) var norm: LayerNorm

    init(dim: Int) {
        reduction = Linear(4 * dim, 2 * dim, bias: false)
        norm = LayerNorm(4 * dim)
    }

    /// x [B, rows·cols, D] → [B, rows/2 · cols/2, 2D].
    func callAsFunction(_ x: Tensor, rows: Int, cols: Int) throws -> Tensor {
        let (b, d) = (x.shape[0], x.shape[2])
        // [B, r/2, 2 (row parity), c/2, 2 (column parity), D] → column parity outer, row parity inner.
        let blocks = try x.reshape([b, rows / 2, 2, cols / 2, 2, d]).permute([0, 1, 3, 4, 2, 5])
            .reshape([b, rows / 2 * cols / 2, 4 * d])
        return try reduction(norm(blocks))
    }
}

/// One stage: its blocks (shift 0, w/2, 0, w/2, …) and the merging after it (none after the last).
public final class SwinStage: Module {
    @Child public private(set) var blocks: [SwinLayer]
    public let downsample: SwinPatchMerging?
    public let rows: Int, cols: Int

    init(_ c: HTSATConfig, stage i: Int, dropPaths: [Float]) {
        let dim = c.patchDim << i
        (rows, cols) = (c.grid.rows >> i, c.grid.cols >> i)
        blocks = dropPaths.enumerated().map { j, p in
            SwinLayer(dim: dim, heads: c.heads[i], grid: (c.grid.rows >> i, c.grid.cols >> i), window: c.window,
                      shift: j % 2 == 0 ? 0 : c.window / 2, mlpHidden: c.mlpHidden(dim), eps: c.layerNormEps,
                      dropPath: p, qkvBias: c.qkvBias)
        }
        downsample = i < c.depths.count - 1 ? SwinPatchMerging(dim: dim) : nil
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = x
        for block in blocks { h = try block(h) }
        if let downsample { h = try downsample(h, rows: rows, cols: cols) }
        return h
    }
}
