import Foundation
import XCTest
@testable import Engine

/// What the selective scan does with bad numbers: a NaN or Inf input is named, a state that overflows
/// Float is named with its place and Δ, and a huge Δ with a negative A behaves as selective_scan_ref
/// (exp(Δ·A) underflows to 0, the state becomes Δ·B·x) instead of being flagged.
final class SelectiveScanBadInputTests: XCTestCase {
    struct Operands {
        var x = Tensor.full([1, 6, 3], 0.5), delta = Tensor.full([1, 6, 3], 0.2), a = Tensor.full([3, 2], -1)
        var b = Tensor.full([1, 6, 2], 0.3), c = Tensor.full([1, 6, 2], 0.7), d = Tensor.ones([3])
        var z = Tensor.full([1, 6, 3], 1), bias = Tensor.zeros([3])

        func run(softplus: Bool = true, reverse: Bool = false) throws -> Tensor {
            try Tensor.selectiveScan(x, delta: delta, a: a, b: b, c: c, d: d, z: z, deltaBias: bias,
                                     deltaSoftplus: softplus, reverse: reverse)
        }
    }

    func message(_ body: () throws -> Tensor) -> String {
        do { _ = try body(); return "" } catch { return "\(error)" }
    }

    func testNonFiniteInputsAreNamed() throws {
        for (name, poison) in [("x", Float.nan), ("delta", Float.infinity), ("B", -Float.infinity), ("C", Float.nan),
                               ("z", Float.nan), ("deltaBias", Float.infinity)] {
            for reverse in [false, true] {
                var p = Operands()
                switch name {
                case "x": p.x.data[4] = poison
                case "delta": p.delta.data[4] = poison
                case "B": p.b.data[3] = poison
                case "C": p.c.data[3] = poison
                case "z": p.z.data[4] = poison
                default: p.bias.data[1] = poison
                }
                let m = message { try p.run(reverse: reverse) }
                XCTAssertTrue(m.hasPrefix("selectiveScan: input \(name) "), "\(name): \(m)")
            }
        }
        var p = Operands()
        p.a.data[0] = .nan
        XCTAssertTrue(message { try p.run() }.hasPrefix("selectiveScan: input A [3, 2] holds nan at flat index 0"))
    }

    /// Huge Δ with A < 0: the reference's softplus(δ) = δ and exp(Δ·A) = 0, so h_t = Δ_t B_t x_t and
    /// y_t = Σ_n C_n Δ B_n x + D x, finite; the same without softplus.
    func testHugeDeltaWithNegativeAUnderflowsAsTheReference() throws {
        for softplus in [true, false] {
            var p = Operands()
            for i in 0..<p.delta.count { p.delta.data[i] = 1e6 }
            let y = try p.run(softplus: softplus)
            let h: Float = 1e6 * 0.3 * 0.5, gate: Float = 1 / (1 + Foundation.exp(-1))
            let expected = (2 * 0.7 * h + 0.5) * gate
            for v in y.toArray() { XCTAssertEqual(v, expected, accuracy: expected * 1e-5) }
        }
    }

    /// Δ·B·x beyond Float range, and a positive A whose exp(Δ·A) grows the state past it: both throw,
    /// naming where and the Δ and A there, instead of returning Inf.
    func testOverflowingStateIsNamed() throws {
        var p = Operands()
        p.delta.data[7] = 1e38          // batch 0, token 2, channel 1
        for i in 0..<p.b.count { p.b.data[i] = 100 }
        let m = message { try p.run() }
        XCTAssertTrue(m.hasPrefix("selectiveScan: the state overflowed Float at batch item 0, token 2, channel 1"), m)
        XCTAssertTrue(m.contains("delta + deltaBias there is 1e+38 before softplus"), m)

        var q = Operands()
        for i in 0..<q.a.count { q.a.data[i] = 40 }
        q.delta = Tensor.full([1, 6, 3], 3)   // exp(3·40) per step: past 3.4e38 by the third
        let n = message { try q.run(softplus: false) }
        XCTAssertTrue(n.contains("the state overflowed") && n.contains("A's largest entry in that channel is 40.0"), n)
        // One step less than overflow stays finite (the check does not flag large finite values).
        q.x = Tensor.full([1, 1, 3], 0.5); q.delta = Tensor.full([1, 1, 3], 3); q.z = Tensor.full([1, 1, 3], 1)
        (q.b, q.c) = (Tensor.full([1, 1, 2], 0.3), Tensor.full([1, 1, 2], 0.7))
        XCTAssertNoThrow(try q.run(softplus: false))
    }

    /// `addingTo` (the bidirectional mixer's inference path) adds the scan into a tensor in place,
    /// equal to the sum of two scans, and is refused while autograd records.
    func testAddingToSumsInPlaceAndOnlyWithoutRecording() throws {
        var g = RandomGenerator(seed: 31)
        var p = Operands()
        (p.x, p.delta, p.z) = (Tensor.randn([1, 6, 3], generator: &g), Tensor.randn([1, 6, 3], generator: &g), Tensor.randn([1, 6, 3], generator: &g))
        let forward = try p.run(), backward = try p.run(reverse: true)
        let expected = try (forward + backward).toArray()
        let sum = try p.run()
        let out = try Tensor.selectiveScan(p.x, delta: p.delta, a: p.a, b: p.b, c: p.c, d: p.d, z: p.z, deltaBias: p.bias,
                                           reverse: true, addingTo: sum)
        XCTAssertTrue(out === sum)
        for (u, v) in zip(out.toArray(), expected) { XCTAssertEqual(u, v, accuracy: 1e-6) }
        _ = p.x.requiringGrad()
        XCTAssertThrowsError(try Tensor.selectiveScan(p.x, delta: p.delta, a: p.a, b: p.b, c: p.c, addingTo: Tensor.zeros([1, 6, 3]))) {
            XCTAssertTrue("\($0)".contains("addingTo is for inference"), "\($0)")
        }
    }

    func testFirstNonFiniteFindsTailAndBodyHits() {
        let t = Tensor.zeros([21])
        XCTAssertNil(SelectiveScanKernel.firstNonFinite(t.data, 21))
        for i in [0, 7, 8, 15, 16, 20] {
            let u = Tensor.full([21], 3e38)
            u.data[i] = i % 2 == 0 ? .infinity : .nan
            XCTAssertEqual(SelectiveScanKernel.firstNonFinite(u.data, 21), i)
        }
    }
}
