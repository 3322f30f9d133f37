import XCTest
@testable import Engine

/// Central finite differences against reverse-mode gradients. The scalar probed is Σ out ⊙ R for a
/// fixed random R, so every output element's gradient path is exercised with a distinct weight.
func gradCheck(_ inputs: [Tensor], eps: Float = 1e-2, rtol: Float = 2e-2, atol: Float = 2e-3,
               file: StaticString = #filePath, line: UInt = #line,
               _ f: ([Tensor]) throws -> Tensor) throws {
    let inputs = inputs.map { $0.copy().requiringGrad() }  // fresh leaves, whatever built them
    let out = try f(inputs)
    var gen = RandomGenerator(seed: 99)
    let r = Tensor.randn(out.shape, generator: &gen)
    func probe() throws -> Double {
        let o = try GradMode.noGrad { try f(inputs) }
        var s = 0.0
        for i in 0..<o.count { s += Double(o.data[i]) * Double(r.data[i]) }
        return s
    }
    try (out * r).sum().backward()
    for (k, t) in inputs.enumerated() {
        let analytic = try XCTUnwrap(t.grad, "input \(k) got no gradient", file: file, line: line)
        XCTAssertEqual(analytic.shape, t.shape, file: file, line: line)
        for i in 0..<t.count {
            let saved = t.data[i]
            t.data[i] = saved + eps; let up = try probe()
            t.data[i] = saved - eps; let down = try probe()
            t.data[i] = saved
            let numeric = Float((up - down) / Double(2 * eps))
            let a = analytic.data[i]
            if abs(a - numeric) > atol + rtol * max(abs(a), abs(numeric)) {
                XCTFail("input \(k) element \(i): analytic \(a) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

/// Random tensor with values bounded away from zero (keeps kinks of relu/abs/max out of the stencil).
func rnd(_ shape: [Int], seed: UInt64, awayFromZero: Bool = false) -> Tensor {
    var g = RandomGenerator(seed: seed)
    let t = Tensor.randn(shape, generator: &g)
    if awayFromZero { for i in 0..<t.count { t.data[i] += t.data[i] >= 0 ? 0.2 : -0.2 } }
    return t
}

func assertClose(_ a: Tensor, _ b: Tensor, atol: Float = 1e-4, rtol: Float = 1e-4,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "shapes differ", file: file, line: line)
    guard a.shape == b.shape else { return }
    var worst: Float = 0, at = 0
    for i in 0..<a.count {
        let d = abs(a.data[i] - b.data[i]) - rtol * abs(b.data[i])
        if d > worst || d.isNaN { worst = d; at = i; if d.isNaN { break } }
    }
    if !(worst <= atol) { XCTFail("max excess error \(worst) at \(at): \(a.data[at]) vs \(b.data[at])", file: file, line: line) }
}

/// Runs `body` with small attention blocks so multi-block code paths run on small inputs.
func withAttentionBlocks(query: Int, key: Int, _ body: () throws -> Void) rethrows {
    typealias K = AttentionKernel
    let saved = (K.queryBlock, K.blasQueryBlock, K.keyBlockMax, K.backwardQueryBlock, K.backwardKeyBlockMax)
    (K.queryBlock, K.blasQueryBlock, K.keyBlockMax, K.backwardQueryBlock, K.backwardKeyBlockMax) = (query, query, key, query, key)
    defer { (K.queryBlock, K.blasQueryBlock, K.keyBlockMax, K.backwardQueryBlock, K.backwardKeyBlockMax) = saved }
    try body()
}
