/// Shape and indexing ops. All results are contiguous; `reshape` is a view sharing storage.
extension Kernels {
    /// Materialises `x` broadcast to `shape`.
    static func expand(_ x: Tensor, _ shape: [Int]) -> Tensor {
        if x.shape == shape { return x }
        let out = Tensor.empty(shape)
        let s = broadcastStrides(x.shape, to: shape)
        let n = shape.last ?? 1, last = s.last ?? 0
        let src = x.data, dst = out.data
        forEachRow(shape, [s]) { row, off in
            let d = dst + row * n
            if last == 1 { d.update(from: src + off[0], count: n) } else { d.update(repeating: src[off[0]], count: n) }
        }
        return out
    }

    /// Copies `x` with its axes reordered by `perm` (out axis i = in axis perm[i]).
    static func permute(_ x: Tensor, _ perm: [Int]) -> Tensor {
        let outShape = perm.map { x.shape[$0] }
        let out = Tensor.empty(outShape)
        let inStrides = contiguousStrides(x.shape)
        let strides = perm.map { inStrides[$0] }
        let n = outShape.last ?? 1, last = strides.last ?? 1
        let src = x.data, dst = out.data
        forEachRow(outShape, [strides]) { row, off in
            let d = dst + row * n, s = src + off[0]
            if last == 1 { d.update(from: s, count: n) } else { for j in 0..<n { d[j] = s[j * last] } }
        }
        return out
    }
}

extension Tensor {
    /// A view with a new shape (one dimension may be -1). Shares storage, like `torch.reshape` on a
    /// contiguous tensor.
    public func reshape(_ newShape: [Int]) throws -> Tensor {
        var s = newShape
        let unknown = s.indices.filter { s[$0] == -1 }
        try check(unknown.count <= 1, "reshape: more than one -1 in \(newShape)")
        if let u = unknown.first {
            let known = s.enumerated().filter { $0.offset != u }.reduce(1) { $0 * $1.element }
            try check(known > 0 && count % known == 0, "reshape: cannot reshape \(shape) into \(newShape)")
            s[u] = count / known
        }
        try check(s.allSatisfy { $0 >= 0 } && s.reduce(1, *) == count,
                  "reshape: cannot reshape \(shape) (\(count) elements) into \(newShape)")
        let inShape = shape
        return Tensor(shape: s, storage: storage).recording([self]) { g in
            [Tensor(shape: inShape, storage: g.storage)]
        }
    }

    public func flatten(from start: Int = 0) throws -> Tensor {
        let a = try normalizedAxis(start, op: "flatten")
        return try reshape(Array(shape[..<a]) + [shape[a...].reduce(1, *)])
    }

    public func unsqueeze(_ axis: Int) throws -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        try check(a >= 0 && a <= rank, "unsqueeze: axis \(axis) out of range for shape \(shape)")
        var s = shape; s.insert(1, at: a)
        return try reshape(s)
    }

    public func squeeze(_ axis: Int) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "squeeze")
        try check(shape[a] == 1, "squeeze: axis \(axis) of shape \(shape) has size \(shape[a]), not 1")
        var s = shape; s.remove(at: a)
        return try reshape(s)
    }

    /// Broadcasts to `shape` (materialised copy), like `expand(...).contiguous()`.
    public func expand(_ newShape: [Int]) throws -> Tensor {
        let b = try broadcastShape(shape, newShape, op: "expand")
        try check(b == newShape, "expand: shape \(shape) cannot be expanded to \(newShape)")
        let inShape = shape
        return Kernels.expand(self, newShape).recording([self]) { g in [Kernels.sumTo(g, inShape)] }
    }

    public func permute(_ perm: [Int]) throws -> Tensor {
        let p = try perm.map { try normalizedAxis($0, op: "permute") }
        try check(p.count == rank && Set(p).count == rank, "permute: \(perm) is not a permutation of the axes of \(shape)")
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in p.enumerated() { inverse[a] = i }
        return Kernels.permute(self, p).recording([self]) { g in [Kernels.permute(g, inverse)] }
    }

    public func transpose(_ a: Int, _ b: Int) throws -> Tensor {
        let x = try normalizedAxis(a, op: "transpose"), y = try normalizedAxis(b, op: "transpose")
        var p = Array(0..<rank); p.swapAt(x, y)
        return try permute(p)
    }

    /// Elements `start..<end` (with `step`) along `axis`; negative bounds count from the end.
    public func slice(axis: Int, start: Int, end: Int? = nil, step: Int = 1) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "slice")
        let n = shape[a]
        try check(step >= 1, "slice: step must be positive, got \(step)")
        let lo = Swift.min(Swift.max(start < 0 ? start + n : start, 0), n)
        let hiRaw = end ?? n
        let hi = Swift.min(Swift.max(hiRaw < 0 ? hiRaw + n : hiRaw, lo), n)
        let len = (hi - lo + step - 1) / step
        var outShape = shape; outShape[a] = len
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *)
        let out = Tensor.empty(outShape)
        // With step 1 the kept elements of each outer index are one run: one copy per run, not one per
        // element (slicing the last axis, inner = 1, had cost a call per float).
        let (runs, run, stride) = step == 1 ? (1, len * inner, 0) : (len, inner, step * inner)
        for o in 0..<outer { for j in 0..<runs {
            (out.data + o * len * inner + j * run).update(from: data + (o * n + lo) * inner + j * stride, count: run)
        } }
        let inShape = shape
        return out.recording([self]) { g in
            let gx = Tensor.zeros(inShape)
            for o in 0..<outer { for j in 0..<runs {
                (gx.data + (o * n + lo) * inner + j * stride).update(from: g.data + o * len * inner + j * run, count: run)
            } }
            return [gx]
        }
    }

    /// Joins tensors along `axis`; all other dimensions must agree.
    public static func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        try check(!tensors.isEmpty, "concat: no tensors")
        let first = tensors[0]
        let a = try first.normalizedAxis(axis, op: "concat")
        for (i, t) in tensors.enumerated() {
            var s1 = t.shape, s0 = first.shape
            try check(s1.count == s0.count, "concat: tensor \(i) has shape \(t.shape), tensor 0 has \(first.shape)")
            s1[a] = 0; s0[a] = 0
            try check(s1 == s0, "concat: tensor \(i) has shape \(t.shape), incompatible with \(first.shape) along axis \(axis)")
        }
        let sizes = tensors.map { $0.shape[a] }
        let total = sizes.reduce(0, +)
        var outShape = first.shape; outShape[a] = total
        let outer = first.shape[..<a].reduce(1, *), inner = first.shape[(a + 1)...].reduce(1, *)
        let out = Tensor.empty(outShape)
        var offset = 0
        for (t, n) in zip(tensors, sizes) {
            for o in 0..<outer {
                (out.data + (o * total + offset) * inner).update(from: t.data + o * n * inner, count: n * inner)
            }
            offset += n
        }
        let parts = tensors.map { ($0.shape, $0.requiresGrad) }   // not the tensors: they need not stay alive
        return out.recording(tensors) { g in
            var grads: [Tensor?] = []
            var off = 0
            for ((shape, needsGrad), n) in zip(parts, sizes) {
                defer { off += n }
                guard needsGrad else { grads.append(nil); continue }
                let gt = Tensor.empty(shape)
                for o in 0..<outer {
                    (gt.data + o * n * inner).update(from: g.data + (o * total + off) * inner, count: n * inner)
                }
                grads.append(gt)
            }
            return grads
        }
    }

    public static func stack(_ tensors: [Tensor], axis: Int = 0) throws -> Tensor {
        try check(!tensors.isEmpty, "stack: no tensors")
        for (i, t) in tensors.enumerated() {
            try check(t.shape == tensors[0].shape, "stack: tensor \(i) has shape \(t.shape), tensor 0 has \(tensors[0].shape)")
        }
        return try concat(tensors.map { try $0.unsqueeze(axis) }, axis: axis)
    }

    /// Constant padding: `pads[i] = (before, after)` for axis i counted from the *first* axis; missing
    /// trailing entries mean no padding.
    public func pad(_ pads: [(Int, Int)], value: Float = 0) throws -> Tensor {
        try check(pads.count <= rank, "pad: \(pads.count) pad pairs for a tensor of rank \(rank)")
        let p = pads + Array(repeating: (0, 0), count: rank - pads.count)
        try check(p.allSatisfy { $0.0 >= 0 && $0.1 >= 0 }, "pad: negative padding")
        var outShape = shape
        for i in 0..<rank { outShape[i] += p[i].0 + p[i].1 }
        let out = Tensor.full(outShape, value)
        let outStrides = contiguousStrides(outShape)
        let base = zip(p, outStrides).reduce(0) { $0 + $1.0.0 * $1.1 }
        let n = shape.last ?? 1
        if count > 0 {
            forEachRow(shape, [contiguousStrides(shape), Array(outStrides)]) { _, off in
                (out.data + base + off[1]).update(from: data + off[0], count: n)
            }
        }
        let inShape = shape
        return out.recording([self]) { g in
            let gx = Tensor.empty(inShape)
            if gx.count > 0 {
                forEachRow(inShape, [contiguousStrides(inShape), outStrides]) { _, off in
                    (gx.data + off[0]).update(from: g.data + base + off[1], count: n)
                }
            }
            return [gx]
        }
    }

    /// Reverses the order of elements along `axes`.
    public func flip(_ axes: [Int]) throws -> Tensor {
        let ax = try normalizedAxes(axes, op: "flip")
        func flipped(_ x: Tensor) -> Tensor {
            var cur = x
            for a in ax {
                let outer = x.shape[..<a].reduce(1, *), n = x.shape[a], inner = x.shape[(a + 1)...].reduce(1, *)
                let out = Tensor.empty(x.shape)
                for o in 0..<outer { for j in 0..<n {
                    (out.data + (o * n + j) * inner).update(from: cur.data + (o * n + n - 1 - j) * inner, count: inner)
                } }
                cur = out
            }
            return cur
        }
        return flipped(self).recording([self]) { g in [flipped(g)] }
    }

    /// Slices along `axis` at `indices` (repeats allowed), like `torch.index_select`.
    public func indexSelect(axis: Int, indices: [Int]) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "indexSelect")
        let n = shape[a]
        for i in indices { try check(i >= 0 && i < n, "indexSelect: index \(i) out of range for axis \(axis) of size \(n)") }
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *), m = indices.count
        var outShape = shape; outShape[a] = m
        let out = Tensor.empty(outShape)
        for o in 0..<outer { for (j, i) in indices.enumerated() {
            (out.data + (o * m + j) * inner).update(from: data + (o * n + i) * inner, count: inner)
        } }
        let inShape = shape
        return out.recording([self]) { g in
            let gx = Tensor.zeros(inShape)
            for o in 0..<outer { for (j, i) in indices.enumerated() {
                let d = gx.data + (o * n + i) * inner, s = g.data + (o * m + j) * inner
                for k in 0..<inner { d[k] += s[k] }
            } }
            return [gx]
        }
    }

    /// `torch.gather`: out[..., j, ...] = self[..., index[..., j, ...], ...] along `axis`. `index` is
    /// row-major with shape `indexShape`, which must match `shape` except along `axis`.
    public func gather(axis: Int, index: [Int], indexShape: [Int]) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "gather")
        try check(indexShape.count == rank && index.count == indexShape.reduce(1, *),
                  "gather: index shape \(indexShape) (\(index.count) values) does not fit a tensor of shape \(shape)")
        for d in 0..<rank where d != a {
            try check(indexShape[d] == shape[d], "gather: index shape \(indexShape) differs from \(shape) in axis \(d)")
        }
        let n = shape[a]
        for i in index { try check(i >= 0 && i < n, "gather: index \(i) out of range for axis \(axis) of size \(n)") }
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *), m = indexShape[a]
        let out = Tensor.empty(indexShape)
        for o in 0..<outer { for j in 0..<m { for k in 0..<inner {
            let pos = (o * m + j) * inner + k
            out.data[pos] = data[(o * n + index[pos]) * inner + k]
        } } }
        let inShape = shape
        return out.recording([self]) { g in
            let gx = Tensor.zeros(inShape)
            for o in 0..<outer { for j in 0..<m { for k in 0..<inner {
                let pos = (o * m + j) * inner + k
                gx.data[(o * n + index[pos]) * inner + k] += g.data[pos]
            } } }
            return [gx]
        }
    }

    /// Replaces elements where `mask` (broadcastable, nonzero = true) holds with `value`.
    public func maskedFill(_ mask: Tensor, _ value: Float) throws -> Tensor {
        let b = try broadcastShape(shape, mask.shape, op: "maskedFill")
        try check(b == shape, "maskedFill: mask shape \(mask.shape) does not broadcast to \(shape)")
        let m = Kernels.expand(mask, shape)
        let out = Tensor.empty(shape)
        for i in 0..<count { out.data[i] = m.data[i] != 0 ? value : data[i] }
        return out.recording([self]) { g in
            let gx = Tensor.empty(g.shape)
            for i in 0..<gx.count { gx.data[i] = m.data[i] != 0 ? 0 : g.data[i] }
            return [gx]
        }
    }

    /// `torch.where(condition, a, b)` with broadcasting; condition is nonzero = true.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        let s = try broadcastShape(try broadcastShape(condition.shape, a.shape, op: "where"), b.shape, op: "where")
        let c = Kernels.expand(condition, s), ea = Kernels.expand(a, s), eb = Kernels.expand(b, s)
        let out = Tensor.empty(s)
        for i in 0..<out.count { out.data[i] = c.data[i] != 0 ? ea.data[i] : eb.data[i] }
        let (sa, sb, needA, needB) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
        return out.recording([a, b]) { g in
            let ga = Tensor.empty(s), gb = Tensor.empty(s)
            for i in 0..<g.count {
                let take = c.data[i] != 0
                ga.data[i] = take ? g.data[i] : 0
                gb.data[i] = take ? 0 : g.data[i]
            }
            return [needA ? Kernels.sumTo(ga, sa) : nil, needB ? Kernels.sumTo(gb, sb) : nil]
        }
    }
}
