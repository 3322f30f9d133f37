import Audio
import Engine
import Foundation
import NN

/// A parameter-efficient run as a file of kilobytes: only the tensors the method trains (and the
/// batch-norm statistics, which move in training), with the
/// method, classes and features, and the content hash of the checkpoint it started from. Loading it
/// needs that base, checked by hash, so a delta is never applied to other weights than its own.
public enum DeltaCheckpoint {
    /// FNV-1a (64 bits) of a file's bytes, as 16 hex digits: cheap (a 344 MB base in about a second)
    /// and enough to tell two checkpoints apart; not a cryptographic hash.
    public static func contentHash(_ url: URL) throws -> String {
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw ModelError("\(url.path): cannot read to hash (\(error.localizedDescription))")
        }
        return String(format: "%016llx", data.withUnsafeBytes { FeatureCache.fnv1a($0) })
    }

    /// Writes `tensors` (the trainable ones) with `metadata`, the base's hash and file name, and the
    /// model's input length and outputs (what rebuilding it from the base needs).
    public static func write(_ tensors: [String: Tensor], metadata: [String: String], model: any AudioClassifierModel,
                             base: URL, releaseShape: ReleaseShape?, to url: URL) throws {
        var meta = metadata
        meta["delta"] = "true"
        meta["base_hash"] = try contentHash(base)
        meta["base_file"] = base.lastPathComponent
        meta["frames"] = String(model.inputFrames)
        meta["outputs"] = String(model.outputs)
        if let releaseShape { meta["release_shape"] = String(data: try JSONEncoder().encode(releaseShape), encoding: .utf8) }
        // BatchNorm step counters stay integers, as Module.save writes them.
        try SafeTensors.write(tensors, to: url, metadata: meta, integerKeys: Set(tensors.keys.filter { $0.hasSuffix("num_batches_tracked") }))
    }

    /// Whether a safetensors file's metadata marks it as a delta.
    public static func isDelta(_ metadata: [String: String]) -> Bool { metadata["delta"] == "true" }

    /// The classifier a delta and its base make: the base built as the run started from it, the method's
    /// wrappers, then the delta's tensors. Throws naming both files when the base is not the delta's own.
    public static func model(_ delta: URL, metadata: [String: String], tensors: [String: Tensor], base: URL) throws -> any AudioClassifierModel {
        let start = try ModelRegistry.start(base, shape: try metadata["release_shape"].map {
            try JSONDecoder().decode(ReleaseShape.self, from: Data($0.utf8))
        } ?? ReleaseShape())
        let hash = try contentHash(start.file)
        guard hash == metadata["base_hash"] else {
            throw ModelError("\(delta.path) was trained from \(metadata["base_file"] ?? "another checkpoint") (hash \(metadata["base_hash"] ?? "?")); "
                             + "\(start.file.path) has hash \(hash): pass that base with --base")
        }
        guard let frames = metadata["frames"].flatMap(Int.init), let outputs = metadata["outputs"].flatMap(Int.init),
              let peft = try PEFTConfig.recorded(metadata, file: delta) else {
            throw ModelError("\(delta.path): a delta without frames, outputs or peft metadata")
        }
        let model = try Random.withoutInitialisation { try start.build(ModelShape(frames: frames, outputs: outputs)) }
        try peft.apply(to: model, freezing: false)
        let known = Set(model.namedTensors().map(\.0))
        if let stray = tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw ModelError("\(delta.path): tensor '\(stray)' has no place in the model built from \(start.file.path)")
        }
        try model.load(stateDict: tensors, strict: false)
        if peft.method == .lora { PEFTConfig.mergeLoRA(model) }
        return model
    }
}
