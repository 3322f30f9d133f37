import Engine
import Foundation
import Models
import NN
import Text

/// Linear → ReLU → Linear into the joint space (HF `ClapProjectionLayer`: `linear1`, `linear2`;
/// LAION's `audio_projection` / `text_projection` Sequential indices 0 and 2).
public final class CLAPProjection: Module, UnaryLayer {
    @Child public private(set) var linear1: Linear
    @Child public private(set) var linear2: Linear

    public init(_ inFeatures: Int, _ dim: Int) {
        linear1 = Linear(inFeatures, dim)
        linear2 = Linear(dim, dim)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try linear2(linear1(x).relu()) }
}

/// Contrastive language-audio pretraining (LAION-CLAP, HF `ClapModel`), unfused: an HTSAT audio tower
/// and a RoBERTa (or BERT) text tower projected into one space, keyed as Hugging Face's `ClapModel`
/// (`audio_model.audio_encoder.*`, `audio_projection.*`, `text_model.*`, `text_projection.*`,
/// `logit_scale_a`, `logit_scale_t`).
///
/// a = normalize(P_a(mean of HTSAT's final tokens)), t = normalize(P_t(tanh(W h_<s> + b))) with
/// normalize(x) = x / ‖x‖₂; logits_per_audio = exp(s_a) · a tᵀ, logits_per_text = exp(s_t) · t aᵀ.
public final class CLAPModel: Module {
    public let config: CLAPConfig
    public let audioEncoder: HTSAT
    public let audioProjection: CLAPProjection
    public let textModel: BertModel
    public let textProjection: CLAPProjection
    /// Logit scales in log space ([] tensors), exponentiated when used.
    public let logitScaleA: Tensor
    public let logitScaleT: Tensor

    override public var keyOverrides: [String: String] { ["audioEncoder": "audio_model.audio_encoder"] }

    public init(_ config: CLAPConfig) {
        self.config = config
        audioEncoder = HTSAT(config.audio)
        audioProjection = CLAPProjection(config.audio.width, config.projectionDim)
        textModel = BertModel(config.text, pooler: true)
        textProjection = CLAPProjection(config.text.hiddenSize, config.projectionDim)
        logitScaleA = Tensor.scalar(Foundation.log(config.logitScaleInit)).requiringGrad()
        logitScaleT = Tensor.scalar(Foundation.log(config.logitScaleInit)).requiringGrad()
    }

    /// Audio embeddings [B, P], unit length, of log-mel features [B, T ≤ spec·r, mel bins].
    public func audioEmbeddings(_ features: Tensor) throws -> Tensor {
        try audioProjection(audioEncoder.embedding(features)).l2Normalized()
    }

    /// Text embeddings [B, P], unit length, of a right-padded batch.
    public func textEmbeddings(_ batch: TokenBatch) throws -> Tensor {
        try textEmbeddings(ids: batch.ids, batch: batch.batch, length: batch.length, lengths: batch.lengths)
    }

    /// Text embeddings of `ids` [B·N] row-major, each row's first `lengths[b]` tokens valid.
    public func textEmbeddings(ids: [Int], batch: Int, length: Int, lengths: [Int]) throws -> Tensor {
        let hidden = try textModel(ids: ids, batch: batch, length: length, lengths: lengths)
        return try textProjection(textModel.pool(hidden, lengths: lengths, .pooler)).l2Normalized()
    }

    /// exp(logit_scale_a), the factor on audio-to-text similarities.
    public var audioLogitScale: Tensor { logitScaleA.exp() }
    /// exp(logit_scale_t), the factor on text-to-audio similarities.
    public var textLogitScale: Tensor { logitScaleT.exp() }

    /// logits_per_audio [Ba, Bt] = exp(s_a) · a tᵀ and logits_per_text [Bt, Ba] = exp(s_t) · t aᵀ of
    /// unit-length embeddings.
    public func logits(audio a: Tensor, text t: Tensor) throws -> (perAudio: Tensor, perText: Tensor) {
        guard a.rank == 2, t.rank == 2, a.shape[1] == t.shape[1] else {
            throw CLAPError("logits: audio \(a.shape) and text \(t.shape) embeddings must be [B, \(config.projectionDim)]")
        }
        let sim = try a.matmul(t.transpose(0, 1))
        return (try sim * audioLogitScale, try sim.transpose(0, 1) * textLogitScale)
    }

    /// Which contrastive loss: the original training loss, or Hugging Face's `return_loss` value.
    public enum ContrastiveLoss: Sendable {
        /// LAION's `ClipLoss` (without `--clap-mlploss`), what the released models were trained with:
        /// (CE(exp(s_a)·A Tᵀ) + CE(exp(s_a)·T Aᵀ)) / 2, audio→text and text→audio, one scale.
        case laion
        /// Hugging Face `ClapModel(return_loss=True)`: (CE(exp(s_t)·T Aᵀ) + CE(exp(s_a)·T Aᵀ)) / 2. Its
        /// "audio loss" takes `logits_per_audio.t()`, which is text-major, so both terms classify texts
        /// and no term is audio→text: reproduced for parity, not recommended for training.
        case huggingFace
    }

    /// The contrastive (InfoNCE) loss of B clips against their B captions, unit embeddings a, t [B, P],
    /// CE the mean cross-entropy against the diagonal (clip i goes with caption i). Differentiable in
    /// both towers and the scales.
    public func contrastiveLoss(audio a: Tensor, text t: Tensor, _ kind: ContrastiveLoss = .laion) throws -> Tensor {
        guard a.rank == 2, a.shape == t.shape, a.shape[0] > 0 else {
            throw CLAPError("contrastive loss: audio \(a.shape) and text \(t.shape) must both be [B, P] with B > 0 pairs")
        }
        let diagonal = Array(0..<a.shape[0])
        let textMajor = try t.matmul(a.transpose(0, 1))   // [B_t, B_a]
        switch kind {
        case .laion:
            let audioMajor = try textMajor.transpose(0, 1)
            return try ((audioMajor * audioLogitScale).crossEntropy(targets: diagonal)
                        + (textMajor * audioLogitScale).crossEntropy(targets: diagonal)) * 0.5
        case .huggingFace:
            return try ((textMajor * textLogitScale).crossEntropy(targets: diagonal)
                        + (textMajor * audioLogitScale).crossEntropy(targets: diagonal)) * 0.5
        }
    }
}
