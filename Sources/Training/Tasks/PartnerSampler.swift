import Engine
import Foundation

/// How each training clip's preference partner is drawn for an epoch (P2C's `--sampling`).
public enum PartnerSampling: String, Codable, Sendable, CaseIterable {
    /// Uniformly among the clip's pairs.
    case random
    /// The pair on which the preference heads disagree most: the number of head pairs (h, h') that
    /// order the two clips differently (sign of s_h(a) − s_h(b), with 0 a tie); ties drawn at random.
    case disagreement
    /// A pair drawn with probability proportional to its consistency loss (the classifier's
    /// probability gap against the preference, or against the vote gap).
    case inconsistency
}

/// One candidate partner of a clip: the partner's index in the training set and the target
/// P(clip ≻ partner).
public struct PartnerCandidate: Sendable, Equatable {
    public var partner: Int
    public var target: Float
    public init(partner: Int, target: Float) { self.partner = partner; self.target = target }
}

/// What the model said of a clip when it was last trained on: each preference head's score for its
/// class and the classifier's probabilities. Partners are chosen from these (scores up to an epoch
/// old: P2C scores every training sample again before it samples; we reuse the training pass).
public struct ClipOpinion: Sendable {
    public var headScores: [Float]
    public var probabilities: [Float]
    public init(headScores: [Float], probabilities: [Float]) { self.headScores = headScores; self.probabilities = probabilities }
}

public enum PartnerSampler {
    /// One partner per clip that has candidates: clip index → (partner, target). Clips without what a
    /// policy needs (opinions not yet seen, in the first epoch) fall back to a uniform draw.
    public static func draw(candidates: [[PartnerCandidate]], sampling: PartnerSampling, opinions: [ClipOpinion?],
                            labels: [Int], votes: [[Float]?], generator: inout RandomGenerator) -> [Int: PartnerCandidate] {
        var chosen: [Int: PartnerCandidate] = [:]
        for (i, options) in candidates.enumerated() where !options.isEmpty {
            var pick: Int? = nil
            switch sampling {
            case .random: break
            case .disagreement:
                if let mine = opinions[i] {
                    let counts = options.map { c in opinions[c.partner].map { disagreement(mine.headScores, $0.headScores) } ?? -1 }
                    let top = counts.max()!
                    if top >= 0 {
                        let best = counts.indices.filter { counts[$0] == top }
                        pick = best[Int(generator.next() % UInt64(best.count))]
                    }
                }
            case .inconsistency:
                if let mine = opinions[i] {
                    let weights = options.map { c -> Double in
                        guard let theirs = opinions[c.partner] else { return 0 }
                        return consistencyLoss(mine.probabilities, theirs.probabilities, label: labels[i], target: c.target,
                                               votes: votes[i].flatMap { a in votes[c.partner].map { (a, $0) } })
                    }
                    let total = weights.reduce(0, +)
                    if total > 0 {
                        var u = Double(generator.nextUniform()) * total
                        for (k, w) in weights.enumerated() {
                            u -= w
                            if u < 0 || k == weights.count - 1 { pick = k; break }
                        }
                    }
                }
            }
            let k = pick ?? Int(generator.next() % UInt64(options.count))
            chosen[i] = options[k]
        }
        return chosen
    }

    /// Head pairs (h < h') whose orderings of a and b differ (each ordering is −1, 0 or 1).
    public static func disagreement(_ a: [Float], _ b: [Float]) -> Int {
        let orders = zip(a, b).map { x, y in x > y ? 1 : x < y ? -1 : 0 }
        var count = 0
        for h in orders.indices { for g in (h + 1)..<orders.count where orders[h] != orders[g] { count += 1 } }
        return count
    }

    /// The pair's consistency loss, as in `Losses.preferenceConsistency` (Δ of the label's probability)
    /// or, with votes, `Losses.voteConsistency` (per class, against the vote gap).
    public static func consistencyLoss(_ pa: [Float], _ pb: [Float], label: Int, target: Float, votes: ([Float], [Float])?) -> Double {
        if let (va, vb) = votes {
            var total = 0.0
            for k in pa.indices {
                let gap = Double(pa[k] - pb[k]), voteGap = Double(va[k] - vb[k])
                total += voteGap >= 0 ? max(0, voteGap - gap) : max(0, gap - voteGap)
            }
            return total
        }
        let delta = Double(pa[label] - pb[label])
        return target > 0.5 ? max(0, -delta) : target < 0.5 ? max(0, delta) : Swift.abs(delta)
    }
}
