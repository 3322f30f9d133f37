/// The natural logarithm on SIMD vectors, for feature front ends that take the log of every mel energy
/// (glibc's scalar `logf` was a seventh of Kaldi fbank's time).
extension VMath {
    /// ln(x) for positive normal x, Cephes-style: x = m · 2^e with m ∈ [√½, √2), then
    /// ln x = e ln 2 + ln(1 + r), r = m − 1, with ln(1 + r) = r − r²/2 + r³ P(r) (Cephes `logf`'s degree-8
    /// polynomial) and ln 2 split in two parts so e ln 2 adds without rounding. Relative error ≲ 2e-7
    /// (`VectorLogTests` checks it against `Foundation.log` over 2^-30 ... 2^30); +∞ gives +∞. Zero, negative,
    /// denormal and NaN inputs are not handled (callers floor x first).
    @inline(always)
    static func log(_ x: V8) -> V8 {
        let bits = unsafeBitCast(x, to: SIMD8<Int32>.self)
        // Exponent and mantissa m ∈ [0.5, 1) from the bits (frexp); the exponent becomes a float through
        // the magic-number trick (1.5 · 2^23 + n has n in its low mantissa bits), since the SIMD int-to-float
        // conversion can scalarise (ENGINE-NOTES).
        let magic = V8(repeating: 12_582_912)
        var e = unsafeBitCast((bits &>> 23) &- 126 &+ 0x4B40_0000, to: V8.self) - magic
        var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F00_0000, to: V8.self)
        // Below √½ take 2m and one less exponent, so r = m − 1 stays in [√½ − 1, √2 − 1).
        let small = m .< V8(repeating: 0.707106781186547524)
        e.replace(with: e - 1, where: small)
        m.replace(with: m + m, where: small)
        let r = m - 1
        let z = r * r
        var p = V8(repeating: 7.0376836292e-2)
        p = fma(p, r, V8(repeating: -1.1514610310e-1))
        p = fma(p, r, V8(repeating: 1.1676998740e-1))
        p = fma(p, r, V8(repeating: -1.2420140846e-1))
        p = fma(p, r, V8(repeating: 1.4249322787e-1))
        p = fma(p, r, V8(repeating: -1.6668057665e-1))
        p = fma(p, r, V8(repeating: 2.0000714765e-1))
        p = fma(p, r, V8(repeating: -2.4999993993e-1))
        p = fma(p, r, V8(repeating: 3.3333331174e-1))
        var y = p * r * z
        y = fma(e, V8(repeating: -2.12194440e-4), y)
        y = fma(z, V8(repeating: -0.5), y)
        var out = fma(e, V8(repeating: 0.693359375), r + y)
        out.replace(with: .infinity, where: x .== .infinity)
        return out
    }
}

enum LogFunction: VectorFunction { @inline(always) static func apply(_ v: V8) -> V8 { VMath.log(v) } }

package enum VectorLog {
    /// x[i] = ln(max(x[i], floor)) over `n` floats in place, 8 at a time; `floor` must be a positive normal
    /// float (Kaldi's is float32 epsilon). NaN inputs take the floor.
    package static func logFloored(_ x: UnsafeMutablePointer<Float>, _ n: Int, floor: Float) {
        precondition(floor.isNormal && floor > 0, "VectorLog.logFloored: the floor must be a positive normal float, got \(floor)")
        for i in 0..<n { let v = x[i]; x[i] = v >= floor ? v : floor }
        VMath.apply(LogFunction.self, x, x, n)
    }
}
