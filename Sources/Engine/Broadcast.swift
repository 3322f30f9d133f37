/// NumPy/PyTorch broadcasting: shapes align at the right; a dimension of 1 stretches.
func broadcastShape(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else {
            throw EngineError("\(op): shapes \(a) and \(b) cannot be broadcast (dimension \(i): \(da) vs \(db))")
        }
    }
    return out
}

/// Element strides of `shape` when viewed as `target` (0 along broadcast dimensions).
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let r = target.count
    var strides = [Int](repeating: 0, count: r)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        let ti = i + (r - shape.count)
        strides[ti] = shape[i] == 1 ? 0 : s
        s *= shape[i]
    }
    return strides
}

func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { strides[i] = s; s *= shape[i] }
    return strides
}

/// Visits every row (all dimensions but the last) of `shape` in order, giving the row index and the
/// starting offsets of each operand under its strides.
@inline(always)
func forEachRow(_ shape: [Int], _ strides: [[Int]], _ body: (Int, [Int]) -> Void) {
    let r = shape.count
    if r == 0 { body(0, [Int](repeating: 0, count: strides.count)); return }
    let rows = shape.dropLast().reduce(1, *)
    if rows == 0 || shape[r - 1] == 0 { return }
    var index = [Int](repeating: 0, count: r - 1)
    var offsets = [Int](repeating: 0, count: strides.count)
    for row in 0..<rows {
        body(row, offsets)
        var d = r - 2
        while d >= 0 {
            index[d] += 1
            for k in 0..<strides.count { offsets[k] += strides[k][d] }
            if index[d] < shape[d] { break }
            for k in 0..<strides.count { offsets[k] -= strides[k][d] * shape[d] }
            index[d] = 0
            d -= 1
        }
    }
}

extension Kernels {
    /// Sums `g` down to `shape` over broadcast dimensions (the backward of broadcasting).
    static func sumTo(_ g: Tensor, _ shape: [Int]) -> Tensor {
        if g.shape == shape { return g }
        let out = Tensor.zeros(shape)
        if out.count == 1 {
            var s: Float = 0
            for i in 0..<g.count { s += g.data[i] }
            out.data[0] = s
            return out
        }
        let os = broadcastStrides(shape, to: g.shape)
        let n = g.shape.last ?? 1
        let lastStride = os.last ?? 0
        let src = g.data, dst = out.data
        forEachRow(g.shape, [contiguousStrides(g.shape), os]) { _, off in
            let s = src + off[0], d = dst + off[1]
            if lastStride == 1 {
                for j in 0..<n { d[j] += s[j] }
            } else {
                var acc: Float = 0
                for j in 0..<n { acc += s[j] }
                d[0] += acc
            }
        }
        return out
    }
}
