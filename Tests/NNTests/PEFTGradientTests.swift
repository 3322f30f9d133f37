import XCTest
import Engine
@testable import NN

/// Finite differences against backprop through the parameter-efficient modules, their own tensors and
/// the wrapped layers' (unfrozen here, so every path is checked) and the input.
final class PEFTGradientTests: XCTestCase {
    func testLoRALinearOnSomeRows() throws {
        Random.seed(11)
        let lora = try LoRALinear(wrapping: Linear(6, 9), rows: [0..<3, 6..<9], rank: 2, scale: 0.7)
        for f in lora.lora { try f.down.weight.assign(from: Tensor.randn([2, 6])) }   // start off zero
        try gradCheckLayer(lora, input: Tensor.randn([2, 3, 6])) { try lora($0!) }
    }

    func testAdaptersParallelAndSequential() throws {
        Random.seed(12)
        for placement in AdapterPlacement.allCases {
            for residual in [false, true] {
                let mlp = AdaptedMLP(wrapping: MLP(dim: 6, hidden: 10), adapter: BottleneckAdapter(dim: 6, bottleneck: 3, initialisation: .standard),
                                     placement: placement, residual: residual)
                try (mlp.adapter as! BottleneckAdapter).up.weight.assign(from: Tensor.randn([6, 3], std: 0.5))
                try gradCheckLayer(mlp, input: Tensor.randn([2, 4, 6])) { try mlp($0!) }
                let attn = AdaptedAttention(wrapping: MultiHeadAttention(dim: 6, heads: 2), adapter: BottleneckAdapter(dim: 6, bottleneck: 2, initialisation: .standard),
                                            placement: placement, residual: residual)
                try (attn.adapter as! BottleneckAdapter).up.weight.assign(from: Tensor.randn([6, 2], std: 0.5))
                try gradCheckLayer(attn, input: Tensor.randn([2, 4, 6])) { try attn($0!) }
            }
        }
    }

    func testConformerAdapterInTrainingAndAtInference() throws {
        Random.seed(14)
        let conformer = ConformerAdapter(dim: 6, bottleneck: 2, kernel: 5)
        try gradCheckLayer(conformer, input: Tensor.randn([2, 7, 6])) { try conformer($0!) }
        // The reference's BatchNorm uses batch statistics at inference too; the usual form uses its running ones.
        let x = Tensor.randn([3, 7, 6])
        conformer.eval()
        let reference = try GradMode.noGrad { try conformer(x) }
        XCTAssertFalse(conformer.bn.training, "the module's mode is left as it was")
        let usual = ConformerAdapter(dim: 6, bottleneck: 2, kernel: 5, batchStatisticsAlways: false)
        var state = conformer.stateDict()
        try usual.load(consuming: &state)
        usual.eval()
        XCTAssertGreaterThan(zip(reference.toArray(), try GradMode.noGrad { try usual(x) }.toArray()).map { abs($0 - $1) }.max()!, 1e-4)
    }

    func testDenseMixtureOfAdapters() throws {
        Random.seed(15)
        let moa = DenseMixture(dim: 6, bottleneck: 2, experts: 3, initialisation: .standard)
        for expert in moa.experts { try expert.up.weight.assign(from: Tensor.randn([6, 2], std: 0.5)) }
        try gradCheckLayer(moa, input: Tensor.randn([2, 4, 6])) { try moa($0!) }
        // One expert: the router's softmax is 1, so the mixture is that adapter.
        let single = DenseMixture(dim: 6, bottleneck: 2, experts: 1, initialisation: .standard)
        try single.experts[0].up.weight.assign(from: Tensor.randn([6, 2]))
        let x = Tensor.randn([2, 4, 6])
        let a = try single(x).toArray(), b = try single.experts[0](x).toArray()
        XCTAssertLessThanOrEqual(zip(a, b).map { abs($0 - $1) }.max()!, 1e-6)
    }

    func testPrefixAttention() throws {
        Random.seed(13)
        let prefix = PrefixAttention(wrapping: MultiHeadAttention(dim: 8, heads: 2), tokens: 3, dim: 8)
        try gradCheckLayer(prefix, input: Tensor.randn([2, 4, 8])) { try prefix($0!) }
    }
}


extension PEFTGradientTests {
    /// Soft-MoA against its definition written out token by token and slot by slot, and by finite
    /// differences (slot embeddings, the learned scale, every expert, the input).
    func testSoftMixtureMatchesItsDefinitionAndItsGradients() throws {
        Random.seed(15)
        for normalize in [false, true] {
            let moa = SoftMixture(dim: 6, bottleneck: 2, experts: 3, slots: 2, normalize: normalize, initialisation: .standard)
            for e in moa.experts { try e.up.weight.assign(from: Tensor.randn([6, 2], std: 0.5)) }
            if let scale = moa.scale { scale.data[0] = 1.3 }
            let x = Tensor.randn([2, 5, 6])
            let y = try GradMode.noGrad { try moa(x) }
            // Naive: per clip, logits[m][j] = x̂_m · φ̂_j; dispatch over m, combine over j.
            let (e, s, d, m) = (3, 2, 6, 5), n = 3 * 2
            let phi = moa.slotParams.toArray()
            func phiAt(_ k: Int, _ j: Int) -> Float {                 // φ[k, expert j / S, slot j % S], normalised over experts
                let (ex, sl) = (j / s, j % s)
                let v = phi[(k * e + ex) * s + sl]
                guard normalize else { return v }
                let norm = (0..<e).map { phi[(k * e + $0) * s + sl] * phi[(k * e + $0) * s + sl] }.reduce(0, +).squareRoot()
                return v / (norm + 1e-6) * 1.3
            }
            for b in 0..<2 {
                var rows = (0..<m).map { t in (0..<d).map { x.data[(b * m + t) * d + $0] } }
                if normalize { rows = rows.map { r in let nr = r.map { $0 * $0 }.reduce(0, +).squareRoot(); return r.map { $0 / (nr + 1e-6) } } }
                let logits = rows.map { r in (0..<n).map { j in (0..<d).map { r[$0] * phiAt($0, j) }.reduce(0, +) } }
                let dispatch = (0..<n).map { j in let z = (0..<m).map { exp(logits[$0][j]) }; let t = z.reduce(0, +); return z.map { $0 / t } }
                let combine = logits.map { l in let z = l.map { exp($0) }; let t = z.reduce(0, +); return z.map { $0 / t } }
                var outs: [[Float]] = []
                for j in 0..<n {
                    let slot = (0..<d).map { k in (0..<m).map { dispatch[j][$0] * rows[$0][k] }.reduce(0, +) }
                    let out = try GradMode.noGrad { try moa.experts[j / s](Tensor(slot, shape: [1, 1, d])) }
                    outs.append(out.toArray())
                }
                for t in 0..<m { for k in 0..<d {
                    let expected = (0..<n).map { combine[t][$0] * outs[$0][k] }.reduce(0, +)
                    XCTAssertEqual(y.data[(b * m + t) * d + k], expected, accuracy: 1e-5, "normalize \(normalize)")
                } }
            }
            try gradCheckLayer(moa, input: x) { try moa($0!) }
        }
    }

    func testMixtureAtTheAttentionIsAddedAgainAfterTheMLP() throws {
        Random.seed(16)
        let echo = AdapterEcho()
        let moa = DenseMixture(dim: 6, bottleneck: 2, experts: 2, initialisation: .standard)
        let attn = AdaptedAttention(wrapping: MultiHeadAttention(dim: 6, heads: 2), adapter: moa, placement: .parallel, echo: echo)
        let mlp = EchoedMLP(wrapping: MLP(dim: 6, hidden: 8), echo: echo)
        let (x, u) = (Tensor.randn([2, 4, 6]), Tensor.randn([2, 4, 6]))
        let a = try attn(x)
        let m = try moa(x)
        try assertClose(try a - m, try MultiHeadAttention(sharing: attn)(x), atol: 1e-5)
        let y = try mlp(u)
        try assertClose(try y - m, try MLP(sharing: mlp)(u), atol: 1e-5)
        XCTAssertThrowsError(try mlp(u), "the echo is used once")
    }
}
