import XCTest
@testable import Engine
@testable import NN

final class InitTests: XCTestCase {
    /// The in-place initialisers draw the same values as the tensor-making ones (seeded runs and fixtures
    /// stay as they were) and leave nothing in the buffer pool: a temporary of the weight's size used to go
    /// back to the pool and stay (Cnn14: 323 MB after construction, counted in every inference's peak).
    func testInPlaceInitialisersDrawTheSameValuesAndPoolNothing() throws {
        let shape = [64, 32, 3, 3]
        Random.seed(11)
        let bound = (6 / Float(32 * 9 + 64 * 9)).squareRoot()
        let made = Tensor.uniform(shape, low: -bound, high: bound)
        let madeNormal = Tensor.truncatedNormal([40, 30], std: 0.02, a: -0.04, b: 0.04)
        Random.seed(11)
        let weight = Tensor.zeros(shape), linear = Tensor.zeros([40, 30])
        let held = BufferPool.shared.heldBytes
        Init.xavierUniform(weight)
        linear.fillTruncatedNormal(std: 0.02, a: -0.04, b: 0.04)
        XCTAssertEqual(BufferPool.shared.heldBytes, held, "an initialiser left a temporary in the pool")
        XCTAssertEqual(weight.toArray(), made.toArray())
        XCTAssertEqual(linear.toArray(), madeNormal.toArray())
        XCTAssertTrue(weight.toArray().allSatisfy { abs($0) <= bound } && Set(weight.toArray()).count > 1000)
    }
}
