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
/// and a RoBERTa (or BERT) text tower with its pooler, projected into one space (`AudioTextModel`),
/// keyed as Hugging Face's `ClapModel` (`audio_model.audio_encoder.*`, `audio_projection.*`,
/// `text_model.*`, `text_projection.*`, `logit_scale_a`, `logit_scale_t`).
///
/// a = normalize(P_a(mean of HTSAT's final tokens)), t = normalize(P_t(tanh(W h_<s> + b))) with
/// normalize(x) = x / ‖x‖₂; logits_per_audio = exp(s_a) · a tᵀ, logits_per_text = exp(s_t) · t aᵀ.
public final class CLAPModel: AudioTextModel {
    public let config: CLAPConfig

    public init(_ config: CLAPConfig) {
        self.config = config
        super.init(audioTower: HTSAT(config.audio), textModel: BertModel(config.text, pooler: true), textPooling: .pooler,
                   projectionDim: config.projectionDim, logitScaleInit: config.logitScaleInit)
    }

    /// The HTSAT audio tower.
    public var audioEncoder: HTSAT { audioTower as! HTSAT }   // swiftlint:disable:this force_cast (init builds nothing else)
}
