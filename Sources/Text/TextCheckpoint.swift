import Engine
import Foundation
import NN

/// Loading Hugging Face BERT / RoBERTa folders (config.json + model.safetensors or pytorch_model.bin).
public enum TextCheckpoint {
    /// Prefixes under which a text encoder's keys sit in task heads and CLAP checkpoints.
    static let prefixes = ["", "bert.", "roberta.", "text_model.", "text_branch.", "model.", "module.text_branch."]
    /// Buffers some checkpoints carry and the model recomputes.
    static let buffers = ["embeddings.position_ids", "embeddings.token_type_ids"]

    /// The encoder's own keys: the first prefix under which `embeddings.word_embeddings.weight` is found,
    /// stripped, other keys dropped (a task head, a CLAP audio tower), position/type id buffers dropped.
    public static func encoderState(_ state: [String: Tensor]) throws -> [String: Tensor] {
        guard let prefix = prefixes.first(where: { state["\($0)embeddings.word_embeddings.weight"] != nil }) else {
            throw TextError("no embeddings.word_embeddings.weight under any of the prefixes \(prefixes.map { $0.isEmpty ? "(none)" : $0 })")
        }
        var out: [String: Tensor] = [:]
        for (k, v) in state where k.hasPrefix(prefix) {
            let key = String(k.dropFirst(prefix.count))
            if !buffers.contains(key) { out[key] = v }
        }
        return out
    }

    public static func load(_ state: [String: Tensor], config: BertConfig) throws -> BertModel {
        var own = try encoderState(state)
        let model = BertModel(config, pooler: own["pooler.dense.weight"] != nil)
        if let w = own["embeddings.word_embeddings.weight"], w.shape != [config.vocabSize, config.hiddenSize] {
            throw TextError("word embeddings are \(w.shape), the config says [\(config.vocabSize), \(config.hiddenSize)]")
        }
        try model.load(consuming: &own, strict: true)
        model.eval()
        return model
    }

    /// The weights file of a folder: model.safetensors, else pytorch_model.bin.
    public static func weights(in folder: URL) -> URL? {
        ["model.safetensors", "pytorch_model.bin"].map { folder.appendingPathComponent($0) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// A Hugging Face folder's encoder, in eval mode.
    public static func loadHuggingFace(_ folder: URL) throws -> BertModel {
        let config = try BertConfig.fromHuggingFace(folder.appendingPathComponent("config.json"))
        guard let file = weights(in: folder) else { throw TextError("\(folder.path): no model.safetensors or pytorch_model.bin") }
        let state = file.pathExtension == "bin" ? try TorchCheckpoint.read(file) : try SafeTensors.read(file).tensors
        do { return try load(state, config: config) } catch let e as TextError { throw TextError("\(file.path): \(e.message)") }
    }
}

/// A tokenizer, an encoder and a pooling: texts in, one vector per text out (a sentence-transformers
/// model such as all-MiniLM-L6-v2, or CLAP's RoBERTa before its projection).
public struct TextEncoder {
    public var tokenizer: any TextTokenizer
    public let model: BertModel
    public var pooling: TextPooling
    public var normalize: Bool

    /// Fails when the tokenizer can produce ids the model's embedding table does not have.
    public init(tokenizer: any TextTokenizer, model: BertModel, pooling: TextPooling, normalize: Bool) throws {
        guard tokenizer.vocabularySize <= model.config.vocabSize else {
            throw TextError("the tokenizer has \(tokenizer.vocabularySize) ids but the text encoder's embedding table holds \(model.config.vocabSize): they are not from the same model")
        }
        guard tokenizer.maxLength <= model.config.maxTokens else {
            throw TextError("the tokenizer's maxLength \(tokenizer.maxLength) is more than the \(model.config.maxTokens) positions of the text encoder")
        }
        self.tokenizer = tokenizer; self.model = model; self.pooling = pooling; self.normalize = normalize
    }

    /// A model folder: config.json, weights, tokenizer files. `pooling` and `normalize` nil: what the
    /// folder's sentence-transformers files say (1_Pooling/config.json, a Normalize module in
    /// modules.json), else the pooler where the checkpoint has one (else mean), unnormalised.
    /// `maxLength` nil: as `TokenizerFiles.load(folder:)`.
    public static func load(_ folder: URL, pooling: TextPooling? = nil, normalize: Bool? = nil, maxLength: Int? = nil) throws -> TextEncoder {
        let model = try TextCheckpoint.loadHuggingFace(folder)
        let tokenizer = try TokenizerFiles.load(folder: folder, maxLength: maxLength)
        var stPooling: TextPooling? = nil, stNormalize = false
        let poolingConfig = folder.appendingPathComponent("1_Pooling/config.json")
        if let data = try? Data(contentsOf: poolingConfig), let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            if json["pooling_mode_mean_tokens"] as? Bool == true { stPooling = .mean } else if json["pooling_mode_cls_token"] as? Bool == true { stPooling = .cls }
        }
        if let data = try? Data(contentsOf: folder.appendingPathComponent("modules.json")),
           let modules = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] {
            stNormalize = modules.contains { ($0["type"] as? String)?.hasSuffix("Normalize") == true }
        }
        return try TextEncoder(tokenizer: tokenizer, model: model,
                               pooling: pooling ?? stPooling ?? (model.pooler != nil ? .pooler : .mean),
                               normalize: normalize ?? stNormalize)
    }

    /// [B, D] embeddings of `texts`, padded to the longest of them. No graph is recorded.
    public func embed(_ texts: [String]) throws -> Tensor {
        try GradMode.noGrad { try embed(tokenizer.encode(batch: texts)) }
    }

    /// [B, D] embeddings of a tokenised batch, differentiable when grad mode is on (training).
    public func embed(_ batch: TokenBatch) throws -> Tensor {
        let pooled = try model.pool(model(batch), lengths: batch.lengths, pooling)
        return normalize ? try pooled.l2Normalized() : pooled
    }
}
