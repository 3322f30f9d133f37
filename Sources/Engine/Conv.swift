/// Convolution through oneDNN (ConvDNNL.swift) or im2col + GEMM (per image and group), and pooling. conv1d is conv2d with H = 1.
public struct Conv2dGeometry: Sendable, Equatable {
    public var stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int), groups: Int
    public init(stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) {
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
    }
    public static func == (a: Self, b: Self) -> Bool {
        a.stride == b.stride && a.padding == b.padding && a.dilation == b.dilation && a.groups == b.groups
    }
}

struct ConvShape {
    let n, c, h, w, o, kh, kw, oh, ow: Int
    let g: Conv2dGeometry
    var cg: Int { c / g.groups }
    var og: Int { o / g.groups }
    var colRows: Int { cg * kh * kw }
    var colCols: Int { oh * ow }
}

extension Kernels {
    static func im2col(_ x: UnsafePointer<Float>, _ s: ConvShape, _ col: UnsafeMutablePointer<Float>) {
        for c in 0..<s.cg { for ki in 0..<s.kh { for kj in 0..<s.kw {
            let row = col + ((c * s.kh + ki) * s.kw + kj) * s.colCols
            let plane = x + c * s.h * s.w
            for oy in 0..<s.oh {
                let iy = oy * s.g.stride.0 - s.g.padding.0 + ki * s.g.dilation.0
                let dst = row + oy * s.ow
                if iy < 0 || iy >= s.h { dst.update(repeating: 0, count: s.ow); continue }
                let src = plane + iy * s.w
                for ox in 0..<s.ow {
                    let ix = ox * s.g.stride.1 - s.g.padding.1 + kj * s.g.dilation.1
                    dst[ox] = (ix >= 0 && ix < s.w) ? src[ix] : 0
                }
            }
        } } }
    }

    static func col2im(_ col: UnsafePointer<Float>, _ s: ConvShape, _ dx: UnsafeMutablePointer<Float>) {
        for c in 0..<s.cg { for ki in 0..<s.kh { for kj in 0..<s.kw {
            let row = col + ((c * s.kh + ki) * s.kw + kj) * s.colCols
            let plane = dx + c * s.h * s.w
            for oy in 0..<s.oh {
                let iy = oy * s.g.stride.0 - s.g.padding.0 + ki * s.g.dilation.0
                if iy < 0 || iy >= s.h { continue }
                let src = row + oy * s.ow, dst = plane + iy * s.w
                for ox in 0..<s.ow {
                    let ix = ox * s.g.stride.1 - s.g.padding.1 + kj * s.g.dilation.1
                    if ix >= 0 && ix < s.w { dst[ix] += src[ox] }
                }
            }
        } } }
    }
}

extension Tensor {
    /// Checks a convolution's operands and gives its shape (output H, W by PyTorch's floor rule).
    func convShape(weight: Tensor, bias: Tensor?, _ g: Conv2dGeometry) throws -> ConvShape {
        try ConvShape.checked(input: shape, weight: weight, bias: bias, g)
    }
}

extension ConvShape {
    static func checked(input: [Int], weight: Tensor, bias: Tensor?, _ g: Conv2dGeometry) throws -> ConvShape {
        try checked(input: input, weight: weight.shape, bias: bias?.shape, g)
    }

    static func checked(input: [Int], weight w: [Int], bias: [Int]?, _ g: Conv2dGeometry) throws -> ConvShape {
        let x = (shape: input, rank: input.count), weight = (shape: w, rank: w.count)
        try check(x.rank == 4, "conv2d: input must be [N, C, H, W], got \(x.shape)")
        try check(weight.rank == 4, "conv2d: weight must be [O, C/groups, kh, kw], got \(weight.shape)")
        try check(g.groups >= 1 && x.shape[1] % g.groups == 0 && weight.shape[0] % g.groups == 0,
                  "conv2d: channels \(x.shape[1]) -> \(weight.shape[0]) not divisible by groups \(g.groups)")
        try check(weight.shape[1] == x.shape[1] / g.groups,
                  "conv2d: weight \(weight.shape) expects \(weight.shape[1] * g.groups) input channels, input has \(x.shape[1])")
        try check(g.stride.0 > 0 && g.stride.1 > 0 && g.dilation.0 > 0 && g.dilation.1 > 0 && g.padding.0 >= 0 && g.padding.1 >= 0,
                  "conv2d: stride and dilation must be positive and padding non-negative")
        let (kh, kw) = (weight.shape[2], weight.shape[3])
        let oh = (x.shape[2] + 2 * g.padding.0 - g.dilation.0 * (kh - 1) - 1) / g.stride.0 + 1
        let ow = (x.shape[3] + 2 * g.padding.1 - g.dilation.1 * (kw - 1) - 1) / g.stride.1 + 1
        try check(oh > 0 && ow > 0, "conv2d: input \(x.shape) is smaller than the kernel \(kh)x\(kw) (after padding)")
        if let bias { try check(bias == [weight.shape[0]], "conv2d: bias shape \(bias), expected [\(weight.shape[0])]") }
        let s = ConvShape(n: x.shape[0], c: x.shape[1], h: x.shape[2], w: x.shape[3], o: weight.shape[0],
                          kh: kh, kw: kw, oh: oh, ow: ow, g: g)
        return s
    }
}

extension Tensor {
    /// 2-d convolution (cross-correlation) of x [N, C, H, W] with weight [O, C/groups, kh, kw].
    public func conv2d(weight: Tensor, bias: Tensor?, _ geometry: Conv2dGeometry = .init()) throws -> Tensor {
        let x = self, s = try convShape(weight: weight, bias: bias, geometry)
        let out = Tensor.empty([s.n, s.o, s.oh, s.ow])
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        let recording = GradMode.enabled && inputs.contains { $0.requiresGrad }
        let plan = DNNLConvPlan.plan(s, bias: bias != nil, training: recording)
        if let plan, (try? plan.forward(x: x.data, weight: weight.data, bias: bias?.data, out: out.data)) != nil {
            return out.recording(inputs) { go in
                if let grads = try? Self.conv2dBackward(plan, go, x, weight, bias) { return grads }
                return Self.conv2dBackwardIm2col(s, go, x, weight, bias)
            }
        }
        Self.conv2dIm2col(s, x, weight, bias, out)
        return out.recording(inputs) { go in Self.conv2dBackwardIm2col(s, go, x, weight, bias) }
    }

    /// The oneDNN backward: dL/dx, dL/dw and dL/db for the inputs that need them.
    private static func conv2dBackward(_ plan: DNNLConvPlan, _ go: Tensor, _ x: Tensor, _ weight: Tensor, _ bias: Tensor?) throws -> [Tensor?] {
        let gx = x.requiresGrad ? Tensor.empty(x.shape) : nil
        let gw = weight.requiresGrad || bias?.requiresGrad == true ? Tensor.empty(weight.shape) : nil
        let gb = bias?.requiresGrad == true ? Tensor.empty(bias!.shape) : nil
        if let gx { try plan.backwardData(gradOut: go.data, weight: weight.data, gradIn: gx.data) }
        if let gw { try plan.backwardWeights(x: x.data, gradOut: go.data, gradWeight: gw.data, gradBias: gb?.data) }
        var grads: [Tensor?] = [gx, weight.requiresGrad ? gw : nil]
        if bias != nil { grads.append(gb) }
        return grads
    }

    /// im2col + GEMM, per image and group: y = W · col(x) + b.
    static func conv2dIm2col(_ s: ConvShape, _ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ out: Tensor) {
        let g = s.g
        let col = Tensor.empty([s.colRows, s.colCols])
        let oStride = s.o * s.colCols
        for i in 0..<s.n { for grp in 0..<g.groups {
            Kernels.im2col(x.data + (i * s.c + grp * s.cg) * s.h * s.w, s, col.data)
            let dst = out.data + i * oStride + grp * s.og * s.colCols
            if let bias { for oc in 0..<s.og { (dst + oc * s.colCols).update(repeating: bias.data[grp * s.og + oc], count: s.colCols) } }
            Kernels.gemm(transA: false, transB: false, m: s.og, n: s.colCols, k: s.colRows,
                         a: weight.data + grp * s.og * s.colRows, lda: s.colRows, b: col.data, ldb: s.colCols,
                         beta: bias == nil ? 0 : 1, c: dst, ldc: s.colCols)
        } }
    }

    /// The im2col backward: dW = dY · col(x)ᵀ, dx = col2im(Wᵀ · dY), db = Σ dY.
    static func conv2dBackwardIm2col(_ s: ConvShape, _ go: Tensor, _ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> [Tensor?] {
        let g = s.g
        let oStride = s.o * s.colCols
        let gx = x.requiresGrad ? Tensor.zeros(x.shape) : nil
        let gw = weight.requiresGrad ? Tensor.zeros(weight.shape) : nil
        let col = Tensor.empty([s.colRows, s.colCols])
        let dcol = Tensor.empty([s.colRows, s.colCols])
        for i in 0..<s.n { for grp in 0..<g.groups {
            let gsrc = go.data + i * oStride + grp * s.og * s.colCols
            if let gw {
                Kernels.im2col(x.data + (i * s.c + grp * s.cg) * s.h * s.w, s, col.data)
                Kernels.gemm(transA: false, transB: true, m: s.og, n: s.colRows, k: s.colCols, a: gsrc, lda: s.colCols,
                             b: col.data, ldb: s.colCols, beta: 1, c: gw.data + grp * s.og * s.colRows, ldc: s.colRows)
            }
            if let gx {
                Kernels.gemm(transA: true, transB: false, m: s.colRows, n: s.colCols, k: s.og,
                             a: weight.data + grp * s.og * s.colRows, lda: s.colRows, b: gsrc, ldb: s.colCols,
                             c: dcol.data, ldc: s.colCols)
                Kernels.col2im(dcol.data, s, gx.data + (i * s.c + grp * s.cg) * s.h * s.w)
            }
        } }
        var grads: [Tensor?] = [gx, gw]
        if let bias {
            var gb: Tensor?
            if bias.requiresGrad {
                gb = Tensor.zeros([s.o])
                for i in 0..<s.n { for oc in 0..<s.o {
                    let p = go.data + i * oStride + oc * s.colCols
                    var acc: Float = 0
                    for j in 0..<s.colCols { acc += p[j] }
                    gb!.data[oc] += acc
                } }
            }
            grads.append(gb)
        }
        return grads
    }

    /// 1-d convolution of x [N, C, L] with weight [O, C/groups, k].
    public func conv1d(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1) throws -> Tensor {
        try check(rank == 3, "conv1d: input must be [N, C, L], got \(shape)")
        try check(weight.rank == 3, "conv1d: weight must be [O, C/groups, k], got \(weight.shape)")
        let y = try unsqueeze(2).conv2d(weight: weight.unsqueeze(2), bias: bias,
                                        Conv2dGeometry(stride: (1, stride), padding: (0, padding), dilation: (1, dilation), groups: groups))
        return try y.squeeze(2)
    }
}

// MARK: Pooling

extension Tensor {
    /// Pools x [N, C, H, W] over windows given per output cell by `window(oy, ox) -> (y0, y1, x0, x1)`
    /// (half-open, clipped to the input); `divisor` gives the averaging count.
    private func pool2d(outH: Int, outW: Int, isMax: Bool,
                        window: (Int, Int) -> (Int, Int, Int, Int), divisor: (Int, Int) -> Float) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let out = Tensor.empty([n, c, outH, outW])
        var argmax = isMax ? [Int](repeating: -1, count: out.count) : []
        var windows: [(Int, Int, Int, Int, Float)] = []
        for oy in 0..<outH { for ox in 0..<outW { let b = window(oy, ox); windows.append((b.0, b.1, b.2, b.3, divisor(oy, ox))) } }
        for p in 0..<(n * c) {
            let src = data + p * h * w
            for (cell, win) in windows.enumerated() {
                let o = p * outH * outW + cell
                if isMax {
                    var best = -Float.infinity, bi = -1
                    for y in win.0..<win.1 { for x in win.2..<win.3 where src[y * w + x] > best || bi < 0 { best = src[y * w + x]; bi = y * w + x } }
                    out.data[o] = best; argmax[o] = bi
                } else {
                    var acc: Float = 0
                    for y in win.0..<win.1 { for x in win.2..<win.3 { acc += src[y * w + x] } }
                    out.data[o] = acc / win.4
                }
            }
        }
        let inShape = shape
        return out.recording([self]) { g in
            let gx = Tensor.zeros(inShape)
            for p in 0..<(n * c) {
                let dst = gx.data + p * h * w
                for (cell, win) in windows.enumerated() {
                    let o = p * outH * outW + cell
                    if isMax { if argmax[o] >= 0 { dst[argmax[o]] += g.data[o] } } else {
                        let v = g.data[o] / win.4
                        for y in win.0..<win.1 { for x in win.2..<win.3 { dst[y * w + x] += v } }
                    }
                }
            }
            return [gx]
        }
    }

    private func checkedPool(_ name: String, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)) throws -> (Int, Int) {
        try check(rank == 4, "\(name): input must be [N, C, H, W], got \(shape)")
        try check(kernel.0 > 0 && kernel.1 > 0 && stride.0 > 0 && stride.1 > 0, "\(name): kernel and stride must be positive")
        try check(padding.0 * 2 <= kernel.0 && padding.1 * 2 <= kernel.1, "\(name): padding must be at most half the kernel")
        let oh = (shape[2] + 2 * padding.0 - kernel.0) / stride.0 + 1
        let ow = (shape[3] + 2 * padding.1 - kernel.1) / stride.1 + 1
        try check(oh > 0 && ow > 0, "\(name): input \(shape) is smaller than the kernel \(kernel)")
        return (oh, ow)
    }

    /// Max pooling; padding counts as −∞, like PyTorch.
    public func maxPool2d(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) throws -> Tensor {
        let st = stride ?? kernel
        let (oh, ow) = try checkedPool("maxPool2d", kernel: kernel, stride: st, padding: padding)
        let (h, w) = (shape[2], shape[3])
        return pool2d(outH: oh, outW: ow, isMax: true, window: { oy, ox in
            let y0 = oy * st.0 - padding.0, x0 = ox * st.1 - padding.1
            return (Swift.max(y0, 0), Swift.min(y0 + kernel.0, h), Swift.max(x0, 0), Swift.min(x0 + kernel.1, w))
        }, divisor: { _, _ in 1 })
    }

    /// Average pooling with `count_include_pad=True` (PyTorch's default).
    public func avgPool2d(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) throws -> Tensor {
        let st = stride ?? kernel
        let (oh, ow) = try checkedPool("avgPool2d", kernel: kernel, stride: st, padding: padding)
        let (h, w) = (shape[2], shape[3])
        return pool2d(outH: oh, outW: ow, isMax: false, window: { oy, ox in
            let y0 = oy * st.0 - padding.0, x0 = ox * st.1 - padding.1
            return (Swift.max(y0, 0), Swift.min(y0 + kernel.0, h), Swift.max(x0, 0), Swift.min(x0 + kernel.1, w))
        }, divisor: { _, _ in Float(kernel.0 * kernel.1) })
    }

    /// Adaptive pooling to (outH, outW): cell i covers [⌊i·H/out⌋, ⌈(i+1)·H/out⌉).
    public func adaptivePool2d(_ outH: Int, _ outW: Int, max isMax: Bool = false) throws -> Tensor {
        try check(rank == 4, "adaptivePool2d: input must be [N, C, H, W], got \(shape)")
        try check(outH > 0 && outW > 0, "adaptivePool2d: output size must be positive")
        let (h, w) = (shape[2], shape[3])
        let win: (Int, Int) -> (Int, Int, Int, Int) = { oy, ox in
            (oy * h / outH, ((oy + 1) * h + outH - 1) / outH, ox * w / outW, ((ox + 1) * w + outW - 1) / outW)
        }
        return pool2d(outH: outH, outW: outW, isMax: isMax, window: win, divisor: { oy, ox in
            let b = win(oy, ox); return Float((b.1 - b.0) * (b.3 - b.2))
        })
    }

    public func maxPool1d(kernel: Int, stride: Int? = nil, padding: Int = 0) throws -> Tensor {
        try check(rank == 3, "maxPool1d: input must be [N, C, L], got \(shape)")
        return try unsqueeze(2).maxPool2d(kernel: (1, kernel), stride: (1, stride ?? kernel), padding: (0, padding)).squeeze(2)
    }

    public func avgPool1d(kernel: Int, stride: Int? = nil, padding: Int = 0) throws -> Tensor {
        try check(rank == 3, "avgPool1d: input must be [N, C, L], got \(shape)")
        return try unsqueeze(2).avgPool2d(kernel: (1, kernel), stride: (1, stride ?? kernel), padding: (0, padding)).squeeze(2)
    }

    public func adaptivePool1d(_ out: Int, max isMax: Bool = false) throws -> Tensor {
        try check(rank == 3, "adaptivePool1d: input must be [N, C, L], got \(shape)")
        return try unsqueeze(2).adaptivePool2d(1, out, max: isMax).squeeze(2)
    }
}
