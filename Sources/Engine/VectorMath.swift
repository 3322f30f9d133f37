/// SIMD transcendental functions. Scalar `expf` in a loop is ~10x slower than these, and the standard
/// library's SIMD helpers (`clamped`, `pointwiseMin`, `rounded`) scalarise (see ENGINE-NOTES), so the
/// code below uses only arithmetic, compares with `replacing`, and bit casts.
typealias V8 = SIMD8<Float>

enum VMath {
    /// a·b + c, fused where the build targets a CPU with FMA (see scripts/build-flags.sh).
    @inline(__always)
    static func fma(_ a: V8, _ b: V8, _ c: V8) -> V8 {
        #if EARSHOT_FMA
        return c.addingProduct(a, b)
        #else
        return a * b + c
        #endif
    }

    /// exp(x), Cephes-style: 2^n * p(r) with r = x - n ln2, relative error ~2e-7 over [-87, 88].
    @inline(__always)
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
    /// denormal-free stand-in for 0 that no softmax sum can notice). Degree-6 polynomial for 2^r on
    /// r ∈ [-0.5, 0.5]: relative error ~1.2e-7. In the attention forward this halved the softmax time.
    @inline(__always)
    static func exp2(_ x: V8) -> V8 {
        var x = x
        let lo = V8(repeating: -126)
        x.replace(with: lo, where: x .< lo)
        let magic = V8(repeating: 12_582_912)  // 1.5 · 2^23: adding it rounds to the nearest integer
        let t = x + magic
        let r = x - (t - magic)
        var p = V8(repeating: 1.535336188319500e-4)
        p = fma(p, r, V8(repeating: 1.339887440266574e-3))
        p = fma(p, r, V8(repeating: 9.618437357674640e-3))
        p = fma(p, r, V8(repeating: 5.550332471162809e-2))
        p = fma(p, r, V8(repeating: 2.402264791363012e-1))
        p = fma(p, r, V8(repeating: 6.931472028550421e-1))
        p = fma(p, r, V8(repeating: 1))
        let n = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
        return p * unsafeBitCast((n &+ 127) &<< 23, to: V8.self)
    }

    /// erf(x) by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
    @inline(__always)
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
    @inline(__always)
    static func tanh(_ x: V8) -> V8 { 1 - 2 / (exp(2 * x) + 1) }

    @inline(__always)
    static func sigmoid(_ x: V8) -> V8 { 1 / (1 + exp(-x)) }

    /// Applies a SIMD function to `n` floats, with a padded tail so results match the vector path.
    @inline(__always)
    static func map(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, _ f: (V8) -> V8) {
        var i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(src + i).loadUnaligned(as: V8.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: f(v), as: V8.self)
            i += 8
        }
        if i < n {
            var v = V8(repeating: 0)
            for j in 0..<(n - i) { v[j] = src[i + j] }
            let r = f(v)
            for j in 0..<(n - i) { dst[i + j] = r[j] }
        }
    }

    /// Two-input variant (e.g. gradient times derivative).
    @inline(__always)
    static func map2(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                     _ n: Int, _ f: (V8, V8) -> V8) {
        var i = 0
        while i + 8 <= n {
            let va = UnsafeRawPointer(a + i).loadUnaligned(as: V8.self)
            let vb = UnsafeRawPointer(b + i).loadUnaligned(as: V8.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: f(va, vb), as: V8.self)
            i += 8
        }
        if i < n {
            var va = V8(repeating: 0), vb = V8(repeating: 0)
            for j in 0..<(n - i) { va[j] = a[i + j]; vb[j] = b[i + j] }
            let r = f(va, vb)
            for j in 0..<(n - i) { dst[i + j] = r[j] }
        }
    }
}
