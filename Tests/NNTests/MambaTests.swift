import Foundation
import XCTest
@testable import Engine
@testable import NN

/// Vim's bimamba-v2 mixer against the same formula written with plain tensor ops: PyTorch's layout
/// for the conv (general conv1d over [B, C, L], padded and cut), explicit flips for the backward
/// branch, softplus as its own op, and the recurrence one token at a time. Outputs and every gradient
/// must agree, and finite differences must agree with backprop through the module.
final class MambaTests: XCTestCase {
    /// 40 inner channels (five SIMD groups), dt_rank 2, 4 states.
    let config = MambaConfig(dim: 20, stateSize: 4)

    func makeMixer(bidirectional: Bool = true, seed: UInt64 = 1) -> MambaMixer {
        Random.global = RandomGenerator(seed: seed)
        let m = MambaMixer(config, bidirectional: bidirectional, layers: 4)
        // The initial A_log and D are the same for every channel, and the dt biases tiny: perturb them so
        // a channel mix-up or a swapped branch cannot hide.
        var g = RandomGenerator(seed: seed + 100)
        for t in [m.aLog, m.d, m.aBLog, m.dB, m.dtProj.bias, m.dtProjB?.bias].compactMap({ $0 }) {
            for i in 0..<t.count { t.data[i] += 0.3 * g.nextNormal() }
        }
        return m
    }

    /// The naive selective scan in tensor ops, for sequences in their own order.
    func naiveBranch(_ x: Tensor, _ z: Tensor, conv: CausalConv1d, xProj: Linear, dtProj: Linear,
                     aLog: Tensor, d: Tensor) throws -> Tensor {
        let (batch, len, inner) = (x.shape[0], x.shape[1], x.shape[2])
        let (n, rank, k) = (config.stateSize, config.dtRank, config.convKernel)
        let xc = try x.transpose(1, 2).conv1d(weight: conv.weight, bias: conv.bias, padding: k - 1, groups: inner)
            .slice(axis: 2, start: 0, end: len).transpose(1, 2).silu()
        let xdbl = try xc.linear(weight: xProj.weight, bias: nil)
        let dt = try xdbl.slice(axis: 2, start: 0, end: rank)
        let b = try xdbl.slice(axis: 2, start: rank, end: rank + n), c = try xdbl.slice(axis: 2, start: rank + n)
        let delta = try dt.linear(weight: dtProj.weight, bias: dtProj.bias).softplus()
        let a = aLog.exp() * -1
        var h = Tensor.zeros([batch, inner, n])
        var ys: [Tensor] = []
        for t in 0..<len {
            let dtT = try delta.slice(axis: 1, start: t, end: t + 1).reshape([batch, inner, 1])
            let xT = try xc.slice(axis: 1, start: t, end: t + 1).reshape([batch, inner, 1])
            let bT = try b.slice(axis: 1, start: t, end: t + 1).reshape([batch, 1, n])
            let cT = try c.slice(axis: 1, start: t, end: t + 1).reshape([batch, 1, n])
            h = try (dtT * a).exp() * h + dtT * bT * xT
            ys.append(try (h * cT).sum(axis: 2) + xT.reshape([batch, inner]) * d)
        }
        return try Tensor.stack(ys, axis: 1) * z.silu()
    }

    func naiveMixer(_ m: MambaMixer, _ u: Tensor) throws -> Tensor {
        let inner = config.inner
        let xz = try u.linear(weight: m.inProj.weight, bias: nil)
        let x = try xz.slice(axis: 2, start: 0, end: inner), z = try xz.slice(axis: 2, start: inner)
        let yf = try naiveBranch(x, z, conv: m.conv1d, xProj: m.xProj, dtProj: m.dtProj, aLog: m.aLog, d: m.d)
        guard let convB = m.conv1dB, let xProjB = m.xProjB, let dtProjB = m.dtProjB, let aBLog = m.aBLog, let dB = m.dB else {
            return try yf.linear(weight: m.outProj.weight, bias: nil)
        }
        let yb = try naiveBranch(x.flip([1]), z.flip([1]), conv: convB, xProj: xProjB, dtProj: dtProjB, aLog: aBLog, d: dB)
        return try ((yf + yb.flip([1])) / 2).linear(weight: m.outProj.weight, bias: nil)
    }

    func testMixerMatchesPlainCompositionWithGradients() throws {
        let saved = SelectiveScanKernel.chunk
        SelectiveScanKernel.chunk = 4  // 11 tokens: chunks of 4, 4, 3
        defer { SelectiveScanKernel.chunk = saved }
        for bidirectional in [true, false] {
            let m = makeMixer(bidirectional: bidirectional)
            var g = RandomGenerator(seed: 7)
            let u = Tensor.randn([2, 11, config.dim], generator: &g).requiringGrad()
            let r = Tensor.randn([2, 11, config.dim], generator: &g)
            func gradients(_ f: (Tensor) throws -> Tensor) throws -> (Tensor, [(String, Tensor)]) {
                m.zeroGrad(); u.zeroGrad()
                let out = try f(u)
                try (out * r).sum().backward()
                return (out, try m.namedParameters().map { ($0.0, try XCTUnwrap($0.1.grad, $0.0)) } + [("input", try XCTUnwrap(u.grad))])
            }
            let (fast, fastGrads) = try gradients { try m($0) }
            let (slow, slowGrads) = try gradients { try naiveMixer(m, $0) }
            assertClose(fast, slow, atol: 1e-5, rtol: 1e-4, "output")
            for ((name, a), (_, b)) in zip(fastGrads, slowGrads) { assertClose(a, b, atol: 2e-5, rtol: 1e-3, name) }
        }
    }

    func testMixerFiniteDifferences() throws {
        let m = makeMixer(seed: 3)
        var g = RandomGenerator(seed: 9)
        try gradCheckLayer(m, input: Tensor.randn([2, 6, config.dim], generator: &g)) { try m($0!) }
    }

    func testFlippedIsFlipOfMixerAndBlockOnFlippedInput() throws {
        let m = makeMixer(seed: 5)
        var g = RandomGenerator(seed: 13)
        let u = Tensor.randn([2, 7, config.dim], generator: &g), r = Tensor.randn([2, 7, config.dim], generator: &g)
        assertClose(try m(u, flipped: true), try m(u.flip([1])).flip([1]), atol: 1e-6, rtol: 1e-5, "mixer")
        let block = VimBlock(config, layers: 4)
        block.replaceMixerForTest(m)
        let plain = try block(u.flip([1]), residual: r.flip([1]))
        let flipped = try block(u, residual: r, flipped: true)
        assertClose(flipped.hidden, try plain.hidden.flip([1]), atol: 1e-6, rtol: 1e-5, "hidden")
        assertClose(flipped.residual, try plain.residual.flip([1]), atol: 1e-6, rtol: 1e-5, "residual")
        // The first layer of a stack has no residual yet: it is the hidden state itself.
        XCTAssertEqual(try block(u, residual: nil).residual.toArray(), u.toArray())
        try gradCheckLayer(block, input: u) { try block($0!, residual: r, flipped: true).hidden }
    }

    func testVimKeysAndInitialisation() {
        Random.global = RandomGenerator(seed: 11)
        let m = MambaMixer(MambaConfig(dim: 192), layers: 24)
        let shapes = Dictionary(uniqueKeysWithValues: m.namedParameters().map { ($0.0, $0.1.shape) })
        let expected: [String: [Int]] = [
            "in_proj.weight": [768, 192], "conv1d.weight": [384, 1, 4], "conv1d.bias": [384],
            "x_proj.weight": [44, 384], "dt_proj.weight": [384, 12], "dt_proj.bias": [384],
            "A_log": [384, 16], "D": [384],
            "conv1d_b.weight": [384, 1, 4], "conv1d_b.bias": [384], "x_proj_b.weight": [44, 384],
            "dt_proj_b.weight": [384, 12], "dt_proj_b.bias": [384], "A_b_log": [384, 16], "D_b": [384],
            "out_proj.weight": [192, 384],
        ]
        XCTAssertEqual(shapes, expected)
        XCTAssertEqual(Set(VimBlock(MambaConfig(dim: 192)).namedParameters().map(\.0)),
                       Set(["norm.weight", "norm.bias"] + expected.keys.map { "mixer." + $0 }))
        // softplus(dt bias) in [1e-3, 0.1]; A = −(1…16); the backward dt bias zeroed by Vim's init.
        for v in m.dtProj.bias!.toArray() {
            let dt = Foundation.log1p(Foundation.exp(v))
            XCTAssertTrue(dt >= 0.999e-3 && dt <= 0.1001, "dt \(dt)")
        }
        XCTAssertEqual(m.aLog.data[17], Foundation.log(2), accuracy: 1e-6)
        XCTAssertEqual(m.dtProjB!.bias!.toArray(), [Float](repeating: 0, count: 384))
        // out_proj: U(±1/√384) scaled by 1/√24.
        let bound = 1 / (Float(384).squareRoot() * Float(24).squareRoot())
        XCTAssertLessThanOrEqual(m.outProj.weight.toArray().map(Swift.abs).max()!, bound)
        XCTAssertGreaterThan(m.outProj.weight.toArray().map(Swift.abs).max()!, 0.9 * bound)
    }
}

extension VimBlock {
    /// Puts `mixer` in this block (through the same replacement path adapters use).
    func replaceMixerForTest(_ mixer: MambaMixer) {
        _ = try! replaceModules(matching: "mixer") { _, _ in mixer }
    }
}
