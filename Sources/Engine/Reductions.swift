/// Reductions over axes. Each reduces one axis at a time as [outer, n, inner] so the inner loop runs
/// over contiguous memory.
extension Tensor {
    func normalizedAxis(_ axis: Int, op: String) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        try check(a >= 0 && a < Swift.max(rank, 1), "\(op): axis \(axis) is out of range for shape \(shape)")
        return a
    }

    func normalizedAxes(_ axes: [Int]?, op: String) throws -> [Int] {
        guard let axes else { return Array(0..<rank) }
        let n = try axes.map { try normalizedAxis($0, op: op) }
        try check(Set(n).count == n.count, "\(op): repeated axis in \(axes)")
        return n.sorted()
    }

    /// Sum over `axes` (all when nil).
    public func sum(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        let ax = try normalizedAxes(axes, op: "sum")
        var kept = shape
        for a in ax { kept[a] = 1 }
        var out = self.detach()
        for a in ax.reversed() { out = Kernels.sumAxis(out, a) }
        let finalShape = keepDim ? kept : shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
        let result = Tensor(shape: finalShape, storage: out.storage)
        let inShape = shape
        return result.recording([self]) { g in
            let gk = Tensor(shape: kept, storage: g.storage)
            return [Kernels.expand(gk, inShape)]
        }
    }

    public func sum(axis: Int, keepDim: Bool = false) throws -> Tensor { try sum(axes: [axis], keepDim: keepDim) }

    public func mean(axes: [Int]? = nil, keepDim: Bool = false) throws -> Tensor {
        let ax = try normalizedAxes(axes, op: "mean")
        let n = ax.reduce(1) { $0 * shape[$1] }
        try check(n > 0, "mean: reducing an empty axis of shape \(shape)")
        return try sum(axes: ax, keepDim: keepDim) * (1 / Float(n))
    }

    public func mean(axis: Int, keepDim: Bool = false) throws -> Tensor { try mean(axes: [axis], keepDim: keepDim) }

    /// Variance over `axes`; `unbiased` divides by n - 1 like `torch.var`'s default.
    public func variance(axes: [Int]? = nil, unbiased: Bool = true, keepDim: Bool = false) throws -> Tensor {
        let ax = try normalizedAxes(axes, op: "variance")
        let n = ax.reduce(1) { $0 * shape[$1] }
        let mu = try mean(axes: ax, keepDim: true)
        let d = try self - mu
        let ss = try d.square().sum(axes: ax, keepDim: keepDim)
        return ss * (1 / Float(Swift.max(unbiased ? n - 1 : n, 1)))
    }

    /// Maximum along `axis`; the gradient flows to the first maximal element, as in PyTorch.
    public func max(axis: Int, keepDim: Bool = false) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "max")
        try check(shape[a] > 0, "max: axis \(axis) of shape \(shape) is empty")
        let (values, indices) = Kernels.maxAxis(self, a)
        var kept = shape; kept[a] = 1
        let outShape = keepDim ? kept : shape.enumerated().filter { $0.offset != a }.map(\.element)
        let result = Tensor(shape: outShape, storage: values.storage)
        let inShape = shape
        return result.recording([self]) { g in
            let gx = Tensor.zeros(inShape)
            let outer = inShape[..<a].reduce(1, *), n = inShape[a], inner = inShape[(a + 1)...].reduce(1, *)
            for o in 0..<outer { for i in 0..<inner {
                let idx = indices[o * inner + i]
                gx.data[(o * n + idx) * inner + i] = g.data[o * inner + i]
            } }
            return [gx]
        }
    }

    /// Maximum of all elements.
    public func max() throws -> Tensor {
        try check(count > 0, "max: empty tensor")
        return try reshape([count]).max(axis: 0)
    }

    /// Index of the maximum along `axis` (first on ties), flattened in row-major order of the rest.
    public func argmax(axis: Int) throws -> [Int] {
        let a = try normalizedAxis(axis, op: "argmax")
        try check(shape[a] > 0, "argmax: axis \(axis) of shape \(shape) is empty")
        return Kernels.maxAxis(self, a).1
    }
}

extension Kernels {
    static func sumAxis(_ x: Tensor, _ axis: Int) -> Tensor {
        let outer = x.shape[..<axis].reduce(1, *), n = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
        var outShape = x.shape; outShape[axis] = 1
        let out = Tensor.zeros(outShape)
        let src = x.data, dst = out.data
        parallelFor(outer, costPerItem: n * inner) { range in
            for o in range {
                let d = dst + o * inner
                if inner == 1 {
                    var acc = V8(repeating: 0), j = 0
                    let s = src + o * n
                    while j + 8 <= n { acc += UnsafeRawPointer(s + j).loadUnaligned(as: V8.self); j += 8 }
                    var total = acc.sum()
                    while j < n { total += s[j]; j += 1 }
                    d[0] = total
                } else {
                    for j in 0..<n {
                        let s = src + (o * n + j) * inner
                        for i in 0..<inner { d[i] += s[i] }
                    }
                }
            }
        }
        return out
    }

    /// Values and indices of the maximum along `axis`, in [outer, inner] order.
    static func maxAxis(_ x: Tensor, _ axis: Int) -> (Tensor, [Int]) {
        let outer = x.shape[..<axis].reduce(1, *), n = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
        var outShape = x.shape; outShape[axis] = 1
        let out = Tensor.empty(outShape)
        var indices = [Int](repeating: 0, count: outer * inner)
        for o in 0..<outer {
            for i in 0..<inner {
                var best = -Float.infinity, bi = 0
                var sawNaN = false
                for j in 0..<n {
                    let v = x.data[(o * n + j) * inner + i]
                    if v.isNaN { if !sawNaN { best = v; bi = j; sawNaN = true }; continue }
                    if !sawNaN && (v > best || j == 0) { best = v; bi = j }
                }
                out.data[o * inner + i] = best
                indices[o * inner + i] = bi
            }
        }
        return (out, indices)
    }
}
