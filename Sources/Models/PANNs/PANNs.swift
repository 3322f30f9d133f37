import Engine
import NN

/// One PANNs conv block: conv(k x k, no bias) → BN → ReLU, twice for Cnn10/Cnn14 (`ConvBlock`) or once
/// for Cnn6 (`ConvBlock5x5`), then average pooling (`pool` x `pool`, 1 = none). Keys `conv1.weight`,
/// `bn1.*`, `conv2.weight`, `bn2.*` as the reference.
public final class PANNsConvBlock: Module, UnaryLayer {
    @Child public private(set) var conv1: Conv2d
    @Child public private(set) var bn1: BatchNorm
    @Child public private(set) var conv2: Conv2d?
    @Child public private(set) var bn2: BatchNorm?
    let pool: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, double: Bool, pool: Int) {
        let k = (kernel, kernel), pad = (kernel / 2, kernel / 2)
        conv1 = Conv2d(inChannels, outChannels, kernel: k, padding: pad, bias: false)
        bn1 = BatchNorm(outChannels)
        conv2 = double ? Conv2d(outChannels, outChannels, kernel: k, padding: pad, bias: false) : nil
        bn2 = double ? BatchNorm(outChannels) : nil
        self.pool = pool
        super.init()
        // The reference's init: Xavier-uniform convolutions, BN at (1, 0) (BatchNorm's own default).
        for conv in [conv1, conv2].compactMap({ $0 }) { Init.xavierUniform(conv.weight) }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        // Inference folds each batch norm into its convolution and the ReLU into its output (one pass
        // over the activations instead of four); training and graph-recording calls go layer by layer.
        if !training && !GradMode.isEnabled { return try x.convChainInference(try inferenceStages()) }
        var y = try bn1(conv1(x)).relu()
        if let conv2, let bn2 { y = try bn2(conv2(y)).relu() }
        return pool > 1 ? try y.avgPool2d(kernel: (pool, pool)) : y
    }

    /// The block for inference: each batch norm folded into its convolution (`BatchNorm.foldingScale(into:)`:
    /// the chain scales the weights as it reorders them), the ReLU fused, then the pooling.
    func inferenceStages() throws -> [ConvChainStage] {
        var stages: [ConvChainStage] = []
        for (conv, bn) in [(conv1, bn1), (conv2, bn2)] {
            guard let conv, let bn else { continue }
            let (scale, bias) = try bn.foldingScale(into: conv)
            stages.append(.scaledConvReLU(weight: conv.weight, scale: scale, bias: bias, geometry: conv.geometry))
        }
        return stages + [.avgPool(pool)]
    }
}

/// The PANNs convolutional trunk on log-mel features [B, T, mels]: `bn0` over the mel bins, SpecAugment
/// drop stripes in training, the conv blocks with dropout 0.2 after each. Its tokens are the time steps
/// of the last feature map averaged over frequency, [B, T / timeRatio, channels], with no prefix tokens.
public final class PANNsEncoder: Module, AudioEncoder, ReducedPrecisionConvolutions {
    @Child public private(set) var bn0: BatchNorm
    @Child public private(set) var blocks: [PANNsConvBlock]
    public let config: PANNsConfig
    /// The trunk's number format at inference (`convertConvolutions(to:)`): fp32, or bf16 for its direct
    /// convolutions where the CPU has a bf16 kernel (docs/PRECISION.md).
    public var convolutionPrecision: Precision = .fp32

    public init(_ c: PANNsConfig) {
        config = c
        bn0 = BatchNorm(c.frontEnd.nMels)
        var inputs = 1
        blocks = zip(c.channels, c.pools).map { out, pool in
            defer { inputs = out }
            return PANNsConvBlock(inputs, out, kernel: c.variant.kernel, double: c.variant.doubleConv, pool: pool)
        }
    }

    public var width: Int { config.channels.last! }
    public var prefixTokens: Int { 0 }
    public var inputFrames: Int { config.frames }
    public var inputBins: Int { config.frontEnd.nMels }

    /// The last feature map averaged over frequency, [B, channels, T'] (the reference's `torch.mean(x, dim=3)`).
    public func timeMap(_ features: Tensor) throws -> Tensor {
        guard features.rank == 3, features.shape[2] == inputBins else {
            throw ModelError("PANNs: expected log-mel features [B, frames, \(inputBins)], got \(features.shape)")
        }
        guard features.shape[1] >= config.timeRatio else {
            throw ModelError("PANNs: \(features.shape[1]) frames is fewer than the \(config.timeRatio) one output step spans")
        }
        // bn0 normalises each mel bin: [B, T, M] → [B, M, T] → BN → [B, 1, T, M].
        var x = try bn0(features.transpose(1, 2)).transpose(1, 2).unsqueeze(1)
        if training && config.specAugment { x = try x * Self.dropStripes(x.shape, generator: &Random.global) }
        if !training && !GradMode.isEnabled {
            // Inference: the whole trunk as one oneDNN chain in its blocked layout (dropout is off), in
            // chunks of time when the input is long.
            let stages = try blocks.flatMap { try $0.inferenceStages() }
            return try Self.chunkedOverTime(x, keep: chunkFrames, context: chunkContext, step: config.timeRatio) {
                try $0.convChainInference(stages, precision: self.convolutionPrecision).mean(axis: 3)
            }
        }
        for block in blocks { x = try block(x).dropout(p: 0.2, training: training) }
        return try x.mean(axis: 3)
    }

    /// Inference runs inputs longer than about this many frames (41 s at the released 100 frames a
    /// second) through the trunk in chunks, so memory is that of one chunk, not of the recording: a
    /// 30-minute clip's first block alone holds 64 x 180,000 x 64 activations (2.9 GB) per layer at
    /// once. Rounded down to whole output steps.
    public var chunkFrames = 4096

    /// Input frames either side of an output step that it depends on: each convolution of kernel k at a
    /// stride of s input frames per position widens it by (k / 2)·s; average pooling p x p widens the
    /// span a position covers (to p·s frames) but adds no frames beyond it. Cnn14: 2 + 4 + ... + 64 = 126.
    public var receptiveRadius: Int {
        var radius = 0, stride = 1
        for pool in config.pools {
            radius += (config.variant.doubleConv ? 2 : 1) * (config.variant.kernel / 2) * stride
            stride *= pool
        }
        return radius
    }

    /// The context a chunk computes and drops on each side: the receptive radius rounded up to whole
    /// output steps, so the steps kept see exactly the frames a whole-input pass gives them.
    var chunkContext: Int { (receptiveRadius + config.timeRatio - 1) / config.timeRatio * config.timeRatio }

    /// `f` (input [B, 1, t, M] → time map [B, C, t / step]) over `x` [B, 1, T, M] in chunks: each keeps
    /// `keep` frames' steps (rounded down to whole steps) and computes `context` frames (a multiple of
    /// `step`) on either side, which it drops. Chunks start on multiples of `step`, so each pooling stage
    /// pools the same frames together as a whole-input pass, and with `context` at least the receptive
    /// radius the result is that pass's. One call when the input fits in a chunk.
    static func chunkedOverTime(_ x: Tensor, keep: Int, context: Int, step: Int, _ f: (Tensor) throws -> Tensor) throws -> Tensor {
        let frames = x.shape[2], keep = max(keep / step, 1) * step
        guard frames > keep + 2 * context else { return try f(x) }
        let steps = frames / step
        var parts: [Tensor] = [], next = 0
        while next < steps * step {
            let end = min(next + keep, steps * step)
            let c0 = max(0, next - context), c1 = min(frames, end + context)
            let y = try f(x.slice(axis: 2, start: c0, end: c1))
            parts.append(try y.slice(axis: 2, start: (next - c0) / step, end: (end - c0) / step))
            next = end
        }
        return try Tensor.concat(parts, axis: 2)
    }

    public func tokens(_ features: Tensor) throws -> Tensor { try timeMap(features).transpose(1, 2) }

    /// torchlibrosa's SpecAugmentation(time_drop_width 64, time_stripes 2, freq_drop_width 8,
    /// freq_stripes 2) as a 0/1 mask of [B, 1, T, F]: per clip and stripe a width w in [0, W) and a start in
    /// [0, size − w), zeroed.
    ///
    /// The recipe's 64-frame time width is for its 1001-frame (10 s) clips: W_t = round(64 · T / 1001),
    /// at least 1, keeps that share on shorter inputs. At a fixed 64 two stripes blank half of a
    /// 100-frame crop on average, and Cnn6 trained from scratch on FSDD digits stayed at chance (docs/PANNS.md).
    static func timeDropWidth(frames t: Int) -> Int { max(1, Int((64 * Double(t) / 1001).rounded())) }

    static func dropStripes(_ shape: [Int], generator: inout RandomGenerator) -> Tensor {
        let (b, t, f) = (shape[0], shape[2], shape[3])
        let mask = Tensor.ones(shape)
        let timeWidth = timeDropWidth(frames: t)
        func draw(_ below: Int) -> Int { below <= 1 ? 0 : Int(generator.next() % UInt64(below)) }
        for n in 0..<b {
            let base = mask.data + n * t * f
            for _ in 0..<2 {   // time stripes
                let w = draw(min(timeWidth, t)), start = draw(t - w + 0)
                for i in start..<(start + w) { (base + i * f).update(repeating: 0, count: f) }
            }
            for _ in 0..<2 {   // frequency stripes
                let w = draw(min(8, f)), start = draw(f - w + 0)
                for i in 0..<t { (base + i * f + start).update(repeating: 0, count: w) }
            }
        }
        return mask
    }
}

/// A PANNs tagger (Cnn6, Cnn10, Cnn14, Cnn14_16k, Cnn14_DecisionLevelMax): log-mel [B, T, mels] →
/// logits [B, classes] (sigmoid outside: AudioSet's 527 independent labels). Keys as the released
/// checkpoints without their front-end buffers: `bn0.*`, `blocks.<i>.conv1.weight` (the reference's
/// `conv_block<i+1>`), `fc1.*`, `fc_audioset.*` (or `fc_transfer.*`).
///
/// Clip-level head: x = mean_f(map); pooled = max_t x + mean_t x; h = ReLU(fc1(dropout₀.₅ pooled));
/// logits = fc_audioset(h) (the reference scores the undropped h; its embedding output is dropout₀.₅ h).
/// Decision-level max: x = maxpool₃(x) + avgpool₃(x) over time; per step h_t = ReLU(fc1(dropout x_t));
/// step logits = fc_audioset(dropout h_t); clip logits = max_t (sigmoid is monotone, so this is the
/// reference's max of probabilities).
public final class PANNs: Module, FrameScoringModel, VariableLengthClassifier, SelfAugmentingModel {
    @Child public private(set) var trunk: PANNsEncoder
    @Child public private(set) var fc1: Linear
    @Child public private(set) var fcAudioset: Linear?
    @Child public private(set) var fcTransfer: Linear?
    public let config: PANNsConfig

    public init(_ c: PANNsConfig) {
        config = c
        trunk = PANNsEncoder(c)
        fc1 = Linear(c.channels.last!, c.embeddingWidth)
        fcAudioset = c.transferHead ? nil : Linear(c.embeddingWidth, c.classes)
        fcTransfer = c.transferHead ? Linear(c.embeddingWidth, c.classes) : nil
        super.init()
        for layer in [fc1, fcAudioset, fcTransfer].compactMap({ $0 }) {
            Init.xavierUniform(layer.weight)
            layer.bias.map { $0.data.update(repeating: 0, count: $0.count) }
        }
    }

    /// The trunk's keys sit at the top level, as in the reference (`bn0.*`, not `trunk.bn0.*`).
    override public var keyOverrides: [String: String] { ["trunk": ""] }

    public var architecture: ModelArchitecture { ModelArchitecture(family: PANNsFamily.architectureName, config: config.json) }
    public var inputFrames: Int { config.frames }
    /// PANNs scores a clip of any length in one pass, as the reference does (no windows, no padding to
    /// 10 s); only clips shorter than its five 2x pooling stages can take are padded, to 64 frames.
    public var takesAnyLength: Bool { true }
    public var minimumFrames: Int { min(64, config.frames) }
    public var inputBins: Int { config.frontEnd.nMels }
    public var embeddingWidth: Int { config.embeddingWidth }
    public var outputs: Int { config.classes }
    public var headPrefixes: [String] { [config.transferHead ? "fc_transfer." : "fc_audioset."] }
    public var blockPattern: String { "blocks.*" }
    public var encoder: any AudioEncoder { trunk }
    public var finalNormPrefix: String? { nil }

    /// SpecAugmentation's drop stripes are part of the network (after bn0), as in the reference.
    public var augmentsInTraining: Bool { config.specAugment }

    var head: Linear { (fcTransfer ?? fcAudioset)! }
    public var scoresFrames: Bool { config.decisionLevelMax }
    public var frameStep: Int { config.timeRatio }

    public func logits(_ features: Tensor) throws -> Tensor {
        if config.decisionLevelMax { return try stepLogits(features).max(axis: 1) }
        let h = try hidden(features)
        return try head(config.transferHead ? h.dropout(p: 0.5, training: training) : h)
    }

    /// Embedding [B, embeddingWidth]: h (clip head), or the mean over time of h_t (decision-level max).
    public func embedding(_ features: Tensor) throws -> Tensor {
        if config.decisionLevelMax { return try stepHidden(features).mean(axis: 1) }
        return try hidden(features)
    }

    /// Clip head: logits and h from one pass (decision-level max: the two passes of the default).
    public func logitsAndEmbedding(_ features: Tensor) throws -> (logits: Tensor, embedding: Tensor) {
        if config.decisionLevelMax { return (try logits(features), try embedding(features)) }
        let h = try hidden(features)
        return (try head(config.transferHead ? h.dropout(p: 0.5, training: training) : h), h)
    }

    func hidden(_ features: Tensor) throws -> Tensor {
        let x = try trunk.timeMap(features)                                       // [B, C, T']
        let pooled = try x.max(axis: 2) + x.mean(axis: 2)
        return try fc1(pooled.dropout(p: 0.5, training: training)).relu()
    }

    func stepHidden(_ features: Tensor) throws -> Tensor {
        let x = try trunk.timeMap(features)
        let smoothed = try x.maxPool1d(kernel: 3, stride: 1, padding: 1) + x.avgPool1d(kernel: 3, stride: 1, padding: 1)
        return try fc1(smoothed.dropout(p: 0.5, training: training).transpose(1, 2)).relu()   // [B, T', E]
    }

    /// Logits per output time step [B, T', classes] (decision-level max models).
    public func stepLogits(_ features: Tensor) throws -> Tensor {
        try head(stepHidden(features).dropout(p: 0.5, training: training))
    }

    /// Frame-wise probabilities [B, T, classes] for features of T frames: each step's sigmoid repeated
    /// over the `timeRatio` frames it spans, the frames past the last whole step given the last step's
    /// (the reference's `interpolate` and `pad_framewise_output`). Decision-level max models only.
    public func framewise(_ features: Tensor) throws -> Tensor {
        guard config.decisionLevelMax else {
            throw ModelError("PANNs \(config.variant.rawValue): frame-wise output needs a decision-level max model (Cnn14_DecisionLevelMax)")
        }
        let steps = try stepLogits(features).sigmoid()                            // [B, T', K]
        let (b, t, k, r, frames) = (steps.shape[0], steps.shape[1], steps.shape[2], config.timeRatio, features.shape[1])
        let out = Tensor.empty([b, frames, k])
        for n in 0..<b {
            for f in 0..<frames {
                (out.data + (n * frames + f) * k).update(from: steps.data + (n * t + min(f / r, t - 1)) * k, count: k)
            }
        }
        return out
    }
}
