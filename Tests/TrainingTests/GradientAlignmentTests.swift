import Foundation
import XCTest
import Engine
import NN
@testable import Training

/// FLAD's reward on a model small enough to differentiate by hand: a shared layer s = W x under two
/// heads, L_aux = h_a · (W x_a) and L_target = h_t · (W x_t), so ∂L/∂W = h xᵀ (an outer product).
final class GradientAlignmentTests: XCTestCase {
    /// W [2, 2]; heads h_a = [1, 2], h_t = [2, 1]; inputs x_a = [1, 0], x_t = [1, 1].
    func makeModel() throws -> (shared: Linear, auxHead: Linear, targetHead: Linear, xa: Tensor, xt: Tensor) {
        let shared = Linear(weight: try Tensor([0.5, -1, 2, 0.25], shape: [2, 2]).requiringGrad(), bias: nil)
        let auxHead = Linear(weight: try Tensor([1, 2], shape: [1, 2]).requiringGrad(), bias: nil)
        let targetHead = Linear(weight: try Tensor([2, 1], shape: [1, 2]).requiringGrad(), bias: nil)
        return (shared, auxHead, targetHead, try Tensor([1, 0], shape: [1, 2]), try Tensor([1, 1], shape: [1, 2]))
    }

    func testCosineOfTheSharedGradientsByHand() throws {
        let m = try makeModel()
        let r = try GradientAlignment.backwardPair(shared: [m.shared.weight],
                                                   first: { try m.auxHead(m.shared(m.xa)).sum() },
                                                   second: { try m.targetHead(m.shared(m.xt)).sum() })
        // g_aux = h_a x_aᵀ = [[1, 0], [2, 0]], g_target = h_t x_tᵀ = [[2, 2], [1, 1]]:
        // cos = (2 + 0 + 2 + 0) / (√5 · √10) = 4 / √50.
        XCTAssertEqual(try XCTUnwrap(r.cosine), 4 / 50.0.squareRoot(), accuracy: 1e-6)
        // The losses: h_a · W x_a = [1, 2] · [0.5, 2] = 4.5; h_t · W x_t = [2, 1] · [-0.5, 2.25] = 1.25.
        XCTAssertEqual(r.first, 4.5, accuracy: 1e-6)
        XCTAssertEqual(r.second, 1.25, accuracy: 1e-6)
        // Both passes stay in .grad for the step: W gets g_aux + g_target, each head its own.
        XCTAssertEqual(try XCTUnwrap(m.shared.weight.grad).toArray(), [3, 2, 3, 1])
        XCTAssertEqual(try XCTUnwrap(m.auxHead.weight.grad).toArray(), [0.5, 2])     // W x_a
        XCTAssertEqual(try XCTUnwrap(m.targetHead.weight.grad).toArray(), [-0.5, 2.25])
        XCTAssertEqual(GradientAlignment.cosine([1, 0, 2, 0], [2, 2, 1, 1]), 4 / 50.0.squareRoot(), accuracy: 1e-12)
    }

    func testAGradientAlreadyThereBelongsToNeither() throws {
        let m = try makeModel()
        m.shared.weight.grad = try Tensor([10, -7, 3, 100], shape: [2, 2])
        let r = try GradientAlignment.backwardPair(shared: [m.shared.weight],
                                                   first: { try m.auxHead(m.shared(m.xa)).sum() },
                                                   second: { try m.targetHead(m.shared(m.xt)).sum() })
        XCTAssertEqual(try XCTUnwrap(r.cosine), 4 / 50.0.squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(m.shared.weight.grad).toArray(), [13, -5, 6, 101])
    }

    func testOpposedAndUnrelatedGradients() throws {
        let m = try makeModel()
        // The same input through the same head with the sign flipped: cos = −1.
        let opposed = try GradientAlignment.backwardPair(shared: [m.shared.weight],
                                                         first: { try m.auxHead(m.shared(m.xa)).sum() },
                                                         second: { try m.auxHead(m.shared(m.xa)).sum() * -1 })
        XCTAssertEqual(try XCTUnwrap(opposed.cosine), -1, accuracy: 1e-6)
        // A loss that does not reach the shared layer: a zero gradient, cosine 0.
        let m2 = try makeModel()
        let apart = try GradientAlignment.backwardPair(shared: [m2.shared.weight],
                                                       first: { try m2.auxHead(m2.shared(m2.xa)).sum() },
                                                       second: { try m2.targetHead(m2.xt).sum() })
        XCTAssertEqual(try XCTUnwrap(apart.cosine), 0)
    }

    func testANonFiniteLossIsNotBackpropagated() throws {
        let m = try makeModel()
        var secondRan = false
        let r = try GradientAlignment.backwardPair(shared: [m.shared.weight],
                                                   first: { try m.auxHead(m.shared(m.xa)).sum() * Float.nan },
                                                   second: { secondRan = true; return try m.targetHead(m.shared(m.xt)).sum() })
        XCTAssertNil(r.cosine)
        XCTAssertTrue(r.first.isNaN)
        XCTAssertFalse(secondRan)
        XCTAssertNil(m.shared.weight.grad)
    }
}
