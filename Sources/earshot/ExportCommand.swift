import ArgumentParser
import CLAP
import Foundation
import Inference
import Models
import NN
import Training

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
    @Argument(help: "Classifier: a fine-tuning run folder or checkpoint, a Hugging Face AST folder, an original .pth, or a delta with --base; or an encoder (a pretraining run or release, earshot-ssast-tiny): the embedding only.")
    var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option(help: "The .onnx file to write (atomically), or with --format hf the folder.") var out: String
    @Option(help: "onnx, or hf: an AST classifier as a Hugging Face ASTForAudioClassification folder (config.json, model.safetensors, preprocessor_config.json) that transformers' from_pretrained loads.")
    var format = "onnx"
    @Option(name: .customLong("zeroshot-labels"),
            help: "With a CLAP as the model: write a zero-shot classifier into these comma-separated labels (their caption embeddings inside).")
    var zeroShotLabels: String?
    @Option(help: "Zero-shot caption template with {} or {label}; repeat for an ensemble (default LAION's).") var prompt: [String] = []
    @Flag(help: "With a CLAP as the model: write its text side (tokenizer ids in, unit text embeddings out) for text-to-audio search.")
    var text = false
    @Option(help: "Zero-shot or --text: the CLAP's tokenizer folder (default: the model folder, or the .pt's folder).") var tokenizer: String?
    @Option(name: .customLong("text-heads"), help: "Zero-shot or --text: attention heads of a .pt's RoBERTa (default width / 64).") var textHeads: Int?

    func run() throws {
        switch format {
        case "hf": return try writeHuggingFace()
        case "onnx": break
        default: throw ValidationError("--format \(format): onnx or hf")
        }
        // A slip of --out must not replace a checkpoint (a run's best.safetensors, a release's model file).
        guard URL(fileURLWithPath: out).pathExtension.lowercased() == "onnx" else {
            throw ValidationError("--out \(out): an ONNX model's file name ends in .onnx (nothing written)")
        }
        func loadCLAP() throws -> CLAP {
            try CLAP.load(model: URL(fileURLWithPath: model), tokenizer: tokenizer.map { URL(fileURLWithPath: $0) }, textHeads: textHeads)
        }
        if text {
            guard zeroShotLabels == nil else { throw ValidationError("--text and --zeroshot-labels write different models: give one") }
            let clap = try loadCLAP()
            let data = try clap.textONNX()
            try AtomicFile.write(data, to: URL(fileURLWithPath: out))
            print(String(format: "wrote %@: CLAP text tower (%@ pooling) and projection, input_ids and attention_mask [batch, tokens] -> text_embedding [batch, %d], %.1f MB",
                         out, clap.model.textPooling.rawValue, clap.model.projectionDim, Double(data.count) / 1e6))
            return
        }
        if let zeroShotLabels {
            let names = ZeroShotClassifier.labels(list: zeroShotLabels)
            if names.isEmpty { throw CLAPError("--zeroshot-labels: the label list is empty") }
            let zeroShot = try ZeroShotClassifier(clap: try loadCLAP(), labels: names, templates: prompt.isEmpty ? [ZeroShotClassifier.defaultTemplate] : prompt)
            let data = try zeroShot.onnx()
            try AtomicFile.write(data, to: URL(fileURLWithPath: out))
            print(String(format: "wrote %@: zero-shot CLAP classifier into %d labels, %.1f MB", out, names.count, Double(data.count) / 1e6))
            return
        }
        // A classifier, or an encoder without a head (a pretraining run or release, a shipped encoder): embedding only.
        let clf = try Classifier.loadEmbedder(ShippedModels.resolve(model), released: released.options, base: released.baseURL)
        clf.model.eval()
        let encoderOnly = clf.classes.isEmpty
        let data = try ONNXExport.model(clf.model, classes: clf.classes, pipeline: clf.pipeline, multiLabel: clf.multiLabel, embeddingOnly: encoderOnly)
        try AtomicFile.write(data, to: URL(fileURLWithPath: out))
        let frames = (clf.model as? any VariableLengthClassifier)?.takesAnyLength == true ? "frames" : String(clf.model.inputFrames)
        let sed = (clf.model as? PANNs)?.config.decisionLevelMax == true && !encoderOnly ? " and frame-wise scores (framewise)" : ""
        let what = encoderOnly ? "an encoder (embedding \(clf.model.embeddingWidth) wide)" : "\(clf.model.outputs) outputs\(sed)"
        print(String(format: "wrote %@: %@ with %@, input [batch, %@, %d], %.1f MB", out, clf.model.architecture.family,
                     what, frames, clf.model.inputBins, Double(data.count) / 1e6))
    }

    /// `--format hf`: refuses to write over an existing model's files (nothing written then).
    func writeHuggingFace() throws {
        guard zeroShotLabels == nil, !text else { throw ValidationError("--format hf writes AST classifiers; a CLAP exports to ONNX") }
        let folder = URL(fileURLWithPath: out)
        for name in ASTHuggingFaceExport.files where FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path) {
            throw ValidationError("--out \(out): already holds \(name); choose an empty or new folder (nothing written)")
        }
        let clf = try Classifier.load(ShippedModels.resolve(model), released: released.options, base: released.baseURL)
        guard let ast = clf.model as? AST else {
            throw ValidationError("\(model): a \(clf.model.architecture.family) classifier; Hugging Face folders are written for AST classifiers (ASTForAudioClassification); export to ONNX instead")
        }
        let written = try ASTHuggingFaceExport.save(ast, classes: clf.classes, pipeline: clf.pipeline, multiLabel: clf.multiLabel, to: folder)
        var files = written.files
        // A model card for the Hub, with the run's test result where the model is a run; a README already there is the user's.
        let card = folder.appendingPathComponent("README.md")
        if !FileManager.default.fileExists(atPath: card.path) {
            let runFolder = URL(fileURLWithPath: model)
            var isDirectory: ObjCBool = false
            // Only an existing folder is read as a run (RunDirectory would create a missing one).
            let test = FileManager.default.fileExists(atPath: runFolder.path, isDirectory: &isDirectory) && isDirectory.boolValue
                ? (try? RunDirectory(runFolder))?.closingTestLine : nil
            let text = ASTHuggingFaceExport.modelCard(ast, classes: clf.classes, pipeline: clf.pipeline, multiLabel: clf.multiLabel,
                                                      source: runFolder.lastPathComponent, test: test)
            try AtomicFile.write(Data(text.utf8), to: card)
            files.append("README.md")
        }
        print("wrote \(out): \(files.joined(separator: ", ")) (ASTForAudioClassification, \(ast.config.labelDim) classes, \(ast.config.inputTdim) frames)")
        for note in written.notes { print("note: \(note)") }
    }
}
