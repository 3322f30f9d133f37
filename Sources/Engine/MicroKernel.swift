/// The micro-kernel's vector: 8 floats (AVX2, 16 ymm registers), or 16 where the build targets
/// AVX-512 (scripts/build-flags.sh defines EARSHOT_AVX512), which doubles the FLOPs per instruction and
/// has 32 zmm registers for the same tile of 12 accumulators. The kernel code is the same for both.
#if EARSHOT_AVX512
typealias KV = SIMD16<Float>
#else
typealias KV = SIMD8<Float>
#endif

/// A register-tiled 6 x (2·lanes) GEMM micro-kernel (6 x 16 on AVX2, 6 x 32 on AVX-512) for the
/// transformer's products: inside attention OpenBLAS spent much of its time packing (48 GFLOP/s on one
/// core for 128 x 64 x 1212), and the linear layers gain from packing weights once per call.
///
/// C[6 x cols] (=|+=) alpha · A[6 x k] · B[k x cols] with A read by broadcast (row-major, stride lda)
/// and B read as rows of `cols` contiguous floats (stride ldb). Twelve accumulators stay in registers.
enum MicroKernel {
    static let lanes = KV.scalarCount

    /// Whether the build compiles the kernel to vector FMA (scripts/build-flags.sh); in a baseline
    /// build it runs several times slower than OpenBLAS's runtime-dispatched kernels, which take its products.
    static var isFast: Bool {
        #if EARSHOT_FMA
        return true
        #else
        return false
        #endif
    }
    static let rows = 6, cols = 2 * KV.scalarCount

    @inline(always)
    static func fma(_ acc: KV, _ a: KV, _ b: KV) -> KV {
        #if EARSHOT_FMA
        return acc.addingProduct(a, b)
        #else
        return acc + a * b  // baseline x86-64: addingProduct would become a libm call per lane
        #endif
    }

    @inline(always)
    static func load(_ p: UnsafePointer<Float>) -> KV { UnsafeRawPointer(p).loadUnaligned(as: KV.self) }

    @inline(always)
    static func store(_ v: KV, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: KV.self) }

    /// One 6 x cols tile; rows at or past `validRows` read row 0 (valid memory) and are not stored.
    /// A is addressed as a[row * rowStride + kk * kStride], so Aᵀ needs no copy. The six broadcasts
    /// read A where it lies: copying a row-major A into [k][6] tiles first (a contiguous stream) cost
    /// more than it saved (encoder inference 2% faster without it, 1 and 2 threads; docs/BENCHMARKS.md).
    @inline(always)
    static func tile(k: Int, alpha: Float, a: UnsafePointer<Float>, rowStride: Int, kStride: Int, validRows: Int,
                     b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                     epilogue: Epilogue) {
        var c00 = KV(), c01 = KV(), c10 = KV(), c11 = KV(), c20 = KV(), c21 = KV()
        var c30 = KV(), c31 = KV(), c40 = KV(), c41 = KV(), c50 = KV(), c51 = KV()
        // Offsets of rows 1...5 from row 0; invalid rows alias row 0 so every load stays in bounds.
        let o1 = validRows > 1 ? rowStride : 0, o2 = validRows > 2 ? 2 &* rowStride : 0
        let o3 = validRows > 3 ? 3 &* rowStride : 0, o4 = validRows > 4 ? 4 &* rowStride : 0
        let o5 = validRows > 5 ? 5 &* rowStride : 0
        var pa = a, pb = b
        for _ in 0..<k {
            let b0 = load(pb), b1 = load(pb + lanes)
            let x0 = KV(repeating: pa[0]); c00 = fma(c00, x0, b0); c01 = fma(c01, x0, b1)
            let x1 = KV(repeating: pa[o1]); c10 = fma(c10, x1, b0); c11 = fma(c11, x1, b1)
            let x2 = KV(repeating: pa[o2]); c20 = fma(c20, x2, b0); c21 = fma(c21, x2, b1)
            let x3 = KV(repeating: pa[o3]); c30 = fma(c30, x3, b0); c31 = fma(c31, x3, b1)
            let x4 = KV(repeating: pa[o4]); c40 = fma(c40, x4, b0); c41 = fma(c41, x4, b1)
            let x5 = KV(repeating: pa[o5]); c50 = fma(c50, x5, b0); c51 = fma(c51, x5, b1)
            pa = pa.advanced(by: kStride); pb = pb.advanced(by: ldb)
        }
        let s = KV(repeating: alpha)
        // What joins the product on the way out: C itself, a bias row, a residual (see `Epilogue`).
        var base0 = KV(), base1 = KV()
        if let bias = epilogue.bias { base0 = load(bias); base1 = load(bias + lanes) }
        @inline(always) func put(_ v0: KV, _ v1: KV, _ row: Int) {
            guard row < validRows else { return }
            let p = c.advanced(by: row &* ldc)
            var o0 = base0, o1 = base1
            if accumulate { o0 += load(p); o1 += load(p + lanes) }
            if let r = epilogue.residual { let q = r.advanced(by: row &* epilogue.residualStride); o0 += load(q); o1 += load(q + lanes) }
            store(fma(o0, s, v0), p); store(fma(o1, s, v1), p + lanes)
        }
        put(c00, c01, 0); put(c10, c11, 1); put(c20, c21, 2); put(c30, c31, 3); put(c40, c41, 4); put(c50, c51, 5)
    }

    /// Extra terms added to a tile's output as it is stored: `bias` (`cols` floats, one per column) and
    /// `residual` (a matrix addressed like C with its own row stride). Both already offset to the tile.
    struct Epilogue {
        var bias: UnsafePointer<Float>? = nil
        var residual: UnsafePointer<Float>? = nil
        var residualStride = 0
        static var none: Epilogue { Epilogue() }
    }

    /// C[m x n] (=|+=) alpha · A[m x k] · B[k x n] (+ bias + residual) for any m and n a multiple of `cols`.
    /// A is addressed with (rowStride, kStride): (lda, 1) for A, (1, lda) for a stored matrix used transposed.
    /// B is row-major (`ldb`, the default `panelStride` of `cols`) or panel-major: `cols`-wide panels of
    /// `ldb` = cols, `panelStride` floats apart (see `packPanels`), which keeps a panel contiguous in L1.
    /// `bias` ([n]) and `residual` ([m, n], row stride `residualStride`) are added once, with the first k-block.
    static func gemm(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, rowStride: Int, kStride: Int = 1,
                     b: UnsafePointer<Float>, ldb: Int, panelStride: Int = cols,
                     c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, kBlock: Int = kBlock,
                     bias: UnsafePointer<Float>? = nil, residual: UnsafePointer<Float>? = nil, residualStride: Int = 0) {
        // Blocks of `kBlock` keep a panel of B (kBlock rows of `cols` floats) in or near L1 while every
        // row tile of A streams past it.
        var k0 = 0
        repeat {
            let kc = min(kBlock, k &- k0)
            var j = 0
            while j < n {
                let panel = b.advanced(by: k0 &* ldb &+ (j / cols) &* panelStride)
                var epilogue = Epilogue.none
                if k0 == 0 { epilogue.bias = bias.map { $0 + j } }
                var i = 0
                while i < m {
                    if k0 == 0, let residual {
                        epilogue.residual = residual + (i &* residualStride &+ j); epilogue.residualStride = residualStride
                    }
                    tile(k: kc, alpha: alpha, a: a.advanced(by: i &* rowStride &+ k0 &* kStride), rowStride: rowStride,
                         kStride: kStride, validRows: min(rows, m &- i), b: panel, ldb: ldb, c: c.advanced(by: i &* ldc &+ j),
                         ldc: ldc, accumulate: accumulate || k0 > 0, epilogue: epilogue)
                    i &+= rows
                }
                j &+= cols
            }
            k0 &+= kc
        } while k0 < k
    }

    /// K-block for products whose B panels are short enough to stay in L1 (attention's).
    static let kBlock = 256

    /// K-block of the linear layers (`PackedWeight`): whole reductions up to 768 measured faster (fc2's
    /// 768 inputs: 87 vs 75 GFLOP/s at 256) than splitting them and re-reading C, though a 768-row panel
    /// outgrows L1.
    static let linearKBlock = 768

    /// Packs a row-major [n, d] matrix X (stride ld) panel-major as the B operand of a product with Xᵀ:
    /// panel p holds keys cols·p..<cols·(p+1) as d rows of `cols` floats (zero past n); panels are cols·d apart.
    /// Keys go four at a time through `transpose4x4` (half the time of a scalar transpose on cached data,
    /// docs/BENCHMARKS.md session 12); leftover keys and features take the scalar path.
    static func packTransposedPanels(_ x: UnsafePointer<Float>, ld: Int, n: Int, d: Int, into out: UnsafeMutablePointer<Float>) {
        let panels = (n + cols - 1) / cols, d4 = d & ~3
        for p in 0..<panels {
            let panel = out + p * d * cols
            var t = 0
            while t < cols {
                let j = p * cols + t
                if j + 4 <= n {
                    let row = x + j * ld
                    var kk = 0
                    while kk < d4 { transpose4x4(row + kk, ld: ld, into: panel + kk * cols + t, ldo: cols); kk += 4 }
                    for r in 0..<4 { for kk in d4..<d { panel[kk * cols + t + r] = row[r * ld + kk] } }
                } else {
                    for r in 0..<4 {
                        if j + r < n {
                            let row = x + (j + r) * ld
                            for kk in 0..<d { panel[kk * cols + t + r] = row[kk] }
                        } else {
                            for kk in 0..<d { panel[kk * cols + t + r] = 0 }
                        }
                    }
                }
                t += 4
            }
        }
    }

    /// out[c][r] = x[r][c] for a 4 x 4 block (row strides ld and ldo). Written as element shuffles of two
    /// vectors each, which LLVM lowers to unpack/shuffle/insert instructions (the 8 x 8 form it re-lowered
    /// into per-element inserts, no better than scalar).
    @inline(always)
    static func transpose4x4(_ x: UnsafePointer<Float>, ld: Int, into out: UnsafeMutablePointer<Float>, ldo: Int) {
        typealias V4 = SIMD4<Float>
        @inline(always) func load(_ p: UnsafePointer<Float>) -> V4 { UnsafeRawPointer(p).loadUnaligned(as: V4.self) }
        @inline(always) func store(_ v: V4, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V4.self) }
        let r0 = load(x), r1 = load(x + ld), r2 = load(x + 2 &* ld), r3 = load(x + 3 &* ld)
        let t0 = V4(r0[0], r1[0], r0[1], r1[1]), t1 = V4(r0[2], r1[2], r0[3], r1[3])
        let t2 = V4(r2[0], r3[0], r2[1], r3[1]), t3 = V4(r2[2], r3[2], r2[3], r3[3])
        store(V4(t0[0], t0[1], t2[0], t2[1]), out); store(V4(t0[2], t0[3], t2[2], t2[3]), out + ldo)
        store(V4(t1[0], t1[1], t3[0], t3[1]), out + 2 &* ldo); store(V4(t1[2], t1[3], t3[2], t3[3]), out + 3 &* ldo)
    }

    /// Packs a row-major [n, w] matrix (stride ld, w a multiple of `cols`) panel-major as a B operand:
    /// panel p holds columns cols·p..<cols·(p+1) as `rows` rows of `cols` floats (zero past n); panels are cols·rows apart.
    static func packPanels(_ x: UnsafePointer<Float>, ld: Int, n: Int, w: Int, rows: Int, into out: UnsafeMutablePointer<Float>) {
        for p in 0..<(w / cols) {
            let panel = out + p * rows * cols
            for j in 0..<n { store(load(x + j * ld + p * cols), panel + j * cols); store(load(x + j * ld + p * cols + lanes), panel + j * cols + lanes) }
            if rows > n { (panel + n * cols).update(repeating: 0, count: (rows - n) * cols) }
        }
    }
}
