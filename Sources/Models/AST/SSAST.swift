import Engine
import Foundation
import NN

/// Self-Supervised AST (Gong et al., 2022): masked spectrogram patch modelling on a patch encoder (the
/// AST encoder by default; any `PatchEncoder` of the same width and patch grid, e.g. Mamba blocks).
/// Masked patch tokens are replaced by a learned `mask_embed`; from their encoder outputs,
/// `cpredlayer` predicts the raw 256-value patch for a discriminative InfoNCE loss against the other
/// masked patches of the same clip, and `gpredlayer` reconstructs it for a generative MSE loss.
/// Keys follow the reference (`v.*`, `cpredlayer.0/2`, `gpredlayer.0/2`, `mask_embed`,
/// `p_input_fdim`, `p_input_tdim`).
public final class SSAST: Module, MaskedPatchModel {
    @Child public private(set) var v: any PatchEncoder
    @Child public private(set) var cpredlayer: Sequential
    @Child public private(set) var gpredlayer: Sequential
    public let maskEmbed: Tensor
    public let pInputFdim: Tensor
    public let pInputTdim: Tensor
    public let config: ASTConfig
    /// What checkpoints of this model record: `ssast` with the AST config for the AST encoder; the
    /// encoder's own family and config otherwise (SSAMBA: `ssamba` with its AMBA config).
    public let architecture: ModelArchitecture
    /// Weight w of the generative term in the joint objective nce + w·mse (SSAST: 10). At 0 the
    /// generative pass is skipped (one forward and backward pass a step instead of two).
    public var generativeWeight: Float = 10
    /// Temperature τ of the discriminative InfoNCE, softmax(pred·targetᵀ/τ) (SSAST: 1; raw patches
    /// as targets, so the logits' scale is the features' own).
    public var nceTemperature: Float = 1
    /// Weight c of the clip-level contrastive term (0: off, SSAST's own objective). When on, the two
    /// masked passes take two views of each clip (`MaskedPatchTask` draws them: other windows, each mixed
    /// with another clip) and the loss gains c · InfoNCE between the views' projected token means, so a
    /// clip's embedding is pulled towards its other view and away from the batch's other clips.
    public private(set) var clipContrastWeight: Float = 0
    /// Temperature τ of the clip-level InfoNCE on unit vectors (SimCLR's 0.1 by default).
    public private(set) var clipTemperature: Float = 0.1
    /// The clip-level term's projection head, MLP D → D → 128 (SimCLR's: the probe reads the encoder
    /// below it). Present only when the term is on; checkpoint keys `clip_projection.0/2.*`.
    @Child public private(set) var clipProjection: Sequential? = nil

    /// Patch-based (16 x 16) or frame-based (128 x 2) pretraining; stride equals the patch shape.
    public enum Variant: String, Codable, Sendable { case patch, frame }

    public static func config(_ size: String, variant: Variant, inputTdim: Int, inputFdim: Int = 128) -> ASTConfig? {
        guard var c = ASTConfig.named(size, labelDim: 1) else { return nil }
        c.inputTdim = inputTdim; c.inputFdim = inputFdim
        switch variant {
        case .patch: (c.fshape, c.tshape) = (16, 16)
        case .frame: (c.fshape, c.tshape) = (inputFdim, 2)
        }
        (c.fstride, c.tstride) = (c.fshape, c.tshape)
        c.pooling = .meanTokens
        return c
    }

    public convenience init(_ config: ASTConfig) { self.init(encoder: ASTEncoder(config), config: config) }

    /// `config` gives the patch grid (shape, input size) the masks and targets are cut on; `encoder`
    /// must produce `config.dim`-wide tokens over that grid. `architecture` (default: `ssast` with
    /// `config`) is what checkpoints record, so another encoder's family can rebuild it.
    public init(encoder: any PatchEncoder, config: ASTConfig, architecture: ModelArchitecture? = nil) {
        precondition(config.fstride == config.fshape && config.tstride == config.tshape, "SSAST pretraining needs stride = patch shape")
        precondition(encoder.width == config.dim, "SSAST: encoder width \(encoder.width) is not the config's \(config.dim)")
        self.config = config
        self.architecture = architecture ?? ModelArchitecture(family: ASTFamily.pretrainingFamily, config: config.json)
        v = encoder
        let patchSize = config.fshape * config.tshape
        cpredlayer = Sequential([Linear(config.dim, config.dim), ReLU(), Linear(config.dim, patchSize)])
        gpredlayer = Sequential([Linear(config.dim, config.dim), ReLU(), Linear(config.dim, patchSize)])
        // xavier_normal_ on [1, 1, D]: fan_in = fan_out = D (torch counts the trailing dims).
        maskEmbed = Tensor.randn([1, 1, config.dim], std: (2 / Float(2 * config.dim)).squareRoot()).requiringGrad()
        pInputFdim = Tensor.scalar(Float(config.inputFdim))
        pInputTdim = Tensor.scalar(Float(config.inputTdim))
    }

    override public var bufferNames: Set<String> { ["pInputFdim", "pInputTdim"] }

    /// Raw patches [B, N, fshape·tshape] in `nn.Unfold` order ((kh, kw) within a patch, patches
    /// frequency-major), from features [B, T, F]. These are the regression targets; no gradient.
    public func unfoldTargets(_ x: Tensor) throws -> Tensor {
        let c = config
        return try GradMode.noGrad {
            let b = x.shape[0]
            var image = try x.transpose(1, 2)                                       // [B, F, T]
            image = try image.slice(axis: 1, start: 0, end: c.fGrid * c.fshape).slice(axis: 2, start: 0, end: c.tGrid * c.tshape)
            return try image.reshape([b, c.fGrid, c.fshape, c.tGrid, c.tshape]).permute([0, 1, 3, 2, 4])
                .reshape([b, c.patches, c.fshape * c.tshape])
        }
    }

    /// Turns the clip-level contrastive term on (c > 0) with a new projection head, or off (c = 0).
    public func setClipContrast(weight: Float, temperature: Float = 0.1, projection: Int = 128) throws {
        guard weight >= 0 && weight.isFinite else { throw ModelError("SSAST: clip contrast weight \(weight) must be finite and at least 0") }
        guard temperature > 0 && temperature.isFinite else { throw ModelError("SSAST: clip contrast temperature \(temperature) must be positive") }
        (clipContrastWeight, clipTemperature) = (weight, temperature)
        if weight > 0 && clipProjection == nil {
            clipProjection = Sequential([Linear(config.dim, config.dim), ReLU(), Linear(config.dim, projection)])
        }
    }

    /// Encoder outputs at the masked positions, [B, M, D]; `mask[i]` lists clip i's masked patches
    /// (every clip masks the same number).
    public func maskedHidden(_ x: Tensor, mask: [[Int]]) throws -> Tensor { try maskedPass(x, mask: mask).masked }

    /// One masked pass: the outputs at the masked positions [B, M, D] and all of them [B, prefix + N, D]
    /// (the clip-level term pools them: `tokenMean`).
    func maskedPass(_ x: Tensor, mask: [[Int]]) throws -> (masked: Tensor, hidden: Tensor) {
        let c = config
        guard x.rank == 3, x.shape[1] == c.inputTdim, x.shape[2] == c.inputFdim else {
            throw ModelError("SSAST: expected features [B, \(c.inputTdim), \(c.inputFdim)], got \(x.shape)")
        }
        let b = x.shape[0], n = c.patches
        guard mask.count == b, let m = mask.first?.count, m > 0, mask.allSatisfy({ $0.count == m }) else {
            throw ModelError("SSAST: need one equally sized, non-empty mask per clip (got \(mask.map(\.count)) for batch \(b))")
        }
        let indicator = Tensor.zeros([b, n, 1])
        for (i, ids) in mask.enumerated() {
            for id in ids {
                guard id >= 0 && id < n else { throw ModelError("SSAST: mask index \(id) outside 0..<\(n)") }
                indicator.data[i * n + id] = 1
            }
        }
        let tokens = try v.patchTokens(x)                                            // [B, N, D]
        let input = try tokens * (1 - indicator) + indicator * maskEmbed
        let h = try v.transform(input)                                               // [B, prefix + N, D]
        let p = v.prefixTokens
        let rows = mask.enumerated().flatMap { i, ids in ids.map { i * (n + p) + $0 + p } }
        let atMasks = try h.reshape([b * (n + p), c.dim]).indexSelect(axis: 0, indices: rows).reshape([b, m, c.dim])
        return (atMasks, h)
    }

    /// The mean of a pass's content tokens [B, D] (prefix tokens left out, as the probe's pooling).
    func tokenMean(_ hidden: Tensor) throws -> Tensor { try hidden.slice(axis: 1, start: v.prefixTokens).mean(axis: 1) }

    func maskedTargets(_ x: Tensor, mask: [[Int]]) throws -> Tensor {
        let t = try unfoldTargets(x)
        let (b, n, p) = (t.shape[0], t.shape[1], t.shape[2])
        let rows = mask.enumerated().flatMap { i, ids in ids.map { i * n + $0 } }
        return try GradMode.noGrad { try t.reshape([b * n, p]).indexSelect(axis: 0, indices: rows).reshape([b, mask[0].count, p]) }
    }

    /// Discriminative pretext task: InfoNCE between the masked targets and `cpredlayer`'s predictions
    /// (softmax over predictions for each target, the reference's dim −1), and its accuracy (argmax
    /// over targets for each prediction, the reference's dim 0).
    public func mpc(_ x: Tensor, mask: [[Int]]) throws -> (nce: Tensor, accuracy: Float) {
        let r = try mpcPass(x, mask: mask)
        return (r.nce, r.accuracy)
    }

    func mpcPass(_ x: Tensor, mask: [[Int]]) throws -> (nce: Tensor, accuracy: Float, hidden: Tensor) {
        let pass = try maskedPass(x, mask: mask)
        let pred = try cpredlayer(pass.masked)
        let target = try maskedTargets(x, mask: mask)
        return (try Losses.infoNCE(target, pred, temperature: nceTemperature), try Losses.infoNCEAccuracy(pred, target), pass.hidden)
    }

    /// Generative pretext task: MSE between `gpredlayer`'s reconstructions and the masked patches.
    public func mpg(_ x: Tensor, mask: [[Int]]) throws -> Tensor { try mpgPass(x, mask: mask).mse }

    func mpgPass(_ x: Tensor, mask: [[Int]]) throws -> (mse: Tensor, hidden: Tensor) {
        let pass = try maskedPass(x, mask: mask)
        return (try Losses.mse(gpredlayer(pass.masked), maskedTargets(x, mask: mask)), pass.hidden)
    }

    /// The clip-level term on two views' token means [B, D]: z = normalize(P(pooled)), logits z₁z₂ᵀ/τ,
    /// the mean of the cross-entropies against the diagonal both ways (view 1 finds its view 2 among the
    /// batch's and the reverse), and the fraction of clips whose other view is the most similar (view 1's side).
    public func clipContrast(_ a: Tensor, _ b: Tensor) throws -> (loss: Tensor, accuracy: Float) {
        guard let head = clipProjection else { throw ModelError("SSAST: the clip contrast is off (setClipContrast)") }
        guard a.rank == 2, a.shape == b.shape, a.shape[0] > 0 else {
            throw ModelError("SSAST: clip contrast needs two [B, D] views, got \(a.shape) and \(b.shape)")
        }
        let logits = try head(a).l2Normalized().matmul(head(b).l2Normalized().transpose(0, 1)) * (1 / clipTemperature)   // [B, B]
        let diagonal = Array(0..<a.shape[0])
        let loss = try (logits.crossEntropy(targets: diagonal) + logits.transpose(0, 1).crossEntropy(targets: diagonal)) * 0.5
        let best = try GradMode.noGrad { try logits.argmax(axis: -1) }
        return (loss, Float(best.enumerated().filter { $0.element == $0.offset }.count) / Float(best.count))
    }

    /// The joint objective nce + w·mse (w = `generativeWeight`, SSAST's 10), from two forward passes
    /// with independently drawn masks; with w = 0 the generative pass is not run (mse reported as NaN).
    /// With the clip-level term on (`setClipContrast`), the generative pass takes `secondView` (a second
    /// view of the same clips; `x` itself when nil), always runs, and the loss adds
    /// c · `clipContrast` of the two passes' token means (`clip`: its accuracy; NaN when off).
    public func jointLoss(_ x: Tensor, secondView: Tensor? = nil, maskCount: Int, generator: inout RandomGenerator) throws
        -> (loss: Tensor, nce: Float, accuracy: Float, mse: Float, clip: Float) {
        let b = x.shape[0]
        if let y = secondView, y.shape != x.shape {
            throw ModelError("SSAST: the second view \(y.shape) must have the first's shape \(x.shape)")
        }
        let m1 = try (0..<b).map { _ in try maskIndices(count: maskCount, generator: &generator) }
        let m2 = try (0..<b).map { _ in try maskIndices(count: maskCount, generator: &generator) }
        let first = try mpcPass(x, mask: m1)
        let contrast = clipContrastWeight > 0
        guard generativeWeight != 0 || contrast else { return (first.nce, try first.nce.item(), first.accuracy, .nan, .nan) }
        let second = try mpgPass(secondView ?? x, mask: m2)
        var loss = generativeWeight != 0 ? try first.nce + second.mse * generativeWeight : first.nce
        var clip = Float.nan
        if contrast {
            let c = try clipContrast(tokenMean(first.hidden), tokenMean(second.hidden))
            loss = try loss + c.loss * clipContrastWeight
            clip = c.accuracy
        }
        return (loss, try first.nce.item(), first.accuracy, try second.mse.item(), clip)
    }

    public var inputFrames: Int { config.inputTdim }
    public var patchCount: Int { config.patches }

    public func pretextLoss(_ features: Tensor, maskCount: Int, generator: inout RandomGenerator) throws -> (loss: Tensor, accuracy: Float) {
        let r = try jointLoss(features, maskCount: maskCount, generator: &generator)
        return (r.loss, r.accuracy)
    }

    public var wantsTwoViews: Bool { clipContrastWeight > 0 }

    public func pretextLoss(_ features: Tensor, secondView: Tensor?, maskCount: Int, generator: inout RandomGenerator) throws
        -> (loss: Tensor, accuracy: Float, metrics: [String: Double]) {
        let r = try jointLoss(features, secondView: secondView, maskCount: maskCount, generator: &generator)
        return (r.loss, r.accuracy, r.clip.isNaN ? [:] : ["clip_accuracy": Double(r.clip)])
    }

    /// The reference's masks: cluster masking for patches, uniform sampling for frames.
    public func maskIndices(count: Int, generator: inout RandomGenerator) throws -> [Int] {
        guard count > 0 && count < config.patches else {
            throw ModelError("SSAST: cannot mask \(count) of \(config.patches) patches")
        }
        return config.fshape == config.inputFdim
            ? Masking.random(count: count, of: config.patches, generator: &generator)
            : Masking.cluster(count: count, of: config.patches, rowLength: config.tGrid, generator: &generator)
    }
}

public enum Masking {
    /// SSAST's `gen_maskid_patch`: a cluster size c ∈ {3, 4, 5} per clip; repeatedly add the c x c
    /// block at a random start (indices outside (0, N) dropped, no row-wrap check, index 0 never
    /// masked) until more than `count` distinct patches are covered, then keep the `count` smallest
    /// (CPython iterates a set of small ints in ascending order).
    public static func cluster(count: Int, of n: Int, rowLength: Int, generator: inout RandomGenerator) -> [Int] {
        let c = Int(generator.next() % 3) + 3
        var chosen = Set<Int>()
        while chosen.count <= count && chosen.count < n - 1 {
            let start = Int(generator.next() % UInt64(n))
            for i in 0..<c { for j in 0..<c {
                let cand = start + rowLength * i + j
                if cand > 0 && cand < n { chosen.insert(cand) }
            } }
        }
        return Array(chosen.sorted().prefix(count))
    }

    /// `random.sample(range(n), count)`.
    public static func random(count: Int, of n: Int, generator: inout RandomGenerator) -> [Int] {
        var pool = Array(0..<n)
        for i in 0..<count { pool.swapAt(i, i + Int(generator.next() % UInt64(n - i))) }
        return Array(pool.prefix(count))
    }
}
