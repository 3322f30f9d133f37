import Engine

/// The pairwise terms of "Prefer to Classify" (P2C, Kim et al., ICML 2023): a preference pair (a, b)
/// of one class carries a target t = 1 when a is preferred, 0 when b is, 0.5 for a tie.
extension Losses {
    /// Bradley-Terry cross-entropy of score differences d = s_a − s_b [P] against targets t [P]:
    /// P(a ≻ b) = σ(d), loss = mean_p −(t log σ(d) + (1 − t) log σ(−d))
    ///                       = mean_p t·softplus(−d) + (1 − t)·softplus(d)  (stable form).
    public static func bradleyTerry(_ difference: Tensor, targets: [Float]) throws -> Tensor {
        try check(difference.rank == 1 && difference.count == targets.count,
                  "bradleyTerry: differences \(difference.shape) and \(targets.count) targets must both be [P]")
        try check(targets.allSatisfy { $0 >= 0 && $0 <= 1 }, "bradleyTerry: targets must be in [0, 1]")
        let t = Tensor(targets)
        return try (t * (difference * -1).softplus() + (1 - t) * difference.softplus()).mean()
    }

    /// Head diversity: with P_h = σ(d_h) the Bradley-Terry probability of head h, the mean over ordered
    /// head pairs h ≠ h' of CE(stopgrad(P_h), P_h') = −mean_p [P_h log P_h' + (1 − P_h) log(1 − P_h')].
    /// P2C subtracts λ_div times this from the loss, pushing the heads apart. Needs at least two heads.
    public static func headDiversity(_ differences: [Tensor]) throws -> Tensor {
        try check(differences.count >= 2, "headDiversity: needs at least two heads (got \(differences.count))")
        let k = differences.count
        var total: Tensor? = nil
        for h in 0..<k {
            let p = GradMode.noGrad { differences[h].sigmoid() }.detach()
            for g in 0..<k where g != h {
                // −log σ(d) = softplus(−d), −log(1 − σ(d)) = softplus(d)
                let ce = try (p * (differences[g] * -1).softplus() + (1 - p) * differences[g].softplus()).mean()
                total = try total.map { try $0 + ce } ?? ce
            }
        }
        return total! * (1 / Float(k * (k - 1)))
    }

    /// Consistency of the classifier with preferences: Δ = p_y(a) − p_y(b) [P] must agree with the
    /// preference: max(0, −Δ) when a wins (t = 1), max(0, Δ) when b wins (t = 0), |Δ| for a tie; the mean.
    public static func preferenceConsistency(_ delta: Tensor, targets: [Float]) throws -> Tensor {
        try check(delta.rank == 1 && delta.count == targets.count,
                  "preferenceConsistency: gaps \(delta.shape) and \(targets.count) targets must both be [P]")
        let aWins = Tensor(targets.map { $0 > 0.5 ? 1 : 0 })
        let bWins = Tensor(targets.map { $0 < 0.5 ? 1 : 0 })
        let tie = Tensor(targets.map { $0 == 0.5 ? 1 : 0 })
        return try (aWins * (delta * -1).relu() + bWins * delta.relu() + tie * delta.abs()).mean()
    }

    /// Consistency with annotator vote fractions: per class k the classifier's probability gap
    /// Δ_k = p_k(a) − p_k(b) must reach the vote gap δ_k = v_k(a) − v_k(b):
    /// Σ_k [δ_k ≥ 0] max(0, δ_k − Δ_k) + [δ_k < 0] max(0, Δ_k − δ_k), averaged over pairs. Both [P, C].
    public static func voteConsistency(_ probabilityGap: Tensor, voteGap: Tensor) throws -> Tensor {
        try check(probabilityGap.rank == 2 && probabilityGap.shape == voteGap.shape,
                  "voteConsistency: probability gaps \(probabilityGap.shape) and vote gaps \(voteGap.shape) must both be [P, C]")
        let v = voteGap.detach()
        let up = try Tensor(v.toArray().map { $0 >= 0 ? 1 : 0 }, shape: v.shape)
        let down = 1 - up
        let shortfall = try (up * (v - probabilityGap).relu() + down * (probabilityGap - v).relu())
        return try shortfall.sum(axis: 1).mean()
    }
}
