/// Mamba's selective scan (S6), fused forward and backward, as `selective_scan_ref(u, delta, A, B, C,
/// D, z, delta_bias, delta_softplus)` in mamba_ssm computes it. Per batch item, channel d and state n:
///
///     Δ_t  = softplus(δ_t + bias)            (or δ_t + bias without softplus)
///     h_t  = exp(Δ_t A_n) h_{t−1} + Δ_t B_{t,n} x_t,    h_{−1} = 0
///     y_t  = Σ_n C_{t,n} h_{t,n} + D x_t
///     out_t = y_t · SiLU(z_t)                 (when z is given)
///
/// Layout is token-major, [B, L, Din] for x, δ, z and the output (what a Linear produces, so no
/// transposes), and [B, L, N] for B and C. The kernel vectorises over 8 adjacent channels: each of the
/// N states of 8 channels is one SIMD8 register, B_{t,n} and C_{t,n} are broadcast scalars, and
/// y_t needs no horizontal sum. (Vectorising over the 16 states instead needs a horizontal sum for
/// every y_t and every channel, and strided loads of x and δ.)
///
/// `reverse` scans from t = L−1 down to 0 and writes each output at its own token, i.e. it equals
/// flip(scan(flip(inputs))) without any flip copies: the backward branch of a bidirectional block.
///
/// Memory: the forward keeps the state only at chunk boundaries (every `chunk` steps), B·(L/chunk)·Din·N
/// floats, never the L·Din·N states. The backward recomputes the states of one chunk at a time from
/// its boundary (a per-worker scratch of chunk·N vectors, L2-sized) and runs the adjoint recursion
///
///     μ_t = gy_t C_t + exp(Δ_{t+1} A) μ_{t+1}        (gy = dL/dy, μ = dL/dh_t)
///     dx_t += gy_t D + Σ_n μ_{t,n} Δ_t B_{t,n}       dB_{t,n} += Σ_d μ_{t,n} Δ_t x_t
///     dΔ_t = Σ_n μ_{t,n} (B_{t,n} x_t + A_n a_{t,n} h_{t−1,n})        dC_{t,n} += Σ_d gy_t h_{t,n}
///     dA_n += Σ_t μ_{t,n} a_{t,n} h_{t−1,n} Δ_t      dD += Σ_t gy_t x_t      dδ = dΔ · σ(δ + bias)
///
/// backwards through the chunk (t counts steps in scan order, so with `reverse` t + 1 is the token
/// before). dB and dC sum over channels: a task owns several 8-channel groups and
/// adds their lanes into SIMD accumulators per chunk, so the horizontal sums happen once per task and
/// chunk rather than once per group (one group per task made forward + backward 15-25% slower than
/// eight at B=2, L=1024, Din=384, N=16; `SelectiveScanTimings`).
enum SelectiveScanKernel {
    /// Steps between stored states. Chunks of 16 to 256 timed within noise of each other (forward +
    /// backward, `SelectiveScanTimings`), so memory decides: at 64 the checkpoints are 1/64 of the
    /// states and a chunk's recomputed states, decays and dB/dC accumulators (4·64·16 vectors of 8
    /// floats, 128 KB) stay in L2. Variables only so tests can shrink them (several chunks and blocks).
    nonisolated(unsafe) static var chunk = 64
    /// 8-channel groups per task: more amortises the dB/dC horizontal sums, fewer balances the threads.
    nonisolated(unsafe) static var groupsPerTask = 8
    static let log2e: Float = 1.4426950408889634

    /// The raw operands of one scan; shapes as in the type's comment. Optional pointers are absent inputs.
    struct Problem {
        let x, delta, a, b, c: UnsafeMutablePointer<Float>
        let d, z, bias: UnsafeMutablePointer<Float>?
        let batch, length, channels, states: Int
        let softplus, reverse: Bool
        /// Steps between checkpoints, fixed when the forward runs (the backward must use the same).
        var chunk = SelectiveScanKernel.chunk

        var groups: Int { (channels + 7) / 8 }
        var chunks: Int { (length + chunk - 1) / chunk }
        /// Floats of the stored boundary states: [B, groups, chunks, N, 8].
        var checkpointCount: Int { batch * groups * chunks * states * 8 }
        @inline(always) func token(_ step: Int) -> Int { reverse ? length - 1 - step : step }

        /// Groups per task: `groupsPerTask`, halved until there are enough tasks to balance the threads.
        var groupsPerBlock: Int {
            var per = Swift.max(1, Swift.min(SelectiveScanKernel.groupsPerTask, groups))
            while per > 1 && batch * ((groups + per - 1) / per) < 4 * Threading.threads { per = (per + 1) / 2 }
            return per
        }
    }

    @inline(always) static func load(_ p: UnsafePointer<Float>, _ lanes: Int) -> V8 {
        if lanes == 8 { return UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
        var v = V8(repeating: 0)
        for j in 0..<lanes { v[j] = p[j] }
        return v
    }

    @inline(always) static func store(_ v: V8, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) {
        if lanes == 8 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self); return }
        for j in 0..<lanes { p[j] = v[j] }
    }

    /// log(x) for positive normal x, Cephes `logf` (relative error ~1e-7): the mantissa is reduced to
    /// [√½, √2) and log(1 + f) is a degree-9 polynomial; the exponent comes from the bits.
    @inline(always) static func log(_ x: V8) -> V8 {
        let bits = unsafeBitCast(x, to: SIMD8<Int32>.self)
        // The exponent as a float without an int-to-float conversion (which may scalarise): adding it
        // to the mantissa of 1.5·2²³ leaves 1.5·2²³ + e.
        let magic: Int32 = 0x4B40_0000
        var e = unsafeBitCast(((bits &>> 23) &- 126) &+ magic, to: V8.self) - 12_582_912
        var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F00_0000, to: V8.self)  // [0.5, 1)
        // The selects are bit masks, not `replace(with:where:)`: inside the scan loop the mask forms
        // compiled to a branch per lane and scalarised this log and the softplus around it.
        let small = mask(m .< 0.707106781186547524)
        e = e - select(small, V8(repeating: 1), V8(repeating: 0))
        m = m + select(small, m, V8(repeating: 0)) - 1
        let z = m * m
        var p = V8(repeating: 7.0376836292e-2)
        p = VMath.fma(p, m, V8(repeating: -1.1514610310e-1))
        p = VMath.fma(p, m, V8(repeating: 1.1676998740e-1))
        p = VMath.fma(p, m, V8(repeating: -1.2420140846e-1))
        p = VMath.fma(p, m, V8(repeating: 1.4249322787e-1))
        p = VMath.fma(p, m, V8(repeating: -1.6668057665e-1))
        p = VMath.fma(p, m, V8(repeating: 2.0000714765e-1))
        p = VMath.fma(p, m, V8(repeating: -2.4999993993e-1))
        p = VMath.fma(p, m, V8(repeating: 3.3333331174e-1))
        var y = p * m * z
        y = VMath.fma(e, V8(repeating: -2.12194440e-4), y)
        y = VMath.fma(z, V8(repeating: -0.5), y)
        return VMath.fma(e, V8(repeating: 0.693359375), m + y)
    }

    /// A comparison's lanes as all-ones or all-zero bits.
    @inline(always) static func mask(_ m: SIMDMask<SIMD8<Int32>>) -> SIMD8<UInt32> { unsafeBitCast(m, to: SIMD8<UInt32>.self) }

    /// `a` where `m` is set, else `b`, by bit operations (one blend, never a branch).
    @inline(always) static func select(_ m: SIMD8<UInt32>, _ a: V8, _ b: V8) -> V8 {
        let (ab, bb) = (unsafeBitCast(a, to: SIMD8<UInt32>.self), unsafeBitCast(b, to: SIMD8<UInt32>.self))
        return unsafeBitCast((ab & m) | (bb & ~m), to: V8.self)
    }

    /// softplus(v) = max(v, 0) + log1p(exp(−|v|)), accurate for small Δ (the dt bias is initialised so
    /// that Δ is 1e-3…0.1, where log(1 + eᵛ) in floats loses up to 1e-4 relative): log1p(u) is
    /// log(w)·u/(w − 1) with w = 1 + u (Goldberg's trick), and u itself where w rounds to 1.
    @inline(always) static func softplus(_ v: V8) -> V8 {
        let negAbs = unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt32>.self) | 0x8000_0000, to: V8.self)
        let u = VMath.exp(negAbs)
        let w = 1 + u
        let l = select(mask(w .== 1), u, log(w) * u / (w - 1))
        return v.replacing(with: 0, where: v .< 0) + l
    }

    /// exp(Δ·A) as 2^(Δ·A·log₂e) with `a2` = A·log₂e, the scan's one transcendental per state and step:
    /// the forward at B=2, L=1024, Din=384, N=16 took 4.8 ms with `VMath.exp2` and 5.9 ms with
    /// `VMath.exp` (same run, `SelectiveScanTimings`). exp2 clamps only below (its softmax use); with
    /// A = −exp(A_log) < 0 the argument is ≤ 0, and the upper clamp covers any other A.
    @inline(always) static func decay(_ dt: V8, _ a2: V8) -> V8 {
        let e = dt * a2
        return VMath.exp2(e.replacing(with: 127, where: e .> 127))
    }

    /// Index of the first NaN or ±Inf among `count` floats (all exponent bits set), nil when all are
    /// finite: 8 lanes at a time, the exponent masks OR-ed, and a scalar search only after a hit.
    static func firstNonFinite(_ p: UnsafePointer<Float>, _ count: Int) -> Int? {
        let exponent = SIMD8<UInt32>(repeating: 0x7F80_0000)
        // The largest exponent field over a block of 64 floats (integer max: one instruction, no NaN
        // rules), then one compare per block; a block with a hit is searched lane by lane.
        var i = 0
        while i + 64 <= count {
            var top = SIMD8<UInt32>(repeating: 0)
            for j in stride(from: 0, to: 64, by: 8) {
                let e = UnsafeRawPointer(p + i + j).loadUnaligned(as: SIMD8<UInt32>.self) & exponent
                top = top.replacing(with: e, where: e .> top)
            }
            if any(top .== exponent) { break }
            i += 64
        }
        while i < count {
            if p[i].bitPattern & 0x7F80_0000 == 0x7F80_0000 { return i }
            i += 1
        }
        return nil
    }

    /// Runs `body(worker, task, scratch)` for each task with `perWorker` vectors of scratch per worker.
    static func tasks(_ total: Int, scratch perWorker: Int,
                      _ body: (_ worker: Int, _ task: Int, _ scratch: UnsafeMutablePointer<V8>) -> Void) {
        let workers = AttentionKernel.workers(total)
        let scratch = UnsafeMutablePointer<V8>.allocate(capacity: Swift.max(1, workers * perWorker))
        defer { scratch.deallocate() }
        AttentionKernel.parallelTasks(total, byWorker: { w, t in body(w, t, scratch + w * perWorker) })
    }

    /// Forward: writes `out`, and the state at the start of every chunk into `checkpoints` when given.
    /// With `accumulate`, adds the scan's output to what `out` holds instead of overwriting it; with
    /// `gateSum` as well, the gate applies to that sum, out = (out + y)·SiLU(z), instead of to y alone.
    /// With `state` ([B, groups, N, 8] floats), the scan starts from the state it holds instead of 0
    /// and leaves its last state there: a long sequence can then run in pieces.
    static func forward(_ p: Problem, out: UnsafeMutablePointer<Float>, checkpoints: UnsafeMutablePointer<Float>?,
                        accumulate: Bool = false, gateSum: Bool = false, state: UnsafeMutablePointer<Float>? = nil) {
        let n = p.states, dIn = p.channels, groups = p.groups, chunks = p.chunks, chunk = p.chunk
        let per = p.groupsPerBlock, blocks = (groups + per - 1) / per
        tasks(p.batch * blocks, scratch: 2 * n) { _, task, scratch in
            let b = task / blocks, g0 = (task % blocks) * per
            let h = scratch, at = scratch + n
            for g in g0..<Swift.min(groups, g0 + per) {
                let d0 = g * 8, lanes = Swift.min(8, dIn - d0)
                for k in 0..<n {
                    var v = V8(repeating: 0)
                    for j in 0..<lanes { v[j] = p.a[(d0 + j) * n + k] }
                    at[k] = v * log2e
                    h[k] = V8(repeating: 0)
                }
                let carried = state.map { $0 + (b * groups + g) * n * 8 }
                if let carried { UnsafeMutableRawPointer(h).copyMemory(from: carried, byteCount: n * 32) }
                let dv = p.d.map { load($0 + d0, lanes) } ?? V8(repeating: 0)
                let bias = p.bias.map { load($0 + d0, lanes) } ?? V8(repeating: 0)
                let ckBase = checkpoints.map { $0 + (b * groups + g) * chunks * n * 8 }
                for s in 0..<p.length {
                    if let ckBase, s % chunk == 0 {
                        UnsafeMutableRawPointer(ckBase + (s / chunk) * n * 8).copyMemory(from: h, byteCount: n * 32)
                    }
                    let row = b * p.length + p.token(s), off = row * dIn + d0
                    let xv = load(p.x + off, lanes)
                    var dt = load(p.delta + off, lanes) + bias
                    if p.softplus { dt = softplus(dt) }
                    let dtx = dt * xv
                    var y = dv * xv
                    let bRow = p.b + row * n, cRow = p.c + row * n
                    for k in 0..<n {
                        let hk = VMath.fma(decay(dt, at[k]), h[k], dtx * V8(repeating: bRow[k]))
                        h[k] = hk
                        y = VMath.fma(V8(repeating: cRow[k]), hk, y)
                    }
                    if accumulate && gateSum { y = y + load(out + off, lanes) }
                    if let z = p.z {
                        let zv = load(z + off, lanes)
                        y = y * zv * VMath.sigmoid(zv)
                    }
                    if accumulate && !gateSum { y = y + load(out + off, lanes) }
                    store(y, out + off, lanes)
                }
                if let carried { UnsafeMutableRawPointer(carried).copyMemory(from: h, byteCount: n * 32) }
            }
        }
    }

    /// Gradients of one scan. dx, dδ and dz ([B, L, Din]) are written in full; dA [Din, N], dD, dBias
    /// [Din], dB and dC [B, L, N] are overwritten with sums over per-worker partials. `dz` must be given
    /// exactly when `p.z` is.
    struct Gradients {
        let dx, dDelta, dA, dB, dC, dD, dBias: UnsafeMutablePointer<Float>
        let dz: UnsafeMutablePointer<Float>?
    }

    static func backward(_ p: Problem, grad: UnsafePointer<Float>, checkpoints: UnsafePointer<Float>, into out: Gradients) {
        let n = p.states, dIn = p.channels, groups = p.groups, chunks = p.chunks, chunk = p.chunk, len = p.length
        let per = p.groupsPerBlock, blocks = (groups + per - 1) / per
        let total = p.batch * blocks, workers = AttentionKernel.workers(total)
        // Per worker: dA, dD, dBias for every channel, then dB and dC for every token.
        let partialCount = dIn * n + 2 * dIn + 2 * p.batch * len * n
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: workers * partialCount)
        partials.initialize(repeating: 0, count: workers * partialCount)
        defer { partials.deallocate() }
        // Scratch vectors: states (chunk + 1)·N, decays chunk·N, Δ, σ and pre-gate y per step, the dB and
        // dC accumulators 2·chunk·N, and per group the carried μ, dA, A and A·log₂e, dD and dBias.
        let hsCount = (chunk + 1) * n, asCount = chunk * n
        let scratchCount = hsCount + asCount + 3 * chunk + 2 * chunk * n + per * (4 * n + 2)
        tasks(total, scratch: scratchCount) { worker, task, scratch in
            let b = task / blocks, g0 = (task % blocks) * per, g1 = Swift.min(groups, g0 + per)
            let hs = scratch, decays = hs + hsCount, ds = decays + asCount, sg = ds + chunk, ys = sg + chunk
            let accB = ys + chunk, accC = accB + chunk * n
            let mu = accC + chunk * n, dAacc = mu + per * n, at = dAacc + per * n
            let dDacc = at + 2 * per * n, dBiasAcc = dDacc + per
            let mine = partials + worker * partialCount
            let dAp = mine, dDp = mine + dIn * n, dBiasP = dDp + dIn, dBp = dBiasP + dIn, dCp = dBp + p.batch * len * n
            (mu).update(repeating: V8(repeating: 0), count: 2 * per * n)
            dDacc.update(repeating: V8(repeating: 0), count: 2 * per)
            for g in g0..<g1 {
                let gi = g - g0, d0 = g * 8, lanes = Swift.min(8, dIn - d0)
                for k in 0..<n {
                    var v = V8(repeating: 0)
                    for j in 0..<lanes { v[j] = p.a[(d0 + j) * n + k] }
                    at[gi * 2 * n + k] = v
                    at[gi * 2 * n + n + k] = v * log2e
                }
            }
            for c in stride(from: chunks - 1, through: 0, by: -1) {
                let s0 = c * chunk, count = Swift.min(chunk, len - s0)
                accB.update(repeating: V8(repeating: 0), count: 2 * chunk * n)
                for g in g0..<g1 {
                    let gi = g - g0, d0 = g * 8, lanes = Swift.min(8, dIn - d0)
                    let atg = at + gi * 2 * n, mug = mu + gi * n, dAg = dAacc + gi * n
                    let dv = p.d.map { load($0 + d0, lanes) } ?? V8(repeating: 0)
                    let bias = p.bias.map { load($0 + d0, lanes) } ?? V8(repeating: 0)
                    // Recompute the chunk's states from its boundary.
                    UnsafeMutableRawPointer(hs).copyMemory(from: checkpoints + ((b * groups + g) * chunks + c) * n * 8, byteCount: n * 32)
                    for i in 0..<count {
                        let row = b * len + p.token(s0 + i), off = row * dIn + d0
                        let xv = load(p.x + off, lanes)
                        let pre = load(p.delta + off, lanes) + bias
                        var dt = pre
                        if p.softplus { dt = softplus(pre); sg[i] = VMath.sigmoid(pre) }
                        ds[i] = dt
                        let dtx = dt * xv
                        var y = dv * xv
                        let bRow = p.b + row * n, cRow = p.c + row * n
                        let prev = hs + i * n, next = prev + n, dec = decays + i * n
                        for k in 0..<n {
                            let a = decay(dt, atg[n + k])
                            dec[k] = a
                            let hk = VMath.fma(a, prev[k], dtx * V8(repeating: bRow[k]))
                            next[k] = hk
                            y = VMath.fma(V8(repeating: cRow[k]), hk, y)
                        }
                        ys[i] = y
                    }
                    // Adjoint recursion backwards through the chunk; μ carries exp(Δ_{t+1}A)·μ_{t+1} in.
                    var dDv = dDacc[gi], dBiasV = dBiasAcc[gi]
                    for i in stride(from: count - 1, through: 0, by: -1) {
                        let row = b * len + p.token(s0 + i), off = row * dIn + d0
                        let xv = load(p.x + off, lanes), g = load(grad + off, lanes)
                        var gy = g
                        if let z = p.z, let dz = out.dz {
                            let zv = load(z + off, lanes), sig = VMath.sigmoid(zv)
                            gy = g * zv * sig
                            store(g * ys[i] * sig * (1 + zv * (1 - sig)), dz + off, lanes)
                        }
                        dDv = VMath.fma(gy, xv, dDv)
                        let dt = ds[i], dtx = dt * xv
                        var dxv = gy * dv, ddt = V8(repeating: 0)
                        let bRow = p.b + row * n, cRow = p.c + row * n
                        let prev = hs + i * n, next = prev + n, dec = decays + i * n
                        let aB = accB + i * n, aC = accC + i * n
                        for k in 0..<n {
                            let bk = V8(repeating: bRow[k])
                            aC[k] = VMath.fma(gy, next[k], aC[k])
                            let m = VMath.fma(gy, V8(repeating: cRow[k]), mug[k])
                            aB[k] = VMath.fma(m, dtx, aB[k])
                            let mb = m * bk
                            dxv = VMath.fma(mb, dt, dxv)
                            let mha = m * prev[k] * dec[k]
                            ddt = VMath.fma(mb, xv, VMath.fma(mha, atg[k], ddt))
                            dAg[k] = VMath.fma(mha, dt, dAg[k])
                            mug[k] = m * dec[k]
                        }
                        if p.softplus { ddt = ddt * sg[i] }
                        store(dxv, out.dx + off, lanes)
                        store(ddt, out.dDelta + off, lanes)
                        dBiasV += ddt
                    }
                    dDacc[gi] = dDv
                    dBiasAcc[gi] = dBiasV
                }
                for i in 0..<count {
                    let row = b * len + p.token(s0 + i)
                    for k in 0..<n {
                        dBp[row * n + k] += accB[i * n + k].sum()
                        dCp[row * n + k] += accC[i * n + k].sum()
                    }
                }
            }
            for g in g0..<g1 {
                let gi = g - g0, d0 = g * 8, lanes = Swift.min(8, dIn - d0)
                for j in 0..<lanes {
                    for k in 0..<n { dAp[(d0 + j) * n + k] += dAacc[gi * n + k][j] }
                    dDp[d0 + j] += dDacc[gi][j]
                    dBiasP[d0 + j] += dBiasAcc[gi][j]
                }
            }
        }
        // Sum the partials: dA, dD, dBias are one run of floats in each, dB and dC another.
        let head = dIn * n + 2 * dIn, tokens = p.batch * len * n
        func reduce(_ dst: UnsafeMutablePointer<Float>, _ offset: Int, _ count: Int) {
            dst.update(from: partials + offset, count: count)
            for w in 1..<Swift.max(1, workers) {
                AttentionKernel.addRow(dst, partials + w * partialCount + offset, count, times: 1)
            }
        }
        reduce(out.dA, 0, dIn * n)
        reduce(out.dD, dIn * n, dIn)
        reduce(out.dBias, dIn * n + dIn, dIn)
        reduce(out.dB, head, tokens)
        reduce(out.dC, head + tokens, tokens)
    }
}

extension Tensor {
    /// Floats of a selective scan's carried state: [B, ⌈Din/8⌉, N, 8].
    public static func selectiveScanStateCount(batch: Int, channels: Int, states: Int) -> Int {
        batch * ((channels + 7) / 8) * states * 8
    }

    /// Mamba's selective scan, `selective_scan_ref(x, delta, A, B, C, D, z, delta_bias, delta_softplus)`
    /// in token-major layout (see `SelectiveScanKernel` for the formula):
    /// x, delta [B, L, Din]; a [Din, N] (Mamba passes −exp(A_log)); b, c [B, L, N]; d, deltaBias [Din];
    /// z [B, L, Din] gates the output with SiLU. `delta` is the pre-activation: the kernel adds
    /// `deltaBias` and applies softplus itself (as `delta_softplus=True`), so the dt projection's bias
    /// and activation cost no pass over [B, L, Din]. `reverse` scans from the last token to the first,
    /// writing each output at its own token (flip∘scan∘flip without copies).
    /// Differentiable in every input; the backward keeps only the state at every `chunk`-th step.
    /// `addingTo` (inference only) adds the output into that tensor in place and returns it: a
    /// bidirectional mixer's second branch then needs neither its own output nor the sum's. With
    /// `gatingTheSum` the gate applies to the sum: the result is (addingTo + y)·SiLU(z), y without its
    /// gate (the mixer gates y_f + y_b once, `addingTo` holding the other branch's ungated output).
    /// A NaN or Inf in the output throws, naming the input that holds one or the place that overflowed.
    /// `carrying` (inference only; zeros of `selectiveScanStateCount` floats to start) is read as the
    /// state before the first step in scan order and overwritten with the state after the last, so a
    /// sequence scanned in consecutive pieces (in scan order: the last piece first when `reverse`)
    /// equals one scan of the whole.
    public static func selectiveScan(_ x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor? = nil,
                                     z: Tensor? = nil, deltaBias: Tensor? = nil, deltaSoftplus: Bool = true,
                                     reverse: Bool = false, addingTo sum: Tensor? = nil, gatingTheSum: Bool = false,
                                     carrying state: Tensor? = nil) throws -> Tensor {
        try check(x.rank == 3, "selectiveScan: x must be [B, L, Din], got \(x.shape)")
        let (batch, len, dIn) = (x.shape[0], x.shape[1], x.shape[2])
        try check(a.rank == 2 && a.shape[0] == dIn, "selectiveScan: A must be [Din, N] = [\(dIn), N], got \(a.shape)")
        let n = a.shape[1]
        try check(delta.shape == x.shape, "selectiveScan: delta \(delta.shape) does not match x \(x.shape)")
        try check(b.shape == [batch, len, n] && c.shape == [batch, len, n],
                  "selectiveScan: B \(b.shape) and C \(c.shape) must be [B, L, N] = \([batch, len, n])")
        if let z { try check(z.shape == x.shape, "selectiveScan: z \(z.shape) does not match x \(x.shape)") }
        if let d { try check(d.shape == [dIn], "selectiveScan: D must be [\(dIn)], got \(d.shape)") }
        if let deltaBias { try check(deltaBias.shape == [dIn], "selectiveScan: deltaBias must be [\(dIn)], got \(deltaBias.shape)") }
        try check(len > 0 && n > 0, "selectiveScan: empty sequence or state")
        let problem = SelectiveScanKernel.Problem(
            x: x.data, delta: delta.data, a: a.data, b: b.data, c: c.data, d: d?.data, z: z?.data, bias: deltaBias?.data,
            batch: batch, length: len, channels: dIn, states: n, softplus: deltaSoftplus, reverse: reverse)
        let inputs = [x, delta, a, b, c] + [d, z, deltaBias].compactMap { $0 }
        let recording = GradMode.enabled && inputs.contains { $0.requiresGrad }
        if let sum {
            try check(!recording && !sum.requiresGrad, "selectiveScan: addingTo is for inference (no autograd recording)")
            try check(sum.shape == x.shape, "selectiveScan: addingTo \(sum.shape) does not match x \(x.shape)")
        }
        try check(!gatingTheSum || sum != nil, "selectiveScan: gatingTheSum needs addingTo (the sum to gate)")
        if let state {
            try check(!recording, "selectiveScan: carrying a state is for inference (no autograd recording)")
            try check(state.count == Tensor.selectiveScanStateCount(batch: batch, channels: dIn, states: n),
                      "selectiveScan: the carried state holds \(state.count) floats, not the \(Tensor.selectiveScanStateCount(batch: batch, channels: dIn, states: n)) of [B, ⌈Din/8⌉, N, 8]")
        }
        let out = sum ?? Tensor.empty(x.shape)
        let checkpoints = recording ? Tensor.empty([problem.checkpointCount]) : nil
        SelectiveScanKernel.forward(problem, out: out.data, checkpoints: checkpoints?.data, accumulate: sum != nil,
                                    gateSum: gatingTheSum, state: state?.data)
        // A NaN or Inf out of the scan is named here rather than passed on (one pass over the output,
        // against the scan's N multiply-adds per element). The usual source is a non-finite input;
        // otherwise the state overflowed. selective_scan_ref does not clamp: softplus then exp(Δ·A)
        // with A = −exp(A_log) < 0 only underflows to 0 for a huge Δ, but Δ·B·x can still overflow,
        // and so can exp(Δ·A) for an A > 0 (a raw A, not Mamba's); the reference would return Inf or
        // NaN silently, this throws.
        if let bad = SelectiveScanKernel.firstNonFinite(out.data, out.count) {
            let named: [(String, Tensor?)] = [("x", x), ("delta", delta), ("A", a), ("B", b), ("C", c), ("D", d),
                                              ("z", z), ("deltaBias", deltaBias)]
            for case let (name, t?) in named {
                if let i = SelectiveScanKernel.firstNonFinite(t.data, t.count) {
                    throw EngineError("selectiveScan: input \(name) \(t.shape) holds \(t.data[i]) at flat index \(i)")
                }
            }
            let (item, token, channel) = (bad / (len * dIn), (bad / dIn) % len, bad % dIn)
            let pre = delta.data[bad] + (deltaBias?.data[channel] ?? 0)
            var aMax = -Float.infinity
            for k in 0..<n { aMax = Swift.max(aMax, a.data[channel * n + k]) }
            throw EngineError("selectiveScan: the state overflowed Float at batch item \(item), token \(token), channel \(channel) "
                              + "(output \(out.data[bad])): delta + deltaBias there is \(pre)"
                              + (deltaSoftplus ? " before softplus" : "") + ", and A's largest entry in that channel is \(aMax) "
                              + "(Δ·B·x beyond Float range, or exp(Δ·A) growing with A > 0)")
        }
        guard let checkpoints else { return out }
        // `problem` points into every input's storage, so the closure keeps every input alive: the tape
        // holds only what closures capture (delta, read through `problem` alone, was freed and reused).
        return out.recording(inputs) { g in
            withExtendedLifetime(inputs) {}
            let dx = Tensor.empty(x.shape), dDelta = Tensor.empty(x.shape), dA = Tensor.empty(a.shape)
            let dB = Tensor.empty(b.shape), dC = Tensor.empty(c.shape)
            let dD = Tensor.empty([dIn]), dBias = Tensor.empty([dIn]), dz = z.map { Tensor.empty($0.shape) }
            SelectiveScanKernel.backward(problem, grad: g.data, checkpoints: checkpoints.data, into: .init(
                dx: dx.data, dDelta: dDelta.data, dA: dA.data, dB: dB.data, dC: dC.data, dD: dD.data, dBias: dBias.data,
                dz: dz?.data))
            var grads: [Tensor?] = [dx, dDelta, dA, dB, dC]
            if d != nil { grads.append(dD) }
            if let dz { grads.append(dz) }
            if deltaBias != nil { grads.append(dBias) }
            return grads
        }
    }
}
