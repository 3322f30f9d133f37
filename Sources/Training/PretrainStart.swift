import Engine
import Foundation
import Models
import NN

/// A pretraining checkpoint a new pretraining run continues from (`earshot pretrain --init-from`):
/// an Earshot pretraining run folder, one of its checkpoints, or a shipped encoder
/// (`earshot-ssast-tiny`). Continued pretraining is how a user adapts a pretrained encoder to their own
/// unlabelled audio (domain-adaptive pretraining), and how a second objective is added to an encoder
/// that the first already trained (the clip-level term after the token task).
///
/// The whole pretraining state is copied, encoder and pretext heads alike, so the masked-token task
/// goes on where it stopped; only the optimiser starts afresh (with its warmup). The start keeps its
/// own architecture (model, depth and the window its positions cover), as `finetune --init-from` does.
public struct PretrainStart {
    public let file: URL
    /// The start's own run settings (its `pretrain_config` metadata): model, depth, window, normalisation.
    public let settings: PretrainConfig
    private var state: [String: Tensor]

    /// Frames of the window the start's positions cover: what the continued run must train on.
    public var frames: Int { settings.cropFrames ?? settings.inputTdim }

    /// Keys a start may lack or hold beyond the model: heads that exist only with an option on
    /// (the clip-level term's projection), which a continued run adds afresh or drops.
    static func isOptionalHead(_ key: String) -> Bool { key.hasPrefix("clip_projection.") }

    public static func read(_ argument: String) throws -> PretrainStart {
        let file = try ModelFiles.modelFile(try ShippedModels.resolve(argument))
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw NNError("pretrain: --init-from \(argument): no such file, run folder or shipped encoder (earshot models lists the shipped ones)")
        }
        if ModelFiles.isZipArchive(file) {
            throw NNError("pretrain: \(file.path) is a PyTorch release; continued pretraining starts from an Earshot pretraining run or checkpoint "
                          + "(fine-tune from a release with finetune --init-from)")
        }
        let st = try SafeTensors.read(file)
        guard let json = st.metadata["pretrain_config"] else {
            throw NNError("pretrain: \(file.path) is not an Earshot pretraining checkpoint (no pretrain_config in its metadata); "
                          + "--init-from takes a pretraining run, one of its checkpoints or a shipped encoder")
        }
        let settings: PretrainConfig
        do { settings = try JSONDecoder().decode(PretrainConfig.self, from: Data(json.utf8)) } catch {
            throw NNError("pretrain: \(file.path): its pretrain_config metadata cannot be read (\(error))")
        }
        return PretrainStart(file: file, settings: settings, state: st.tensors)
    }

    /// Copies the start into `model` (built from `settings.model` at `frames`): every key must match in
    /// name and shape but optional heads; an error names the keys or the shape that differ.
    public mutating func load(into model: any MaskedPatchModel, log: (String) -> Void) throws {
        let mine = Set(model.namedTensors().map(\.0))
        let missing = mine.filter { state[$0] == nil }.sorted()
        let unexpected = state.keys.filter { !mine.contains($0) }.sorted()
        let required = missing.filter { !Self.isOptionalHead($0) }, extra = unexpected.filter { !Self.isOptionalHead($0) }
        guard required.isEmpty && extra.isEmpty else {
            func named(_ keys: [String]) -> String { keys.prefix(5).joined(separator: ", ") + (keys.count > 5 ? ", ... (\(keys.count))" : "") }
            let parts = (required.isEmpty ? [] : ["missing \(named(required))"]) + (extra.isEmpty ? [] : ["unexpected \(named(extra))"])
            throw NNError("pretrain: \(file.path) does not match \(settings.model): " + parts.joined(separator: "; "))
        }
        for key in unexpected { state[key] = nil }
        do { try model.load(consuming: &state, strict: false) } catch { throw NNError("pretrain: \(file.path): \(error)") }
        if !missing.isEmpty { log("pretrain: \(missing.count) weights the start has not (\(missing.joined(separator: ", "))) start afresh") }
        if !unexpected.isEmpty { log("pretrain: the start's \(unexpected.joined(separator: ", ")) left out (off in this run)") }
    }
}
