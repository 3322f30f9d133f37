import Engine
import Foundation
import NN

/// Loading HTSAT weights from Hugging Face CLAP checkpoints onto `HTSAT`'s keys (which are HF's own,
/// below `audio_encoder.`).
public enum HTSATCheckpoint {
    /// Where the encoder sits: `ClapModel` and `ClapAudioModelWithProjection` (`audio_model.audio_encoder.`),
    /// `ClapAudioModel` (`audio_encoder.`), or an encoder state saved alone.
    static let prefixes = ["audio_model.audio_encoder.", "audio_encoder.", ""]

    /// The prefix under which `state` holds an HTSAT, nil if none.
    public static func prefix(of state: [String: Tensor]) -> String? {
        prefixes.first { state["\($0)patch_embed.proj.weight"] != nil }
    }

    /// The encoder's keys: the prefix stripped, other keys (projections, a text tower) left out, and the
    /// `relative_position_index` buffers, which the model recomputes, checked and dropped.
    public static func encoderState(_ state: [String: Tensor], window: Int) throws -> [String: Tensor] {
        guard let prefix = prefix(of: state) else {
            throw ModelError("no HTSAT audio encoder: no patch_embed.proj.weight under any of \(prefixes.map { $0.isEmpty ? "(none)" : $0 })")
        }
        let expected = SwinSelfAttention.relativePositionIndex(window: window).map(Float.init)
        var out: [String: Tensor] = [:]
        for (k, v) in state where k.hasPrefix(prefix) {
            let key = String(k.dropFirst(prefix.count))
            if key.hasSuffix(".relative_position_index") {
                // A checkpoint for another window size, or one whose buffers were built differently,
                // would silently misplace every bias: say so instead.
                guard v.count == expected.count, v.toArray() == expected else {
                    throw ModelError("\(k): the relative-position index is not the one of a \(window)x\(window) window")
                }
                continue
            }
            out[key] = v
        }
        return out
    }

    /// Builds the encoder `config` describes and loads `state` (any prefix above) into it, in eval mode.
    public static func load(_ state: [String: Tensor], config: HTSATConfig) throws -> HTSAT {
        var own = try encoderState(state, window: config.window)
        let model = Random.withoutInitialisation { HTSAT(config) }
        try model.load(consuming: &own, strict: true)
        model.eval()
        return model
    }

    /// The audio config of a Hugging Face config.json: a `ClapModel`'s `audio_config`, or a
    /// `clap_audio_model` config itself.
    public static func config(_ url: URL) throws -> HTSATConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ModelError("\(url.path): cannot read (\(error.localizedDescription))") }
        guard var json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw ModelError("\(url.path): not a JSON object") }
        if json["model_type"] as? String == "clap" {
            guard let audio = json["audio_config"] as? [String: Any] else { throw ModelError("\(url.path): a CLAP config without audio_config") }
            json = audio
        }
        do { return try HTSATConfig.fromHuggingFace(json) } catch let e as ModelError { throw ModelError("\(url.path): \(e.message)") }
    }

    /// The HTSAT of a Hugging Face folder (`ClapModel`, `ClapAudioModel`, `ClapAudioModelWithProjection`:
    /// config.json + model.safetensors or pytorch_model.bin), in eval mode.
    public static func loadHuggingFace(_ folder: URL) throws -> HTSAT {
        let config = try config(folder.appendingPathComponent("config.json"))
        guard let file = ASTCheckpoint.huggingFaceWeights(in: folder) else {
            throw ModelError("\(folder.path): no model.safetensors or pytorch_model.bin")
        }
        let state = file.pathExtension == "safetensors" ? try SafeTensors.read(file).tensors : try TorchCheckpoint.read(file)
        do { return try load(state, config: config) } catch { throw ModelError("\(file.path): \(error)") }
    }
}
