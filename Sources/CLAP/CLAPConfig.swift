import Engine
import Foundation
import Models
import Text

/// Errors of CLAP loading and use; the message names the file, key or argument.
public struct CLAPError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The sizes of a CLAP model: the HTSAT audio tower, the RoBERTa/BERT text tower, the joint space.
public struct CLAPConfig: Codable, Sendable, Equatable {
    public var audio: HTSATConfig
    public var text: BertConfig
    /// Width of the joint embedding space (512 in every released CLAP).
    public var projectionDim: Int
    /// exp of the two logit scales' initial value (1/0.07 = 14.29); a checkpoint's values replace it.
    public var logitScaleInit: Float

    public init(audio: HTSATConfig, text: BertConfig, projectionDim: Int = 512, logitScaleInit: Float = 1 / 0.07) {
        self.audio = audio; self.text = text; self.projectionDim = projectionDim; self.logitScaleInit = logitScaleInit
    }

    /// A Hugging Face `ClapModel` config.json (model_type "clap").
    public static func fromHuggingFace(_ url: URL) throws -> CLAPConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw CLAPError("\(url.path): cannot read (\(error.localizedDescription))") }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw CLAPError("\(url.path): not a JSON object") }
        do { return try fromHuggingFace(json) } catch let e as CLAPError { throw CLAPError("\(url.path): \(e.message)") }
    }

    public static func fromHuggingFace(_ json: [String: Any]) throws -> CLAPConfig {
        guard json["model_type"] as? String == "clap" else {
            throw CLAPError("model_type is \(json["model_type"] as? String ?? "missing"), not clap (a ClapModel config)")
        }
        guard let audioJSON = json["audio_config"] as? [String: Any], let textJSON = json["text_config"] as? [String: Any] else {
            throw CLAPError("a CLAP config needs audio_config and text_config")
        }
        let act = json["projection_hidden_act"] as? String ?? "relu"
        guard act == "relu" else { throw CLAPError("projection_hidden_act \(act) is not supported (relu is)") }
        let audio: HTSATConfig, text: BertConfig
        do { audio = try HTSATConfig.fromHuggingFace(audioJSON) } catch { throw CLAPError("\(error)") }
        do { text = try BertConfig.fromHuggingFace(textJSON) } catch { throw CLAPError("text_config: \(error)") }
        let dim = (json["projection_dim"] as? NSNumber)?.intValue ?? 512
        let scale = (json["logit_scale_init_value"] as? NSNumber)?.floatValue ?? 1 / 0.07
        guard dim > 0 else { throw CLAPError("projection_dim \(dim) must be positive") }
        if let what = ConfigLimits.oversized([("the audio projection", [audio.width, dim]), ("the text projection", [text.hiddenSize, dim]),
                                              ("the projections' second layers", [dim, dim])]) {
            throw CLAPError("projection_dim: \(what)")
        }
        return CLAPConfig(audio: audio, text: text, projectionDim: dim, logitScaleInit: scale)
    }
}
