import XCTest
import Engine
@testable import NN

/// Finite differences against backprop for the P2C terms, and their values on hand-worked cases.
final class PreferenceLossTests: XCTestCase {
    func values(_ xs: [Float]) -> Tensor { Tensor(xs) }

    /// Central differences of the scalar `f` at `x` against `x.grad` after `f(x).backward()`.
    func assertGradient(_ x: [Float], shape: [Int]? = nil, eps: Float = 1e-3, tolerance: Float = 2e-3,
                        file: StaticString = #filePath, line: UInt = #line,
                        analytic f: (Tensor) throws -> Tensor, numeric g: ((Tensor) throws -> Tensor)? = nil) throws {
        let shape = shape ?? [x.count]
        let leaf = try Tensor(x, shape: shape).requiringGrad()
        try f(leaf).backward()
        let grad = try XCTUnwrap(leaf.grad, file: file, line: line).toArray()
        func probe(_ values: [Float]) throws -> Float {
            let t = try Tensor(values, shape: shape)
            return try GradMode.noGrad { try (g.map { try $0(t) } ?? f(t)).item() }
        }
        for i in x.indices {
            var up = x, down = x
            up[i] += eps; down[i] -= eps
            let numeric: Float = (try probe(up) - probe(down)) / (2 * eps)
            let allowed: Float = tolerance + 0.02 * Swift.abs(numeric)
            XCTAssertEqual(grad[i], numeric, accuracy: allowed, "element \(i)", file: file, line: line)
        }
    }

    func testBradleyTerryValueAndGradient() throws {
        // P(a ≻ b) = σ(d): target 1 costs −log σ(d), target 0 costs −log σ(−d), a tie both halves.
        let d: [Float] = [0.7, -1.2, 0.3, 1.9]
        let t: [Float] = [1, 0, 0.5, 0]
        let loss = try Losses.bradleyTerry(values(d), targets: t).item()
        func s(_ x: Float) -> Float { 1 / (1 + exp(-x)) }
        let expected = (-log(s(0.7)) - log(s(1.2)) - 0.5 * log(s(0.3)) - 0.5 * log(s(-0.3)) - log(s(-1.9))) / 4
        XCTAssertEqual(loss, expected, accuracy: 1e-5)
        try assertGradient(d) { try Losses.bradleyTerry($0, targets: t) }
        // Scores are tanh outputs, so |d| ≤ 2 in use; the stable form holds far beyond.
        XCTAssertTrue(try Losses.bradleyTerry(values([80, -80]), targets: [0, 1]).item().isFinite)
        XCTAssertThrowsError(try Losses.bradleyTerry(values([0.1]), targets: [1.5]))
    }

    func testHeadDiversityStopsGradientThroughItsTargets() throws {
        // Three heads over four pairs, laid out [3, 4] and split into rows.
        let d: [Float] = [0.4, -0.9, 1.1, 0.2, -0.3, 0.8, 0.5, -1.4, 1.0, 0.1, -0.6, 0.7]
        func rows(_ x: Tensor) throws -> [Tensor] { try (0..<3).map { try x.slice(axis: 0, start: $0, end: $0 + 1).reshape([4]) } }
        // With P_h held at its value, CE(P_h, P_g) is Bradley-Terry of d_g against soft targets P_h.
        let held = (0..<3).map { h in (0..<4).map { 1 / (1 + exp(-d[h * 4 + $0])) } }
        func surrogate(_ x: Tensor) throws -> Tensor {
            let r = try rows(x)
            var total: Tensor? = nil
            for h in 0..<3 { for g in 0..<3 where g != h {
                let ce = try Losses.bradleyTerry(r[g], targets: held[h])
                total = try total.map { try $0 + ce } ?? ce
            } }
            return total! * (1.0 / 6)
        }
        let value = try Losses.headDiversity(rows(Tensor(d, shape: [3, 4]))).item()
        XCTAssertEqual(value, try surrogate(Tensor(d, shape: [3, 4])).item(), accuracy: 1e-5)
        try assertGradient(d, shape: [3, 4], analytic: { try Losses.headDiversity(rows($0)) }, numeric: surrogate)
        // Identical heads: the diversity is the entropy of their common prediction (its least value).
        let same = try Losses.headDiversity([values([0.0]), values([0.0])]).item()
        XCTAssertEqual(same, log(2), accuracy: 1e-5)
        XCTAssertThrowsError(try Losses.headDiversity([values([0.1])]))
    }

    func testPreferenceConsistency() throws {
        // a wins: max(0, −Δ); b wins: max(0, Δ); tie: |Δ|.
        let delta: [Float] = [-0.3, 0.4, 0.25, 0.5, -0.2, -0.45]
        let t: [Float] = [1, 1, 0, 0, 0.5, 0.5]
        let value = try Losses.preferenceConsistency(values(delta), targets: t).item()
        XCTAssertEqual(value, (0.3 + 0 + 0.25 + 0.5 + 0.2 + 0.45) / 6, accuracy: 1e-6)
        try assertGradient(delta) { try Losses.preferenceConsistency($0, targets: t) }
    }

    func testVoteConsistency() throws {
        // Two pairs, three classes: the probability gap must reach the vote gap per class.
        let gap: [Float] = [0.1, -0.3, 0.2, 0.5, 0.3, 0.05]
        let votes: [Float] = [0.4, -0.6, 0.5, 0.2, -0.1, 0.0]
        let v = try Tensor(votes, shape: [2, 3])
        let value = try Losses.voteConsistency(Tensor(gap, shape: [2, 3]), voteGap: v).item()
        // pair 1: δ 0.4 ≥ 0 → 0.3; δ −0.6 < 0 → max(0, −0.3 + 0.6) = 0.3; δ 0.5 → 0.3. pair 2: 0; max(0, 0.3 + 0.1) = 0.4; 0 (δ 0, Δ 0.05 ≥ δ).
        XCTAssertEqual(value, (0.3 + 0.3 + 0.3 + 0 + 0.4 + 0) / 2, accuracy: 1e-6)
        try assertGradient(gap, shape: [2, 3]) { try Losses.voteConsistency($0, voteGap: v) }
    }

    func testPreferenceHeadGradientsAndRange() throws {
        Random.seed(4)
        let head = PreferenceHead(width: 6, classes: 3)
        var g = RandomGenerator(seed: 8)
        let x = Tensor.randn([5, 6], generator: &g)
        let classes = [0, 2, 1, 2, 0]
        // A small step: ReLU kinks sit close to some hidden units of a 6-wide head.
        try gradCheckLayer(head, input: x, eps: 1e-3) { try head($0!, classes: classes) }
        let s = try head(x * 50, classes: classes).toArray()
        XCTAssertTrue(s.allSatisfy { $0 > -1 && $0 < 1 }, "tanh keeps scores in (−1, 1): \(s)")
        // The class changes the score: the embedding is an input, not a constant.
        let a = try head(x, classes: [0, 0, 0, 0, 0]).toArray(), b = try head(x, classes: [1, 1, 1, 1, 1]).toArray()
        XCTAssertNotEqual(a, b)
        XCTAssertThrowsError(try head(x, classes: [0, 1])) { XCTAssertTrue("\($0)".contains("one class per row"), "\($0)") }
        XCTAssertThrowsError(try head(x, classes: [0, 1, 2, 3, 0])) { XCTAssertTrue("\($0)".contains("outside"), "\($0)") }
    }
}
