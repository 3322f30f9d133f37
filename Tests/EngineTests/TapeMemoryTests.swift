import XCTest
@testable import Engine

/// The tape keeps only what each backward reads: an intermediate no closure captured is freed once the
/// forward pass drops it, and gradients are unchanged.
final class TapeMemoryTests: XCTestCase {
    func testFrozenLinearAndSumsDoNotKeepTheirInputsAlive() throws {
        Random.seed(3)
        let x = Tensor.randn([4, 8]).requiringGrad()
        let frozen = Tensor.randn([6, 8])                  // no gradient: its input is not needed
        let trained = Tensor.randn([6, 8]).requiringGrad() // needs its input for the weight gradient
        weak var hidden: Tensor?, summand: Tensor?, kept: Tensor?
        let loss: Tensor = try {
            let h = x * 2
            hidden = h
            let s = try h.linear(weight: frozen, bias: nil)             // frozen: h is not saved
            summand = s
            let k = x * 3
            kept = k
            let t = try k.linear(weight: trained, bias: nil)            // trained: k is saved
            return try (s + t).square().sum()                             // `+` saves neither side
        }()
        XCTAssertNil(hidden, "a frozen linear layer's input is freed")
        XCTAssertNil(summand, "a sum's operands are freed")
        XCTAssertNotNil(kept, "a trained linear layer keeps its input for the weight gradient")
        try loss.backward()
        XCTAssertNil(kept, "and frees it after the backward pass")

        // Same gradients as the expanded formula: d/dx Σ (2x Fᵀ + 3x Tᵀ)² = 2 r (2F + 3T), r the residual.
        let r = try (x * 2).linear(weight: frozen, bias: nil) + (x * 3).linear(weight: trained, bias: nil)
        let expected = try (r * 2).matmul(frozen * 2 + trained * 3)
        XCTAssertLessThanOrEqual(zip(x.grad!.toArray(), expected.toArray()).map { Swift.abs($0 - $1) }.max()!, 1e-3)
        let expectedW = try (r * 2).transpose(0, 1).matmul(x * 3)
        XCTAssertLessThanOrEqual(zip(trained.grad!.toArray(), expectedW.toArray()).map { Swift.abs($0 - $1) }.max()!, 1e-3)
        XCTAssertNil(frozen.grad)
    }

    func testAGraphSharedByTwoPathsStillSumsItsGradients() throws {
        let x = try Tensor([1, 2, 3], shape: [3]).requiringGrad()
        let y = x.square()
        let z = try (y + y * x).sum()        // d/dx (x² + x³) = 2x + 3x²
        try z.backward()
        XCTAssertEqual(x.grad!.toArray(), [5, 16, 33])
    }
}
