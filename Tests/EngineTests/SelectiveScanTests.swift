import Foundation
import XCTest
@testable import Engine

/// The fused selective scan and the token-major causal conv against plain loops written here (in
/// Double), and finite-difference gradients for every input, in both scan directions, with chunks
/// shorter than the sequence that do not divide it and channel counts that leave a partial SIMD group.
final class SelectiveScanTests: XCTestCase {
    /// Runs `body` with small chunks and task blocks so multi-chunk and multi-block paths run.
    func withScan(chunk: Int, groups: Int, _ body: () throws -> Void) rethrows {
        let saved = (SelectiveScanKernel.chunk, SelectiveScanKernel.groupsPerTask)
        (SelectiveScanKernel.chunk, SelectiveScanKernel.groupsPerTask) = (chunk, groups)
        defer { (SelectiveScanKernel.chunk, SelectiveScanKernel.groupsPerTask) = saved }
        try body()
    }

    struct Inputs {
        var x, delta, a, b, c, d, z, bias: Tensor
        var all: [Tensor] { [x, delta, a, b, c, d, z, bias] }

        /// δ and its bias made positive, as a caller passing Δ itself (no softplus) would: a negative Δ
        /// makes exp(ΔA) grow, and the recurrence then amplifies rounding (10¹⁴ over 13 steps).
        var positiveDelta: Inputs {
            var p = self
            p.delta = delta.abs() * 0.5
            p.bias = bias.abs() * 0.1
            return p
        }
    }

    /// Random inputs in Mamba's ranges: A negative (−exp(A_log)), δ around the softplus knee.
    func inputs(_ batch: Int, _ len: Int, _ dIn: Int, _ n: Int, seed: UInt64) -> Inputs {
        let a = rnd([dIn, n], seed: seed + 2)
        for i in 0..<a.count { a.data[i] = -(0.3 + Swift.abs(a.data[i])) }
        return Inputs(x: rnd([batch, len, dIn], seed: seed), delta: rnd([batch, len, dIn], seed: seed + 1), a: a,
                      b: rnd([batch, len, n], seed: seed + 3), c: rnd([batch, len, n], seed: seed + 4),
                      d: rnd([dIn], seed: seed + 5), z: rnd([batch, len, dIn], seed: seed + 6),
                      bias: rnd([dIn], seed: seed + 7))
    }

    /// The recurrence exactly as written in the kernel's doc comment, one channel at a time, in Double.
    func naiveScan(_ p: Inputs, useD: Bool, useZ: Bool, useBias: Bool, softplus: Bool, reverse: Bool) -> Tensor {
        let (batch, len, dIn, n) = (p.x.shape[0], p.x.shape[1], p.x.shape[2], p.a.shape[1])
        let out = Tensor.zeros(p.x.shape)
        for bi in 0..<batch {
            for ch in 0..<dIn {
                var h = [Double](repeating: 0, count: n)
                for s in 0..<len {
                    let t = reverse ? len - 1 - s : s
                    let i = (bi * len + t) * dIn + ch, row = (bi * len + t) * n
                    var dt = Double(p.delta.data[i]) + (useBias ? Double(p.bias.data[ch]) : 0)
                    if softplus { dt = dt > 20 ? dt : Foundation.log1p(Foundation.exp(dt)) }
                    let xv = Double(p.x.data[i])
                    var y = useD ? Double(p.d.data[ch]) * xv : 0
                    for k in 0..<n {
                        h[k] = Foundation.exp(dt * Double(p.a.data[ch * n + k])) * h[k] + dt * Double(p.b.data[row + k]) * xv
                        y += Double(p.c.data[row + k]) * h[k]
                    }
                    if useZ {
                        let zv = Double(p.z.data[i])
                        y *= zv / (1 + Foundation.exp(-zv))
                    }
                    out.data[i] = Float(y)
                }
            }
        }
        return out
    }

    func scan(_ t: [Tensor], useD: Bool = true, useZ: Bool = true, useBias: Bool = true,
              softplus: Bool = true, reverse: Bool = false) throws -> Tensor {
        try Tensor.selectiveScan(t[0], delta: t[1], a: t[2], b: t[3], c: t[4], d: useD ? t[5] : nil,
                                 z: useZ ? t[6] : nil, deltaBias: useBias ? t[7] : nil,
                                 deltaSoftplus: softplus, reverse: reverse)
    }

    func testForwardMatchesNaiveRecurrence() throws {
        // 19 channels: two full SIMD groups and a partial one; 13 steps in chunks of 5 (5, 5, 3).
        let p = inputs(2, 13, 19, 5, seed: 1)
        try withScan(chunk: 5, groups: 2) {
            for reverse in [false, true] {
                for (useD, useZ, useBias, softplus) in [(true, true, true, true), (false, false, false, true),
                                                        (true, false, true, false), (false, true, false, false)] {
                    let p = softplus ? p : p.positiveDelta
                    let expected = naiveScan(p, useD: useD, useZ: useZ, useBias: useBias, softplus: softplus, reverse: reverse)
                    // Without grad (no checkpoints) and with (checkpoints stored): the same numbers.
                    let plain = try GradMode.noGrad { try scan(p.all, useD: useD, useZ: useZ, useBias: useBias,
                                                               softplus: softplus, reverse: reverse) }
                    assertClose(plain, expected, atol: 2e-5, rtol: 2e-5)
                    let leaves = p.all.map { $0.copy().requiringGrad() }
                    let recorded = try scan(leaves, useD: useD, useZ: useZ, useBias: useBias, softplus: softplus, reverse: reverse)
                    XCTAssertTrue(recorded.requiresGrad)
                    assertClose(recorded, expected, atol: 2e-5, rtol: 2e-5)
                }
            }
        }
    }

    func testEdgeShapes() throws {
        // One token, one channel, one state; and one full SIMD group scanned one step per chunk.
        for (shape, chunk) in [((1, 1, 1, 1), 64), ((1, 3, 8, 16), 1), ((3, 2, 7, 2), 2)] {
            let p = inputs(shape.0, shape.1, shape.2, shape.3, seed: 60)
            try withScan(chunk: chunk, groups: 8) {
                for reverse in [false, true] {
                    assertClose(try scan(p.all, reverse: reverse),
                                naiveScan(p, useD: true, useZ: true, useBias: true, softplus: true, reverse: reverse),
                                atol: 2e-5, rtol: 2e-5)
                    try gradCheck(p.all) { try scan($0, reverse: reverse) }
                }
            }
        }
    }

    func testReverseIsFlipOfForwardScan() throws {
        let p = inputs(2, 9, 10, 4, seed: 20)
        func flipped(_ t: Tensor) throws -> Tensor { try t.flip([1]) }
        let forwardOfFlipped = try scan([flipped(p.x), flipped(p.delta), p.a, flipped(p.b), flipped(p.c), p.d,
                                         flipped(p.z), p.bias])
        assertClose(try scan(p.all, reverse: true), try flipped(forwardOfFlipped), atol: 1e-6, rtol: 1e-6)
    }

    func testGradientsOfEveryInputBothDirections() throws {
        // 10 channels: one full group and one of 2 lanes (one block each); 7 steps in chunks of 3.
        let p = inputs(2, 7, 10, 3, seed: 30)
        try withScan(chunk: 3, groups: 1) {
            for reverse in [false, true] {
                try gradCheck(p.all) { try scan($0, reverse: reverse) }
            }
        }
    }

    func testGradientsWithoutSoftplusGateOrD() throws {
        let p = inputs(1, 6, 9, 2, seed: 40).positiveDelta
        try withScan(chunk: 4, groups: 2) {
            try gradCheck(Array(p.all.prefix(5))) { try scan($0 + [p.d, p.z, p.bias], useD: false, useZ: false,
                                                              useBias: false, softplus: false, reverse: true) }
        }
    }

    func testChunkSizeDoesNotChangeGradients() throws {
        let p = inputs(2, 11, 12, 4, seed: 50)
        func grads(chunk: Int, groups: Int) throws -> [Tensor] {
            let leaves = p.all.map { $0.copy().requiringGrad() }
            try withScan(chunk: chunk, groups: groups) {
                try (scan(leaves) * rnd(p.x.shape, seed: 51)).sum().backward()
            }
            return try leaves.map { try XCTUnwrap($0.grad) }
        }
        for (a, b) in zip(try grads(chunk: 64, groups: 8), try grads(chunk: 2, groups: 1)) {
            assertClose(a, b, atol: 1e-5, rtol: 1e-4)
        }
    }

    func testRecordedGraphKeepsChunkStatesNotAllStates() throws {
        // 4096 steps x 64 channels x 16 states: all states would be 16 MB; the graph may add only the
        // output (1 MB) and the states at every 64th step (256 KB). (Counts tensor storage, the pool's.)
        let p = inputs(1, 4096, 64, 16, seed: 70)
        let leaves = p.all.map { $0.copy().requiringGrad() }
        let pool = BufferPool.shared
        let before = pool.liveBytes
        let out = try scan(leaves)
        let added = pool.liveBytes - before
        let outBytes = out.count * 4, checkpointBytes = (4096 / 64) * 64 * 16 * 4
        XCTAssertLessThanOrEqual(added, outBytes + checkpointBytes + 4096)
        XCTAssertGreaterThanOrEqual(added, outBytes + checkpointBytes)
        try (out * 0.5).sum().backward()
        XCTAssertNotNil(leaves[2].grad)
    }

    func testVectorSoftplusAndLog() {
        var v = V8(repeating: 0)
        var worst: Double = 0
        for i in stride(from: -30.0, through: 30.0, by: 0.37 / 8) {
            for j in 0..<8 { v[j] = Float(i + Double(j) * 0.37 / 64) }
            let s = SelectiveScanKernel.softplus(v), l = SelectiveScanKernel.log(v.replacing(with: -v, where: v .< 0) + 1e-3)
            for j in 0..<8 {
                let x = Double(v[j])
                let sp = x > 20 ? x : Foundation.log1p(Foundation.exp(x))
                worst = Swift.max(worst, Swift.abs(Double(s[j]) - sp) / sp)
                let lg = Foundation.log(Double(Swift.abs(v[j]) + 1e-3))
                XCTAssertEqual(Double(l[j]), lg, accuracy: 3e-7 * Swift.max(1, Swift.abs(lg)))
            }
        }
        XCTAssertLessThan(worst, 1e-6)
    }
}

/// The token-major causal depthwise conv against a plain loop and against the general conv1d.
final class CausalConv1dTests: XCTestCase {
    func naiveConv(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, reverse: Bool) -> Tensor {
        let (batch, len, c) = (x.shape[0], x.shape[1], x.shape[2]), k = w.shape[w.rank - 1]
        let out = Tensor.zeros(x.shape)
        for b in 0..<batch { for t in 0..<len { for ch in 0..<c {
            var acc = Double(bias?.data[ch] ?? 0)
            for j in 0..<k {
                let s = reverse ? t + (k - 1) - j : t - (k - 1) + j
                if s >= 0 && s < len { acc += Double(w.data[ch * k + j]) * Double(x.data[(b * len + s) * c + ch]) }
            }
            out.data[(b * len + t) * c + ch] = Float(acc)
        } } }
        return out
    }

    func testForwardMatchesNaiveAndConv1d() throws {
        let x = rnd([2, 9, 13], seed: 80), w = rnd([13, 1, 4], seed: 81), bias = rnd([13], seed: 82)
        for reverse in [false, true] {
            assertClose(try x.causalDepthwiseConv1d(weight: w, bias: bias, reverse: reverse),
                        naiveConv(x, w, bias, reverse: reverse), atol: 1e-5, rtol: 1e-5)
        }
        let w3 = rnd([13, 3], seed: 83)
        assertClose(try x.causalDepthwiseConv1d(weight: w3, reverse: true), naiveConv(x, w3, nil, reverse: true),
                    atol: 1e-5, rtol: 1e-5)
        // Mamba's own formulation: conv1d over [B, C, L] with padding k − 1, cut to the first L outputs.
        let viaConv1d = try x.transpose(1, 2).conv1d(weight: w, bias: bias, padding: 3, groups: 13)
            .slice(axis: 2, start: 0, end: 9).transpose(1, 2)
        assertClose(try x.causalDepthwiseConv1d(weight: w, bias: bias), viaConv1d, atol: 1e-5, rtol: 1e-5)
    }

    func testGradients() throws {
        for reverse in [false, true] {
            try gradCheck([rnd([2, 6, 11], seed: 84), rnd([11, 1, 4], seed: 85), rnd([11], seed: 86)]) {
                try $0[0].causalDepthwiseConv1d(weight: $0[1], bias: $0[2], reverse: reverse)
            }
        }
        // Fused SiLU: the same as SiLU applied after, in values and gradients.
        for reverse in [false, true] {
            let inputs = [rnd([2, 7, 11], seed: 89), rnd([11, 1, 4], seed: 90), rnd([11], seed: 91)]
            assertClose(try inputs[0].causalDepthwiseConv1d(weight: inputs[1], bias: inputs[2], reverse: reverse, silu: true),
                        naiveConv(inputs[0], inputs[1], inputs[2], reverse: reverse).silu(), atol: 1e-5, rtol: 1e-5)
            try gradCheck(inputs) { try $0[0].causalDepthwiseConv1d(weight: $0[1], bias: $0[2], reverse: reverse, silu: true) }
        }
        // Short sequence (L < k) and no bias.
        try gradCheck([rnd([1, 2, 9], seed: 87), rnd([9, 4], seed: 88)]) {
            try $0[0].causalDepthwiseConv1d(weight: $0[1], reverse: true)
        }
    }
}

/// Timings at SSAMBA-tiny's mixer width (Din 384, N 16, 1024 tokens, batch 2); run only when
/// EARSHOT_SCAN_BENCH=1, e.g. `EARSHOT_SCAN_BENCH=1 swift test ... --filter SelectiveScanTimings`.
final class SelectiveScanTimings: XCTestCase {
    func median(_ runs: Int = 5, _ body: () throws -> Void) rethrows -> Double {
        var times: [Double] = []
        for _ in 0..<runs {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return times.sorted()[runs / 2]
    }

    func testTimings() throws {
        guard ProcessInfo.processInfo.environment["EARSHOT_SCAN_BENCH"] == "1" else { throw XCTSkip("set EARSHOT_SCAN_BENCH=1") }
        let (batch, len, dIn, n) = (2, 1024, 384, 16)
        let x = rnd([batch, len, dIn], seed: 1), w = rnd([dIn, 1, 4], seed: 2), bias = rnd([dIn], seed: 3)
        let g = rnd([batch, len, dIn], seed: 4)
        let ours = try median {
            let xl = x.copy().requiringGrad()
            try xl.causalDepthwiseConv1d(weight: w, bias: bias).backward(g)
        }
        let general = try median {
            let xl = x.copy().requiringGrad()
            try xl.transpose(1, 2).conv1d(weight: w, bias: bias, padding: 3, groups: dIn)
                .slice(axis: 2, start: 0, end: len).transpose(1, 2).backward(g)
        }
        print(String(format: "causal conv fwd+bwd: token-major kernel %.2f ms, transpose + conv1d (im2col) %.2f ms", ours, general))
        let a = rnd([dIn, n], seed: 5)
        for i in 0..<a.count { a.data[i] = -Float(i % n + 1) }
        let inputs = [x, rnd([batch, len, dIn], seed: 6), a, rnd([batch, len, n], seed: 7), rnd([batch, len, n], seed: 8),
                      rnd([dIn], seed: 9), rnd([batch, len, dIn], seed: 10), rnd([dIn], seed: 11)]
        func scan(_ t: [Tensor]) throws -> Tensor {
            try Tensor.selectiveScan(t[0], delta: t[1], a: t[2], b: t[3], c: t[4], d: t[5], z: t[6], deltaBias: t[7])
        }
        let forward = try median { _ = try GradMode.noGrad { try scan(inputs) } }
        let leaves = inputs.map { $0.copy().requiringGrad() }
        var out = try scan(leaves)
        let backward = try median {
            try out.backward(g)
            out = try scan(leaves)
        }
        print(String(format: "selective scan B=%d L=%d Din=%d N=%d, %d threads: forward %.2f ms, backward (+ forward) %.2f ms",
                     batch, len, dIn, n, Threading.threads, forward, backward))
        // The block sizes side by side (the machine is noisy: compare within one run).
        let saved = (SelectiveScanKernel.chunk, SelectiveScanKernel.groupsPerTask)
        defer { (SelectiveScanKernel.chunk, SelectiveScanKernel.groupsPerTask) = saved }
        for (chunk, groups) in [(16, 8), (32, 8), (64, 8), (128, 8), (256, 8), (64, 1), (64, 2), (64, 4)] {
            (SelectiveScanKernel.chunk, SelectiveScanKernel.groupsPerTask) = (chunk, groups)
            var out = try scan(leaves)
            let t = try median(7) {
                try out.backward(g)
                out = try scan(leaves)
            }
            print(String(format: "  chunk %d, %d groups per task: backward (+ forward) %.2f ms", chunk, groups, t))
        }
    }
}
