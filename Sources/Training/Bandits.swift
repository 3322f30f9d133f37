import Engine
import Foundation
import NN

/// A multi-armed bandit over auxiliary datasets (FLAD: Albalak et al., 2023): each round it picks an
/// arm, one batch of that dataset trains, and the arm is paid the alignment of its gradient with the
/// target's (a cosine in [-1, 1]).
///
/// Both policies smooth what an arm was paid, `sim_a ← (1 − β) sim_a + β r` (the reference's
/// `similarity_beta`), and act on `sim_a`. Deterministic: the only randomness is the generator the
/// caller passes to `choose`.
public protocol AuxiliaryBandit: AnyObject {
    /// Number of arms K.
    var arms: Int { get }
    /// Picks the arm of the next round.
    func choose(generator: inout RandomGenerator) -> Int
    /// Records the reward of a round in which `arm` was played.
    func observe(arm: Int, reward: Double)
    /// The probability of each arm in the next round (a deterministic policy: 1 for the arm it will play).
    var probabilities: [Double] { get }
    /// Rounds each arm was played so far.
    var plays: [Int] { get }
    /// The smoothed reward `sim_a` of each arm (its initial value where never played).
    var smoothedRewards: [Double] { get }
    /// Name logged with the run (`exp3`, `ucb1`).
    var name: String { get }
}

/// The two policies of FLAD, by name (`--bandit`).
public enum BanditKind: String, Codable, Sendable, CaseIterable {
    case exp3, ucb1

    /// A fresh bandit of this kind over `arms` arms, with the reference's smoothing: β = 1 (the raw
    /// reward) for EXP3, β = 0.1 for UCB1.
    public func make(arms: Int) throws -> any AuxiliaryBandit {
        switch self {
        case .exp3: return try EXP3FLAD(arms: arms)
        case .ucb1: return try UCB1FLAD(arms: arms)
        }
    }
}

/// EXP3-FLAD: exponential weights over importance-weighted reward sums, with a decaying exploration
/// floor.
///
///     ε_t  = min(1/K, sqrt(ln K / (K (t·G·10 + 1))))
///     R̂_a += sim_a / p_a                       (the arm played; p_a its probability when chosen)
///     p_a  = (1 − K ε_t) softmax(ε_{t−1} R̂)_a + ε_t
///
/// `t` is the number of optimizer steps taken so far and `G` the auxiliary batches each step trains on
/// (the reference's `global_step` and `gradient_accumulation_steps`; `t·G` counts the auxiliary batches
/// played). Earshot's FLAD trains one auxiliary batch per step: G = 1 and `t` is the round. Before the
/// first round ε = 1/K, so p is uniform. Every arm keeps at least ε_t ≥ 0 (the floor), and the
/// probabilities sum to one.
///
/// The reference (`Exp3BatchedFLADTrainer`) hands these probabilities to a sampler that applies a
/// second softmax to them, which flattens the policy; here they are sampled as they are.
public final class EXP3FLAD: AuxiliaryBandit {
    public let arms: Int
    /// Smoothing of the reward (β = 1: the raw reward).
    public let beta: Double
    /// Auxiliary batches per optimizer step (G).
    public let batchesPerStep: Int
    public private(set) var probabilities: [Double]
    public private(set) var plays: [Int]
    public private(set) var smoothedRewards: [Double]
    /// Importance-weighted reward sums R̂.
    public private(set) var estimatedRewards: [Double]
    /// ε_t: the exploration floor of the current probabilities.
    public private(set) var epsilon: Double
    /// Rounds observed (t).
    public private(set) var rounds = 0
    public var name: String { "exp3" }

    public init(arms: Int, beta: Double = 1, batchesPerStep: Int = 1) throws {
        guard arms >= 1 else { throw NNError("EXP3-FLAD: needs at least one arm (got \(arms))") }
        guard beta > 0 && beta <= 1 else { throw NNError("EXP3-FLAD: smoothing β \(beta) must be in (0, 1]") }
        guard batchesPerStep >= 1 else { throw NNError("EXP3-FLAD: batches per step \(batchesPerStep) must be at least 1") }
        self.arms = arms; self.beta = beta; self.batchesPerStep = batchesPerStep
        epsilon = 1 / Double(arms)
        probabilities = [Double](repeating: 1 / Double(arms), count: arms)
        plays = [Int](repeating: 0, count: arms)
        // The reference starts every similarity at 1.
        smoothedRewards = [Double](repeating: 1, count: arms)
        estimatedRewards = [Double](repeating: 0, count: arms)
    }

    /// ε for `t` optimizer steps taken.
    public static func epsilon(arms: Int, steps t: Int, batchesPerStep g: Int = 1) -> Double {
        let k = Double(arms)
        return min(1 / k, (Foundation.log(k) / (k * (Double(t * g) * 10 + 1))).squareRoot())
    }

    public func choose(generator: inout RandomGenerator) -> Int {
        // Inverse-CDF draw; the last arm takes any rounding remainder.
        let u = Double(generator.nextUniform())
        var cumulative = 0.0
        for a in 0..<arms - 1 {
            cumulative += probabilities[a]
            if u < cumulative { return a }
        }
        return arms - 1
    }

    public func observe(arm: Int, reward: Double) {
        precondition(arm >= 0 && arm < arms, "EXP3-FLAD: arm \(arm) of \(arms)")
        guard reward.isFinite else { return }
        plays[arm] += 1
        smoothedRewards[arm] = (1 - beta) * smoothedRewards[arm] + beta * reward
        estimatedRewards[arm] += smoothedRewards[arm] / probabilities[arm]
        rounds += 1
        let previous = epsilon
        epsilon = Self.epsilon(arms: arms, steps: rounds, batchesPerStep: batchesPerStep)
        // Softmax of ε_{t−1} R̂, shifted by its maximum so large sums cannot overflow.
        let logits = estimatedRewards.map { previous * $0 }
        let top = logits.max()!
        let weights = logits.map { Foundation.exp($0 - top) }
        let total = weights.reduce(0, +)
        let k = Double(arms)
        probabilities = weights.map { (1 - k * epsilon) * $0 / total + epsilon }
    }
}

/// UCB1-FLAD: play the arm with the highest upper confidence bound on its smoothed reward,
///
///     a = argmax_a sim_a + sqrt(2 ln n / n_a),   n = Σ n_a,
///
/// where `sim_a ← (1 − β) sim_a + β r` with β = 0.1. Warm start: every arm is played once, in order,
/// before any bound is compared, and its first reward sets `sim_a` (the reference warm-starts `sim_a`
/// with the gradient of up to 1,000 of the arm's samples before training; here the warm-start rounds
/// are ordinary training rounds). Ties go to the lower arm.
public final class UCB1FLAD: AuxiliaryBandit {
    public let arms: Int
    public let beta: Double
    public private(set) var plays: [Int]
    public private(set) var smoothedRewards: [Double]
    public var name: String { "ucb1" }

    public init(arms: Int, beta: Double = 0.1) throws {
        guard arms >= 1 else { throw NNError("UCB1-FLAD: needs at least one arm (got \(arms))") }
        guard beta > 0 && beta <= 1 else { throw NNError("UCB1-FLAD: smoothing β \(beta) must be in (0, 1]") }
        self.arms = arms; self.beta = beta
        plays = [Int](repeating: 0, count: arms)
        smoothedRewards = [Double](repeating: 0, count: arms)
    }

    /// The upper confidence bound of each arm (+∞ for an arm not yet played).
    public var upperBounds: [Double] {
        let n = Double(plays.reduce(0, +))
        return (0..<arms).map { a in
            plays[a] == 0 ? .infinity : smoothedRewards[a] + (2 * Foundation.log(n) / Double(plays[a])).squareRoot()
        }
    }

    /// The arm the policy plays next.
    var next: Int {
        let bounds = upperBounds
        var best = 0
        for a in 1..<arms where bounds[a] > bounds[best] { best = a }
        return best
    }

    public func choose(generator: inout RandomGenerator) -> Int { next }

    public var probabilities: [Double] {
        let a = next
        return (0..<arms).map { $0 == a ? 1 : 0 }
    }

    public func observe(arm: Int, reward: Double) {
        precondition(arm >= 0 && arm < arms, "UCB1-FLAD: arm \(arm) of \(arms)")
        guard reward.isFinite else { return }
        smoothedRewards[arm] = plays[arm] == 0 ? reward : (1 - beta) * smoothedRewards[arm] + beta * reward
        plays[arm] += 1
    }
}
