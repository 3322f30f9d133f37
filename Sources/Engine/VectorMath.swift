/// SIMD transcendental functions. Scalar `expf` in a loop is ~10x slower than these, and the standard
/// library's SIMD helpers (`clamped`, `pointwiseMin`, `rounded`) scalarise (see ENGINE-NOTES), so the
/// code below uses only arithmetic, compares with `replacing`, and bit casts.
typealias V8 = SIMD8<Float>

enum VMath {
    /// a·b + c, fused where the build targets a CPU with FMA (see scripts/build-flags.sh).
    @inline(always)
    static func fma(_ a: V8, _ b: V8, _ c: V8) -> V8 {
        #if EARSHOT_FMA
        return c.addingProduct(a, b)
        #else
        return a * b + c
        #endif
    }

    /// exp(x), Cephes-style: 2^n * p(r) with r = x - n ln2, relative error ~2e-7 over [-87, 88].
    @inline(always)
    static func exp(_ x: V8) -> V8 {
        var x = x
        let hi = V8(repeating: 88.3762626647949), lo = V8(repeating: -87.3365447505531)
        x.replace(with: hi, where: x .> hi)
        x.replace(with: lo, where: x .< lo)
        // n = round(x / ln2) via the magic-number trick: adding 1.5 * 2^23 rounds to nearest.
        let magic = V8(repeating: 12_582_912)
        let t = fma(x, V8(repeating: 1.44269504088896341), magic)
        let n = t - magic
        let r = fma(n, V8(repeating: 2.12194440e-4), fma(n, V8(repeating: -0.693359375), x))
        var p = V8(repeating: 1.9875691500e-4)
        p = fma(p, r, V8(repeating: 1.3981999507e-3))
        p = fma(p, r, V8(repeating: 8.3334519073e-3))
        p = fma(p, r, V8(repeating: 4.1665795894e-2))
        p = fma(p, r, V8(repeating: 1.6666665459e-1))
        p = fma(p, r, V8(repeating: 5.0000001201e-1))
        p = fma(p, r * r, r + 1)
        // 2^n by building the float exponent bits directly.
        let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((ni &+ 127) &<< 23, to: V8.self)
        return p * scale
    }

    /// 2^x for x ≤ 127, for softmax after the row maximum is subtracted (x ≤ 0). Cheaper than `exp`:
    /// no ln2 range reduction and one clamp instead of two (2^x below 2^-126 returns 2^-126 · p, a
    /// denormal-free stand-in for 0 that no softmax sum can notice). Degree-5 polynomial for 2^r on
    /// r ∈ [-0.5, 0.5] with p(0) = 1, fitted for relative error (9e-8; 1.9e-7 evaluated in float32,
    /// tools/fit_gelu_erf.py prints the fit). In the attention forward this halved the softmax time.
    @inline(always)
    static func exp2(_ x: V8) -> V8 {
        var x = x
        let lo = V8(repeating: -126)
        x.replace(with: lo, where: x .< lo)
        // Adding 1.5 · 2^23 rounds to the nearest integer n; adding 127 more leaves n + 127 (the biased
        // exponent of 2^n, 1...254 here) in the low mantissa bits, so one shift builds 2^n.
        let magic = V8(repeating: 12_583_039)
        let t = x + magic
        let r = x - (t - magic)
        var p = V8(repeating: 1.3264726934e-3)
        p = fma(p, r, V8(repeating: 9.6715127017e-3))
        p = fma(p, r, V8(repeating: 5.5507337445e-2))
        p = fma(p, r, V8(repeating: 2.4022242084e-1))
        p = fma(p, r, V8(repeating: 6.9314697760e-1))
        p = fma(p, r, V8(repeating: 1))
        return p * unsafeBitCast(unsafeBitCast(t, to: SIMD8<Int32>.self) &<< 23, to: V8.self)
    }

    /// erf(x) by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
    @inline(always)
    static func erf(_ x: V8) -> V8 {
        let signBits = unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x8000_0000
        let ax = unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: V8.self)
        let t = 1 / (1 + 0.3275911 * ax)
        var y = V8(repeating: 1.061405429)
        y = fma(y, t, V8(repeating: -1.453152027))
        y = fma(y, t, V8(repeating: 1.421413741))
        y = fma(y, t, V8(repeating: -0.284496736))
        y = fma(y, t, V8(repeating: 0.254829592))
        y = 1 - y * t * exp2(ax * ax * V8(repeating: -1.4426950408889634))  // e^(-x²), argument ≤ 0
        return unsafeBitCast(unsafeBitCast(y, to: SIMD8<UInt32>.self) | signBits, to: V8.self)
    }

    /// tanh(x) = 1 - 2 / (exp(2x) + 1); saturates cleanly at both ends.
    @inline(always)
    static func tanh(_ x: V8) -> V8 { 1 - 2 / (exp(2 * x) + 1) }

    @inline(always)
    static func sigmoid(_ x: V8) -> V8 { 1 / (1 + exp(-x)) }

    /// GELU, exact: 0.5 x (1 + erf(x / √2)), with erf(x / √2) ≈ x P(x²) / Q(x²) on |x| ≤ 4√2 (erf is ±1
    /// in float32 beyond). The rational form (tools/fit_gelu_erf.py fits P and Q; |GELU error| < 1.4e-6,
    /// a few float32 ulps of x) is all FMAs and one division: half the time of `erf` above, which made
    /// the MLP's GELU pass ~9% of its time. The backward keeps `erf`.
    @inline(always)
    static func geluErf(_ v: V8) -> V8 {
        var x = v
        let limit = V8(repeating: 5.656854249), negLimit = V8(repeating: -5.656854249)
        x.replace(with: limit, where: x .> limit)
        x.replace(with: negLimit, where: x .< negLimit)
        let t = x * x
        var p = V8(repeating: 2.116585540e-10)
        p = fma(p, t, V8(repeating: -4.341794594e-08))
        p = fma(p, t, V8(repeating: 6.681368121e-06))
        p = fma(p, t, V8(repeating: 3.653013390e-04))
        p = fma(p, t, V8(repeating: 9.183412591e-03))
        p = fma(p, t, V8(repeating: 7.436501580e-02))
        p = fma(p, t, V8(repeating: 7.978843564e-01))
        var q = V8(repeating: 6.608742103e-05)
        q = fma(q, t, V8(repeating: 1.904487910e-03))
        q = fma(q, t, V8(repeating: 2.982499097e-02))
        q = fma(q, t, V8(repeating: 2.598674152e-01))
        q = fma(q, t, V8(repeating: 1))
        let half = 0.5 * v
        return fma(half, x * p / q, half)
    }

    /// GELU, tanh form: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))).
    @inline(always)
    static func geluTanh(_ v: V8) -> V8 {
        0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    }

    /// y = GELU(x) over `n` floats (`y` may be `x`).
    static func gelu(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, approximate: Bool) {
        if approximate { apply(GELUTanh.self, src, dst, n) } else { apply(GELUErf.self, src, dst, n) }
    }

    /// y = F(x) over `n` floats (`y` may be `x`), with a padded tail so results match the vector path.
    /// `F` is a type rather than a closure on purpose: a closure literal whose body is large after
    /// inlining (erf, tanh) stays a separate function, called once per 8 floats with every polynomial
    /// constant reloaded; a generic type parameter is specialised and inlined.
    @inline(always)
    static func apply<F: VectorFunction>(_: F.Type, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            UnsafeMutableRawPointer(dst + i).storeBytes(of: F.apply(UnsafeRawPointer(src + i).loadUnaligned(as: V8.self)), as: V8.self)
            i += 8
        }
        if i < n {
            var v = V8(repeating: 0)
            for j in 0..<(n - i) { v[j] = src[i + j] }
            let r = F.apply(v)
            for j in 0..<(n - i) { dst[i + j] = r[j] }
        }
    }

    /// dst = F(a, b) over `n` floats; the two-input form of `apply`.
    @inline(always)
    static func apply2<F: BinaryOp>(_: F.Type, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                    _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            let va = UnsafeRawPointer(a + i).loadUnaligned(as: V8.self), vb = UnsafeRawPointer(b + i).loadUnaligned(as: V8.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: F.apply(va, vb), as: V8.self)
            i += 8
        }
        if i < n {
            var va = V8(repeating: 0), vb = V8(repeating: 0)
            for j in 0..<(n - i) { va[j] = a[i + j]; vb[j] = b[i + j] }
            let r = F.apply(va, vb)
            for j in 0..<(n - i) { dst[i + j] = r[j] }
        }
    }

    /// dst = F(x, s) (or F(s, x) when `scalarFirst`) over `n` floats, for a broadcast scalar operand.
    @inline(always)
    static func applyScalar<F: BinaryOp>(_: F.Type, _ x: UnsafePointer<Float>, _ s: V8, _ dst: UnsafeMutablePointer<Float>,
                                         _ n: Int, scalarFirst: Bool) {
        @inline(always) func f(_ v: V8) -> V8 { scalarFirst ? F.apply(s, v) : F.apply(v, s) }
        var i = 0
        while i + 8 <= n {
            UnsafeMutableRawPointer(dst + i).storeBytes(of: f(UnsafeRawPointer(x + i).loadUnaligned(as: V8.self)), as: V8.self)
            i += 8
        }
        if i < n {
            var v = V8(repeating: 0)
            for j in 0..<(n - i) { v[j] = x[i + j] }
            let r = f(v)
            for j in 0..<(n - i) { dst[i + j] = r[j] }
        }
    }
}

/// A SIMD function of one vector, passed to kernels as a type so it is specialised (see `VMath.apply`).
protocol VectorFunction { static func apply(_ v: V8) -> V8 }

enum GELUErf: VectorFunction {
    @inline(always) static func apply(_ v: V8) -> V8 { VMath.geluErf(v) }
}

enum GELUTanh: VectorFunction {
    @inline(always) static func apply(_ v: V8) -> V8 { VMath.geluTanh(v) }
}

/// d/dx of exact GELU times the incoming gradient: g (Φ(x) + x φ(x)).
enum GELUErfBackward: BinaryOp {
    @inline(always) static func apply(_ g: V8, _ v: V8) -> V8 {
        let cdf = 0.5 * (1 + VMath.erf(v * 0.7071067811865476))
        let pdf = 0.3989422804014327 * VMath.exp(-0.5 * v * v)
        return g * (cdf + v * pdf)
    }
}

/// d/dx of tanh GELU times the incoming gradient.
enum GELUTanhBackward: BinaryOp {
    @inline(always) static func apply(_ g: V8, _ v: V8) -> V8 {
        let c: V8 = V8(repeating: 0.7978845608028654)
        let t = VMath.tanh(c * (v + 0.044715 * v * v * v))
        let du = c * (1 + 3 * 0.044715 * v * v)
        return g * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du)
    }
}

enum Exp2Function: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { VMath.exp2(v) } }
enum ExpFunction: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { VMath.exp(v) } }
enum SigmoidFunction: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { VMath.sigmoid(v) } }
enum TanhFunction: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { VMath.tanh(v) } }
enum SiLUFunction: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { v * VMath.sigmoid(v) } }

/// d/dx of SiLU times the incoming gradient: g σ(x) (1 + x (1 − σ(x))).
enum SiLUBackward: BinaryOp {
    @inline(always) static func apply(_ g: V8, _ v: V8) -> V8 {
        let s = VMath.sigmoid(v)
        return g * s * (1 + v * (1 - s))
    }
}
