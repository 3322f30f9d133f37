import Foundation
import XCTest
import Engine
@testable import Training

/// FLAD's bandits: EXP3's probabilities (sum, floor, one update by hand), UCB1's warm start, and both
/// finding the best arm of a synthetic reward problem.
final class BanditTests: XCTestCase {
    func testEXP3EpsilonScheduleByHand() {
        // ε_0 = min(1/K, sqrt(ln K / K)) = 1/K for K = 2, 3; ε_5 (K = 3) = sqrt(ln 3 / (3 · 51)).
        XCTAssertEqual(EXP3FLAD.epsilon(arms: 2, steps: 0), 0.5)
        XCTAssertEqual(EXP3FLAD.epsilon(arms: 3, steps: 0), 1.0 / 3)
        XCTAssertEqual(EXP3FLAD.epsilon(arms: 3, steps: 5), 0.084737668571627, accuracy: 1e-12)
        // G batches per step count as t·G rounds.
        XCTAssertEqual(EXP3FLAD.epsilon(arms: 3, steps: 5, batchesPerStep: 2), EXP3FLAD.epsilon(arms: 3, steps: 10))
    }

    func testEXP3OneUpdateByHand() throws {
        let bandit = try EXP3FLAD(arms: 2)
        XCTAssertEqual(bandit.probabilities, [0.5, 0.5])
        bandit.observe(arm: 0, reward: 0.5)
        // R̂ = [0.5 / 0.5, 0] = [1, 0]; ε_0 = 0.5, ε_1 = sqrt(ln 2 / 22) = 0.1775012395;
        // p = (1 − 2 ε_1) softmax(0.5 · [1, 0]) + ε_1 = [0.5789859650, 0.4210140350].
        XCTAssertEqual(bandit.estimatedRewards, [1, 0])
        XCTAssertEqual(bandit.epsilon, 0.17750123950398786, accuracy: 1e-12)
        XCTAssertEqual(bandit.probabilities[0], 0.5789859650475374, accuracy: 1e-12)
        XCTAssertEqual(bandit.probabilities[1], 0.4210140349524625, accuracy: 1e-12)
        XCTAssertEqual(bandit.plays, [1, 0])
    }

    func testEXP3ProbabilitiesSumToOneAndKeepTheFloor() throws {
        let bandit = try EXP3FLAD(arms: 4)
        var g = RandomGenerator(seed: 3)
        for _ in 0..<500 {
            let a = bandit.choose(generator: &g)
            // Large rewards for arm 2 push the softmax hard; the floor must still hold.
            bandit.observe(arm: a, reward: a == 2 ? 1 : Double(g.nextUniform()) * 2 - 1)
            XCTAssertEqual(bandit.probabilities.reduce(0, +), 1, accuracy: 1e-9)
            for p in bandit.probabilities { XCTAssertGreaterThanOrEqual(p, bandit.epsilon * (1 - 1e-12)) }
            XCTAssertGreaterThan(bandit.epsilon, 0)
        }
        XCTAssertEqual(bandit.plays.reduce(0, +), 500)
    }

    func testUCB1PlaysEveryArmOnceFirst() throws {
        let bandit = try UCB1FLAD(arms: 4)
        var g = RandomGenerator(seed: 0)
        var first: [Int] = []
        for _ in 0..<4 {
            let a = bandit.choose(generator: &g)
            first.append(a)
            // Arm 0 pays the most: a greedy policy would replay it at once.
            bandit.observe(arm: a, reward: a == 0 ? 1 : -1)
        }
        XCTAssertEqual(first, [0, 1, 2, 3])
        XCTAssertEqual(bandit.smoothedRewards, [1, -1, -1, -1], "the first reward sets sim")
        XCTAssertEqual(bandit.choose(generator: &g), 0)
        // Later rewards are smoothed: sim ← 0.9 sim + 0.1 r.
        bandit.observe(arm: 0, reward: 0)
        XCTAssertEqual(bandit.smoothedRewards[0], 0.9, accuracy: 1e-12)
        // n = 5, n_0 = 2: bound 0.9 + sqrt(2 ln 5 / 2); the others −1 + sqrt(2 ln 5).
        XCTAssertEqual(bandit.upperBounds[0], 0.9 + (Foundation.log(5.0)).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(bandit.upperBounds[1], -1 + (2 * Foundation.log(5.0)).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(bandit.probabilities.reduce(0, +), 1)
    }

    /// Three arms paying 0.1, 0.6 and 0.0 on average (±0.3 uniform noise): after 1,000 rounds both
    /// policies play the best arm in most of the next 1,000 (a Python simulation of the same policies
    /// over 200 seeds gave at least 92% for both).
    func testBothPoliciesFindTheBestArm() throws {
        for kind in BanditKind.allCases {
            for seed: UInt64 in [1, 2, 3] {
                let bandit = try kind.make(arms: 3)
                var g = RandomGenerator(seed: seed), noise = RandomGenerator(seed: seed &+ 100)
                let means = [0.1, 0.6, 0.0]
                var late = [0, 0, 0]
                for round in 0..<2000 {
                    let a = bandit.choose(generator: &g)
                    if round >= 1000 { late[a] += 1 }
                    bandit.observe(arm: a, reward: means[a] + 0.6 * Double(noise.nextUniform()) - 0.3)
                }
                XCTAssertGreaterThan(late[1], 800, "\(kind) seed \(seed): \(late)")
                XCTAssertEqual(bandit.plays.reduce(0, +), 2000)
            }
        }
    }

    func testSeededRunsRepeat() throws {
        func choices(_ seed: UInt64) throws -> [Int] {
            let bandit = try EXP3FLAD(arms: 3)
            var g = RandomGenerator(seed: seed)
            return (0..<200).map { _ in
                let a = bandit.choose(generator: &g)
                bandit.observe(arm: a, reward: Double(a) * 0.3)
                return a
            }
        }
        XCTAssertEqual(try choices(5), try choices(5))
        XCTAssertNotEqual(try choices(5), try choices(6))
    }

    func testBadSettingsAreNamed() {
        XCTAssertThrowsError(try EXP3FLAD(arms: 0)) { XCTAssertTrue("\($0)".contains("at least one arm"), "\($0)") }
        XCTAssertThrowsError(try UCB1FLAD(arms: 2, beta: 0)) { XCTAssertTrue("\($0)".contains("β"), "\($0)") }
    }
}
