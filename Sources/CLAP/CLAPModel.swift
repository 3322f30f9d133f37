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
}
