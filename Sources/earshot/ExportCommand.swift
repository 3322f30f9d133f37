import ArgumentParser
import Foundation
import Inference
import Models
import NN

/// `earshot export`: a classifier as an ONNX model (opset 17) for runtimes without Swift, with its
/// classes and feature pipeline in the model's metadata.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a classifier as an ONNX model (features in; logits and embedding out).",
        discussion: """
            The graph starts at the features (Kaldi fbank for AST and SSAST, padded or cut to the model's frames and \
            normalised as its pipeline says; log-mel of any length for PANNs, unnormalised log-mel for a CLAP classifier); the metadata_props "pipeline", "classes" and "multi_label" say how to make \
            them and read the scores. tools/check_onnx_export.py runs an export in onnxruntime beside the model in PyTorch.
            """)
    @Argument(help: "Classifier: a fine-tuning run folder or checkpoint, a Hugging Face AST folder, an original .pth, or a delta with --base.")
    var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option(help: "The .onnx file to write (atomically).") var out: String

    func run() throws {
        // A slip of --out must not replace a checkpoint (a run's best.safetensors, a release's model file).
        guard URL(fileURLWithPath: out).pathExtension.lowercased() == "onnx" else {
            throw ValidationError("--out \(out): an ONNX model's file name ends in .onnx (nothing written)")
        }
        let clf = try Classifier.load(ShippedModels.resolve(model), released: released.options, base: released.baseURL)
        clf.model.eval()
        let data = try ONNXExport.model(clf.model, classes: clf.classes, pipeline: clf.pipeline, multiLabel: clf.multiLabel)
        try AtomicFile.write(data, to: URL(fileURLWithPath: out))
        let frames = (clf.model as? any VariableLengthClassifier)?.takesAnyLength == true ? "frames" : String(clf.model.inputFrames)
        print(String(format: "wrote %@: %@ with %d outputs, input [batch, %@, %d], %.1f MB", out, clf.model.architecture.family,
                     clf.model.outputs, frames, clf.model.inputBins, Double(data.count) / 1e6))
    }
}
