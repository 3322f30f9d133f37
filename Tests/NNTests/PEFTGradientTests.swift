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

