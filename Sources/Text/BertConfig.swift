import Engine
import Foundation

/// The sizes of a BERT or RoBERTa encoder, as Hugging Face `config.json` names them.
public struct BertConfig: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    public var typeVocabSize: Int
    public var layerNormEps: Float
    public var padTokenID: Int
    /// RoBERTa numbers positions from `padTokenID + 1` (pad tokens get `padTokenID`), BERT from 0.
    public var robertaPositions: Bool
    /// tanh-approximated GELU ("gelu_new", "gelu_pytorch_tanh") instead of the erf form ("gelu").
    public var approximateGELU: Bool
    /// Dropout on embeddings and on each sub-layer's output, in training mode only.
    public var hiddenDropout: Float

    public init(vocabSize: Int, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int, maxPositions: Int = 512,
                typeVocabSize: Int = 2, layerNormEps: Float = 1e-12, padTokenID: Int = 0, robertaPositions: Bool = false,
                approximateGELU: Bool = false, hiddenDropout: Float = 0.1) {
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.layers = layers; self.heads = heads
        self.intermediateSize = intermediateSize; self.maxPositions = maxPositions; self.typeVocabSize = typeVocabSize
        self.layerNormEps = layerNormEps; self.padTokenID = padTokenID; self.robertaPositions = robertaPositions
        self.approximateGELU = approximateGELU; self.hiddenDropout = hiddenDropout
    }

    /// The longest text the position table allows (RoBERTa's first `padTokenID + 1` rows are unused).
    public var maxTokens: Int { robertaPositions ? maxPositions - padTokenID - 1 : maxPositions }

    public func validate() throws {
        guard vocabSize > 0, layers > 0, heads > 0, maxTokens > 0, typeVocabSize > 0 else {
            throw TextError("text encoder config: sizes must be positive (vocab \(vocabSize), layers \(layers), heads \(heads), positions \(maxPositions))")
        }
        guard hiddenSize > 0, hiddenSize % heads == 0 else { throw TextError("text encoder config: width \(hiddenSize) does not split into \(heads) heads") }
        if let what = ConfigLimits.oversized([("the token embedding", [vocabSize, hiddenSize]), ("the position table", [maxPositions, hiddenSize]),
                                              ("the MLP", [hiddenSize, intermediateSize]),
                                              ("the attention", [hiddenSize, 3, hiddenSize]),
                                              ("the layers' attention", [layers, 4, hiddenSize, hiddenSize]),
                                              ("the layers' MLPs", [layers, 2, hiddenSize, intermediateSize]), ("the token types", [typeVocabSize, hiddenSize])]) {
            throw TextError("text encoder config: \(what)")
        }
    }

    /// A Hugging Face `config.json` of model_type bert, roberta, xlm-roberta, camembert or
    /// clap_text_model (also a CLAP config's `text_config`).
    public static func fromHuggingFace(_ url: URL) throws -> BertConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw TextError("\(url.path): cannot read (\(error.localizedDescription))") }
        guard var json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw TextError("\(url.path): not a JSON object") }
        if json["model_type"] as? String == "clap", let text = json["text_config"] as? [String: Any] { json = text }
        do { return try fromHuggingFace(json) } catch let e as TextError { throw TextError("\(url.path): \(e.message)") }
    }

    public static func fromHuggingFace(_ json: [String: Any]) throws -> BertConfig {
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = (json[key] as? NSNumber)?.intValue { return v }
            if let fallback { return fallback }
            throw TextError("config has no \(key)")
        }
        let type = json["model_type"] as? String ?? "bert"
        let roberta: Bool
        switch type {
        case "bert": roberta = false
        case "roberta", "xlm-roberta", "camembert", "clap_text_model": roberta = true
        default: throw TextError("model_type \(type) is not a BERT or RoBERTa encoder")
        }
        let act = json["hidden_act"] as? String ?? "gelu"
        guard ["gelu", "gelu_new", "gelu_pytorch_tanh"].contains(act) else { throw TextError("hidden_act \(act) is not supported (gelu is)") }
        if let p = json["position_embedding_type"] as? String, p != "absolute" {
            throw TextError("position_embedding_type \(p) is not supported (absolute is)")
        }
        let config = BertConfig(
            vocabSize: try int("vocab_size"), hiddenSize: try int("hidden_size"), layers: try int("num_hidden_layers"),
            heads: try int("num_attention_heads"), intermediateSize: try int("intermediate_size"),
            maxPositions: try int("max_position_embeddings", 512), typeVocabSize: try int("type_vocab_size", 2),
            layerNormEps: (json["layer_norm_eps"] as? NSNumber)?.floatValue ?? 1e-12,
            padTokenID: try int("pad_token_id", roberta ? 1 : 0), robertaPositions: roberta,
            approximateGELU: act != "gelu", hiddenDropout: (json["hidden_dropout_prob"] as? NSNumber)?.floatValue ?? 0.1)
        try config.validate()
        return config
    }
}
