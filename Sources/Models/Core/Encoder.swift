import Engine
import NN

/// An audio encoder: features [B, frames, bins] → a token sequence [B, prefixTokens + N, width].
///
/// The seam every model family implements. Pooling, heads, windowing and training code talk to an
/// encoder only through this protocol, so prompt tokens, a CNN's time steps or a Mamba's sequence all
/// fit: `prefixTokens` says how many leading tokens (cls, distillation, prompts) are not content.
public protocol AudioEncoder: Module {
    /// Token width D.
    var width: Int { get }
    /// Leading tokens that are not content (AST: cls and distillation).
    var prefixTokens: Int { get }
    /// The input the encoder takes: frames per window and bins per frame.
    var inputFrames: Int { get }
    var inputBins: Int { get }
    /// Tokens [B, prefixTokens + N, D] of features [B, inputFrames, inputBins].
    func tokens(_ features: Tensor) throws -> Tensor
}

/// An encoder over a grid of patches whose tokens can be masked before its blocks run: what masked
/// patch modelling (SSAST, and SSAMBA on Mamba blocks) needs of an encoder.
public protocol PatchEncoder: AudioEncoder {
    /// Patch tokens [B, N, D] of features [B, inputFrames, inputBins], before positions and prefix tokens.
    func patchTokens(_ features: Tensor) throws -> Tensor
    /// Prefix tokens, positions, the blocks and the final norm on patch tokens [B, N, D] (masked or
    /// not): [B, prefixTokens + N, D].
    func transform(_ patches: Tensor) throws -> Tensor
}

/// An encoder with prompt slots (prompt tuning): learned tokens among its prefix tokens.
public protocol PromptableEncoder: AudioEncoder {
    /// Blocks a deep prompt set is needed for.
    var depth: Int { get }
    /// Installs `prompts` (nil removes them); `prefixTokens` counts them from then on.
    func usePrompts(_ prompts: PromptTokens?)
}

/// A classifier over an encoder: logits and a pooled embedding of a window of features, and which of
/// its parameters form the head (so a frozen encoder is "everything but the head").
public protocol AudioClassifierModel: Module {
    /// What the model is, written into every checkpoint (`architecture` + `config`).
    var architecture: ModelArchitecture { get }
    var inputFrames: Int { get }
    var inputBins: Int { get }
    /// Width of `embedding`'s output.
    var embeddingWidth: Int { get }
    /// Number of outputs of `logits`.
    var outputs: Int { get }
    /// Key prefixes of the head's parameters (`mlp_head.` for AST).
    var headPrefixes: [String] { get }
    /// Key pattern of the encoder's blocks (`v.blocks.*`), each with `attn` and `mlp` children where it
    /// is a transformer block: where parameter-efficient methods attach.
    var blockPattern: String { get }
    /// The encoder under the head.
    var encoder: any AudioEncoder { get }
    /// Key prefix of the encoder's final norm (`v.norm.`), trained with every parameter-efficient method.
    var finalNormPrefix: String? { get }
    /// Logits [B, outputs] of features [B, inputFrames, inputBins] (sigmoid or softmax applied outside).
    func logits(_ features: Tensor) throws -> Tensor
    /// Pooled embedding [B, embeddingWidth].
    func embedding(_ features: Tensor) throws -> Tensor
    /// Logits and the pooled embedding in one pass, for objectives that put more heads on the features
    /// the classifier sees (preference and auxiliary heads); the default runs `logits` and `embedding`.
    func logitsAndEmbedding(_ features: Tensor) throws -> (logits: Tensor, embedding: Tensor)
}

extension AudioClassifierModel {
    public func logitsAndEmbedding(_ features: Tensor) throws -> (logits: Tensor, embedding: Tensor) {
        (try logits(features), try embedding(features))
    }

    /// Whether a parameter key belongs to the head.
    public func isHead(_ key: String) -> Bool { headPrefixes.contains { key.hasPrefix($0) } }
}

/// A classifier that masks its own input in training (PANNs' SpecAugmentation drop stripes, part of the
/// network): fine-tuning then adds no second SpecAugment of its own unless asked to.
public protocol SelfAugmentingModel: AudioClassifierModel {
    /// Whether this instance masks its input in training.
    var augmentsInTraining: Bool { get }
    /// Whether fine-tuning's own SpecAugment (masks filled in the log domain before normalisation) suits
    /// its input by default: not where the model masks it itself (the default), nor where its features
    /// are unnormalised dB, in which a mask is a block of loud sound (CLAP's audio tower).
    var takesDatasetSpecAugment: Bool { get }
}

extension SelfAugmentingModel {
    public var takesDatasetSpecAugment: Bool { !augmentsInTraining }
}

/// A classifier that can score every input frame (sound event detection): PANNs' decision-level
/// max models.
public protocol FrameScoringModel: AudioClassifierModel {
    /// Whether this instance scores frames (a PANNs clip-level model does not).
    var scoresFrames: Bool { get }
    /// Input frames one score step spans (scores are constant within a step; chunked scoring aligns
    /// its chunks to this).
    var frameStep: Int { get }
    /// Probabilities [B, T, outputs] for features [B, T, F].
    func framewise(_ features: Tensor) throws -> Tensor
}

/// A self-supervised masked-patch model (SSAST; SSAMBA builds the same on Mamba blocks): the pretext
/// objective on a batch, with masks drawn from `generator`.
public protocol MaskedPatchModel: Module {
    var architecture: ModelArchitecture { get }
    var inputFrames: Int { get }
    /// Patches per input window (masks must leave at least one unmasked).
    var patchCount: Int { get }
    /// The joint pretext loss on features [B, inputFrames, bins] and its accuracy.
    func pretextLoss(_ features: Tensor, maskCount: Int, generator: inout RandomGenerator) throws -> (loss: Tensor, accuracy: Float)
    /// Whether the objective compares two views of each clip (a clip-level term), so the caller should
    /// pass `secondView` to the two-view `pretextLoss`.
    var wantsTwoViews: Bool { get }
    /// The pretext loss with an optional second view of the same clips; `metrics` adds what the
    /// objective measures beyond the masked-token accuracy.
    func pretextLoss(_ features: Tensor, secondView: Tensor?, maskCount: Int, generator: inout RandomGenerator) throws
        -> (loss: Tensor, accuracy: Float, metrics: [String: Double])
}

extension MaskedPatchModel {
    public var wantsTwoViews: Bool { false }

    public func pretextLoss(_ features: Tensor, secondView: Tensor?, maskCount: Int, generator: inout RandomGenerator) throws
        -> (loss: Tensor, accuracy: Float, metrics: [String: Double]) {
        let r = try pretextLoss(features, maskCount: maskCount, generator: &generator)
        return (r.loss, r.accuracy, [:])
    }
}

/// What a checkpoint says it holds: a registry family and that family's config as JSON. Written as the
/// `architecture` and `config` metadata of every checkpoint Earshot saves.
public struct ModelArchitecture: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Registry family (`ast`, `ssast`, ...).
    public var family: String
    /// The family's config, JSON.
    public var config: String

    public init(family: String, config: String) { self.family = family; self.config = config }

    public var metadata: [String: String] { ["architecture": family, "config": config] }

    /// The architecture recorded in checkpoint metadata, nil if none.
    public init?(metadata: [String: String]) {
        guard let family = metadata["architecture"], let config = metadata["config"] else { return nil }
        self.init(family: family, config: config)
    }

    public var description: String { family }
}
