import Audio
import Engine
import Foundation
import Models
import NN
import Text

/// Which audio tower a trained CLAP has.
public enum CLAPAudioTowerSpec: Codable, Sendable, Equatable {
    /// HTSAT of this config, on `CLAPAudio`'s front end unless the model records another.
    case htsat(HTSATConfig)
    /// A registry classifier's encoder (`earshot models`): its family and config as checkpoints record them.
    case classifier(ModelArchitecture)

    /// The tower, weights drawn at random (a checkpoint replaces them).
    public func build() throws -> any CLAPAudioTower {
        switch self {
        case .htsat(let c):
            do { try c.validate() } catch { throw CLAPError("audio tower: \(error)") }
            return HTSAT(c)
        case .classifier(let arch):
            do { return ClassifierAudioTower(try ModelRegistry.classifier(arch)) } catch { throw CLAPError("audio tower: \(error)") }
        }
    }
}

/// What a trained CLAP folder's config.json says: `model_type` "earshot_clap", the towers, the joint
/// width, the text pooling, the tokenizer's length and the audio front end.
public struct TrainedCLAPConfig: Codable, Sendable, Equatable {
    public var modelType = TrainedCLAP.modelType
    public var audioTower: CLAPAudioTowerSpec
    public var text: BertConfig
    public var textPooling: TextPooling
    /// Whether the text tower has `pooler.dense` (a checkpoint's tower keeps it even where `textPooling` is not `.pooler`).
    public var textPooler: Bool
    public var projectionDim: Int
    /// Tokens a caption is cut at.
    public var maxTextTokens: Int
    /// The features the audio tower takes (file → [T, F]).
    public var frontEnd: FeaturePipeline

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", audioTower = "audio_tower", text = "text_config", textPooling = "text_pooling", textPooler = "text_pooler"
        case projectionDim = "projection_dim", maxTextTokens = "max_text_tokens", frontEnd = "front_end"
    }

    public init(audioTower: CLAPAudioTowerSpec, text: BertConfig, textPooling: TextPooling, textPooler: Bool, projectionDim: Int,
                maxTextTokens: Int, frontEnd: FeaturePipeline) {
        self.audioTower = audioTower; self.text = text; self.textPooling = textPooling; self.textPooler = textPooler
        self.projectionDim = projectionDim
        self.maxTextTokens = maxTextTokens; self.frontEnd = frontEnd
    }

    /// The model it describes, weights drawn at random.
    public func build() throws -> AudioTextModel {
        guard projectionDim > 0 else { throw CLAPError("projection_dim \(projectionDim) must be positive") }
        do { try text.validate() } catch { throw CLAPError("text_config: \(error)") }
        guard textPooler || textPooling != .pooler else { throw CLAPError("text_pooling is pooler but text_pooler is false") }
        return AudioTextModel(audioTower: try audioTower.build(), textModel: BertModel(text, pooler: textPooler),
                              textPooling: textPooling, projectionDim: projectionDim)
    }
}

/// A CLAP an Earshot contrastive run trained, as a folder `CLAP.load` reads (and zero-shot, index and
/// search take like a released one):
/// - `config.json`: `TrainedCLAPConfig` (model_type "earshot_clap");
/// - `model.safetensors`: the `AudioTextModel`'s state (the run's best.safetensors, the same keys);
/// - the text tower's tokenizer files (tokenizer.json, vocab.txt, tokenizer_config.json, vocab.json,
///   merges.txt, special_tokens_map.json: whichever it had).
public enum TrainedCLAP {
    public static let modelType = "earshot_clap"
    static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", "special_tokens_map.json"]

    /// Whether `folder`'s config.json is a trained CLAP's.
    public static func isTrained(_ folder: URL) -> Bool {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("config.json")),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
        return json["model_type"] as? String == modelType
    }

    /// Writes the folder: `config`, the weights `checkpoint` (a safetensors file of the model's keys,
    /// copied) and the tokenizer files found in `tokenizerFolder`.
    public static func export(config: TrainedCLAPConfig, checkpoint: URL, tokenizerFolder: URL, to folder: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(config), to: folder.appendingPathComponent("config.json"))
        let weights = folder.appendingPathComponent("model.safetensors")
        try AtomicFile.write(try Data(contentsOf: checkpoint), to: weights)
        var copied = 0
        for name in tokenizerFiles {
            let src = tokenizerFolder.appendingPathComponent(name)
            guard fm.fileExists(atPath: src.path) else { continue }
            try AtomicFile.write(try Data(contentsOf: src), to: folder.appendingPathComponent(name))
            copied += 1
        }
        guard copied > 0 else { throw CLAPError("\(tokenizerFolder.path): no tokenizer file (\(tokenizerFiles.joined(separator: ", "))) to export") }
    }

    /// The trained CLAP of `folder`, in eval mode; texts cut at min(`maxLength`, the config's length).
    public static func load(_ folder: URL, maxLength: Int = 77) throws -> CLAP {
        let configURL = folder.appendingPathComponent("config.json")
        let config: TrainedCLAPConfig
        do { config = try JSONDecoder().decode(TrainedCLAPConfig.self, from: Data(contentsOf: configURL)) } catch {
            throw CLAPError("\(configURL.path): not a trained CLAP config (\(error))")
        }
        let model: AudioTextModel
        do { model = try Random.withoutInitialisation { try config.build() } } catch let e as CLAPError {
            throw CLAPError("\(configURL.path): \(e.message)")
        }
        let weights = folder.appendingPathComponent("model.safetensors")
        var state: [String: Tensor]
        do { state = try SafeTensors.read(weights).tensors } catch { throw CLAPError("\(weights.path): \(error)") }
        do { try model.load(consuming: &state, strict: true) } catch { throw CLAPError("\(weights.path): \(error)") }
        model.eval()
        let tokenizer: any TextTokenizer
        do { tokenizer = try TokenizerFiles.load(folder: folder, maxLength: min(maxLength, config.maxTextTokens)) } catch {
            throw CLAPError(describing(error, under: folder))
        }
        return try CLAP(model: model, tokenizer: tokenizer, frontEnd: config.frontEnd)
    }
}
