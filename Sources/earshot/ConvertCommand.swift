import ArgumentParser
import Foundation
import Models
import NN

/// `earshot convert`: an Earshot checkpoint rewritten with float16 weights (half the bytes), the way the
/// encoders under `pretrained/` are stored. Every reader widens F16 back to Float32, so the file loads
/// wherever the original did; the weights move by at most half a float16 step (relative 2^-11).
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rewrite an Earshot checkpoint (a run folder or .safetensors file) with float16 weights.")

    @Argument(help: "A run folder (its best.safetensors) or a .safetensors checkpoint.") var checkpoint: String
    @Option(help: "The float16 .safetensors file to write (atomically).") var out: String

    func run() throws {
        let source = try ModelFiles.modelFile(URL(fileURLWithPath: checkpoint))
        guard source.pathExtension == "safetensors" else {
            throw ValidationError("\(source.path): convert reads Earshot .safetensors checkpoints (load a release with embed or finetune first)")
        }
        let target = URL(fileURLWithPath: out)
        guard target.standardizedFileURL != source.standardizedFileURL else {
            throw ValidationError("\(target.path): would overwrite the checkpoint it converts; write elsewhere")
        }
        let file = try SafeTensors.read(source)
        var metadata = file.metadata
        metadata["converted_from"] = source.lastPathComponent
        metadata["converted_from_hash"] = try DeltaCheckpoint.contentHash(source)
        // BatchNorm step counters stay integers, as Module.save writes them.
        let integers = Set(file.tensors.keys.filter { $0.hasSuffix("num_batches_tracked") })
        try SafeTensors.write(file.tensors, to: target, metadata: metadata, integerKeys: integers, float16: true)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: target.path)[.size] as? Int) ?? 0
        print(String(format: "wrote %@: %d tensors in float16, %.1f MB (content hash %@)", target.path, file.tensors.count,
                     Double(bytes) / 1e6, try DeltaCheckpoint.contentHash(target)))
    }
}
