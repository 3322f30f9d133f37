import XCTest
import Engine
@testable import NN

/// Finite differences against backprop for every layer, through its parameters and its input.
/// Large parameters are probed at a fixed sample of elements.
func gradCheckLayer(_ module: Module, input: Tensor?, eps: Float = 1e-2, rtol: Float = 3e-2, atol: Float = 3e-3,
                    file: StaticString = #filePath, line: UInt = #line, _ f: (Tensor?) throws -> Tensor) throws {
    module.zeroGrad()
    let x = input?.copy().requiringGrad()
    let out = try f(x)
    var gen = RandomGenerator(seed: 5)
    let r = Tensor.randn(out.shape, generator: &gen)
    try (out * r).sum().backward()
    func probe() throws -> Double {
        let o = try GradMode.noGrad { try f(x) }
        var s = 0.0
        for i in 0..<o.count { s += Double(o.data[i]) * Double(r.data[i]) }
        return s
    }
    var targets = module.namedParameters().filter { $0.1.requiresGrad }
    if let x { targets.append(("input", x)) }
    for (name, t) in targets {
        let g = try XCTUnwrap(t.grad, "\(name) got no gradient", file: file, line: line)
        let picks = t.count <= 24 ? Array(0..<t.count) : (0..<24).map { ($0 * 7919) % t.count }
        for i in picks {
            let saved = t.data[i]
            t.data[i] = saved + eps; let up = try probe()
            t.data[i] = saved - eps; let down = try probe()
            t.data[i] = saved
            let numeric = Float((up - down) / Double(2 * eps)), analytic = g.data[i]
            if abs(numeric - analytic) > atol + rtol * max(abs(numeric), abs(analytic)) {
                XCTFail("\(name)[\(i)]: analytic \(analytic) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

final class LayerGradientTests: XCTestCase {
    override func setUp() { Random.seed(11) }

    func testBasicLayers() throws {
        let lin = Linear(5, 3)
        try gradCheckLayer(lin, input: Tensor.randn([2, 5])) { try lin($0!) }
        let ln = LayerNorm(6)
        try ln.weight!.assign(from: Tensor.randn([6]))
        try gradCheckLayer(ln, input: Tensor.randn([3, 6])) { try ln($0!) }
        let bn = BatchNorm(3)
        try gradCheckLayer(bn, input: Tensor.randn([4, 3, 5])) { try bn($0!) }
        let conv = Conv2d(2, 4, kernel: (3, 3), stride: (2, 1), padding: (1, 1))
        try gradCheckLayer(conv, input: Tensor.randn([1, 2, 5, 4])) { try conv($0!) }
        let conv1 = Conv1d(3, 3, kernel: 3, padding: 1, groups: 3)
        try gradCheckLayer(conv1, input: Tensor.randn([2, 3, 6])) { try conv1($0!) }
        let emb = Embedding(7, 4)
        try gradCheckLayer(emb, input: nil) { _ in try emb([3, 1, 3, 6], shape: [2, 2]) }
    }

    func testTransformerLayers() throws {
        for fused in [true, false] {
            let mha = MultiHeadAttention(dim: 8, heads: 2, fusedQKV: fused)
            try gradCheckLayer(mha, input: Tensor.randn([2, 5, 8])) { try mha($0!) }
        }
        let mlp = MLP(dim: 6, hidden: 12)
        try gradCheckLayer(mlp, input: Tensor.randn([2, 3, 6])) { try mlp($0!) }
        let block = ViTBlock(dim: 8, heads: 2)
        try gradCheckLayer(block, input: Tensor.randn([2, 4, 8])) { try block($0!) }
        let vit = ViTClassifier(config: ViTConfig(dim: 8, depth: 1, heads: 2), channels: 1, imageSize: (4, 6), patch: (2, 3), classes: 3)
        // Tokens start tiny (std 0.02), so the stencil must be small against them.
        try gradCheckLayer(vit, input: Tensor.randn([2, 1, 4, 6]), eps: 2e-3) { try vit($0!) }
    }

    func testDropPathKeepsOrDropsWholeSamples() throws {
        let dp = DropPath(0.5)
        let x = Tensor.ones([64, 3, 2])
        let y = try dp(x)
        for b in 0..<64 {
            let row = Array(y.toArray()[(b * 6)..<(b * 6 + 6)])
            XCTAssertTrue(row.allSatisfy { $0 == 0 } || row.allSatisfy { $0 == 2 })
        }
        dp.eval()
        XCTAssertEqual(try dp(x).toArray(), x.toArray())
    }
}
