import Engine
import Foundation
import Models
import NN
import Text

/// The audio side of a CLAP: a pooled feature [B, W] of features [B, T, F], before the projection.
public protocol CLAPAudioTower: Module {
    /// Width W of `pooledEmbedding`'s output.
    var embeddingWidth: Int { get }
    func pooledEmbedding(_ features: Tensor) throws -> Tensor
}

extension HTSAT: CLAPAudioTower {
    public var embeddingWidth: Int { width }
    public func pooledEmbedding(_ features: Tensor) throws -> Tensor { try embedding(features) }
}

/// Any registry classifier (AST, SSAST, SSAMBA, PANNs: `earshot models`) as a CLAP audio tower: its
/// pooled `embedding`, the head unused (and frozen by the contrastive task). Its keys are the
/// classifier's own, so the architecture recorded with it rebuilds it (`ModelRegistry.classifier`).
public final class ClassifierAudioTower: Module, CLAPAudioTower {
    public let classifier: any AudioClassifierModel
    override public var keyOverrides: [String: String] { ["classifier": ""] }

    public init(_ classifier: any AudioClassifierModel) { self.classifier = classifier }

    public var embeddingWidth: Int { classifier.embeddingWidth }
    public func pooledEmbedding(_ features: Tensor) throws -> Tensor { try classifier.embedding(features) }
}

/// An audio tower and a text tower projected into one space, the contrastive language-audio model of
/// LAION-CLAP with either tower swappable (`CLAPModel` is the HTSAT + RoBERTa one the releases hold).
/// Keys: `audio_model.audio_encoder.*` (the tower's own), `audio_projection.linear{1,2}`,
/// `text_model.*`, `text_projection.linear{1,2}`, `logit_scale_a`, `logit_scale_t` (Hugging Face's).
///
/// a = normalize(P_a(tower(x))), t = normalize(P_t(pool(text tower(ids)))) with normalize(x) = x / max(‖x‖₂, 1e-12),
/// P = Linear → ReLU → Linear; logits_per_audio = exp(s_a) · a tᵀ, logits_per_text = exp(s_t) · t aᵀ.
public class AudioTextModel: Module {
    public let audioTower: any CLAPAudioTower
    public let audioProjection: CLAPProjection
    public let textModel: BertModel
    public let textProjection: CLAPProjection
    /// Logit scales in log space ([] tensors), exponentiated when used.
    public let logitScaleA: Tensor
    public let logitScaleT: Tensor
    /// How the text tower's states become one vector (`.pooler` for LAION's RoBERTa, `.mean` for
    /// sentence-transformers models such as all-MiniLM-L6-v2).
    public let textPooling: TextPooling
    public let projectionDim: Int

    override public var keyOverrides: [String: String] { ["audioTower": "audio_model.audio_encoder"] }

    /// Projections are drawn here (after the towers); both scales start at log(`logitScaleInit`).
    public init(audioTower: any CLAPAudioTower, textModel: BertModel, textPooling: TextPooling, projectionDim: Int,
                logitScaleInit: Float = 1 / 0.07) {
        self.audioTower = audioTower
        audioProjection = CLAPProjection(audioTower.embeddingWidth, projectionDim)
        self.textModel = textModel
        textProjection = CLAPProjection(textModel.config.hiddenSize, projectionDim)
        logitScaleA = Tensor.scalar(Foundation.log(logitScaleInit)).requiringGrad()
        logitScaleT = Tensor.scalar(Foundation.log(logitScaleInit)).requiringGrad()
        self.textPooling = textPooling
        self.projectionDim = projectionDim
    }

    public var textConfig: BertConfig { textModel.config }

    /// Audio embeddings [B, P], unit length, of features [B, T, F] as the tower takes them.
    public func audioEmbeddings(_ features: Tensor) throws -> Tensor {
        try audioProjection(audioTower.pooledEmbedding(features)).l2Normalized()
    }

    /// Text embeddings [B, P], unit length, of a right-padded batch.
    public func textEmbeddings(_ batch: TokenBatch) throws -> Tensor {
        try textEmbeddings(ids: batch.ids, batch: batch.batch, length: batch.length, lengths: batch.lengths)
    }

    /// Text embeddings of `ids` [B·N] row-major, each row's first `lengths[b]` tokens valid.
    public func textEmbeddings(ids: [Int], batch: Int, length: Int, lengths: [Int]) throws -> Tensor {
        let hidden = try textModel(ids: ids, batch: batch, length: length, lengths: lengths)
        return try textProjection(textModel.pool(hidden, lengths: lengths, textPooling)).l2Normalized()
    }

    /// exp(logit_scale_a), the factor on audio-to-text similarities.
    public var audioLogitScale: Tensor { logitScaleA.exp() }
    /// exp(logit_scale_t), the factor on text-to-audio similarities.
    public var textLogitScale: Tensor { logitScaleT.exp() }

    /// logits_per_audio [Ba, Bt] = exp(s_a) · a tᵀ and logits_per_text [Bt, Ba] = exp(s_t) · t aᵀ of
    /// unit-length embeddings.
    public func logits(audio a: Tensor, text t: Tensor) throws -> (perAudio: Tensor, perText: Tensor) {
        guard a.rank == 2, t.rank == 2, a.shape[1] == t.shape[1] else {
            throw CLAPError("logits: audio \(a.shape) and text \(t.shape) embeddings must be [B, \(projectionDim)]")
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
    /// both towers and the scales. What `ContrastiveTask` trains with (`.laion`).
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
