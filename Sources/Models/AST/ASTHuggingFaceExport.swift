import Audio
import Engine
import Foundation
import NN

/// An AST classifier written as a Hugging Face `ASTForAudioClassification` folder (`save_pretrained`'s
/// layout: config.json, model.safetensors, preprocessor_config.json), so that
/// `ASTForAudioClassification.from_pretrained(folder)` and `pipeline("audio-classification", model=folder)`
/// load a model trained or fine-tuned here, and `earshot` reads it back as any Hugging Face folder.
/// The inverse of `ASTCheckpoint.fromHuggingFace`: `qkv` split into query, key and value.
///
/// Only what that class computes can be written: cls and distillation tokens pooled as their mean
/// (AST's pooling; a mean over patch tokens, SSAST's, has no place in it), square patches, Kaldi fbank
/// features as `ASTFeatureExtractor` makes them, and no weight outside its keys (an adapter or prompts
/// are refused by name; a LoRA run's weights are merged when it loads). HF has one `layer_norm_eps` for
/// the encoder and the head: the head's own eps (1e-5 in an original AST) is reported when it differs.
public enum ASTHuggingFaceExport {
    /// The files a folder gets, as `save_pretrained` writes them.
    public static let files = ["config.json", "model.safetensors", "preprocessor_config.json"]

    public struct Written: Sendable {
        /// What the Hugging Face model computes differently, if anything (the head's eps).
        public var notes: [String]
        public var files: [String]
    }

    /// Earshot (original AST) keys → Hugging Face keys, every tensor accounted for.
    public static func huggingFaceState(_ state: [String: Tensor]) throws -> [String: Tensor] {
        try GradMode.noGrad { try mapKeys(state) }
    }

    static func mapKeys(_ state: [String: Tensor]) throws -> [String: Tensor] {
        // The loader's tables, inverted: one source of truth for the key names both ways.
        let outside = Dictionary(uniqueKeysWithValues: ASTCheckpoint.huggingFaceKeys.map { ($1, $0) })
        let block = Dictionary(uniqueKeysWithValues: ASTCheckpoint.huggingFaceLayerKeys.map { ($1, $0) })
        let prefix = "audio_spectrogram_transformer."
        var out: [String: Tensor] = [:]
        for (key, t) in state {
            if let k = outside[key] { out[(k.hasPrefix("classifier.") ? "" : prefix) + k] = t; continue }
            let rest = key.dropFirst("v.blocks.".count)
            let unplaced = ModelError("'\(key)' has no place in a Hugging Face ASTForAudioClassification (adapters, prompts and other additions cannot be written; export to ONNX instead)")
            guard key.hasPrefix("v.blocks."), let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) else { throw unplaced }
            let tail = String(rest[rest.index(after: dot)...])
            let layer = "\(prefix)encoder.layer.\(i)."
            if let k = block[tail] { out[layer + k] = t; continue }
            guard tail == "attn.qkv.weight" || tail == "attn.qkv.bias", t.shape[0] % 3 == 0 else { throw unplaced }
            let kind = tail.hasSuffix("weight") ? "weight" : "bias"
            let third = t.shape[0] / 3
            for (j, name) in ["query", "key", "value"].enumerated() {
                out[layer + "attention.attention.\(name).\(kind)"] = try t.slice(axis: 0, start: j * third, end: (j + 1) * third)
            }
        }
        return out
    }

    /// `config.json`: the fields `ASTConfig` (transformers) reads, classes as id2label/label2id.
    public static func config(_ c: ASTConfig, classes: [String], multiLabel: Bool) -> [String: Any] {
        var id2label: [String: String] = [:], label2id: [String: Int] = [:]
        for (i, name) in classes.enumerated() { id2label[String(i)] = name; label2id[name] = i }
        return [
            "architectures": ["ASTForAudioClassification"], "model_type": "audio-spectrogram-transformer",
            "hidden_size": c.dim, "num_hidden_layers": c.depth, "num_attention_heads": c.heads, "intermediate_size": c.mlpHidden,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
            "layer_norm_eps": decimal(c.eps), "patch_size": c.fshape, "qkv_bias": true,
            "frequency_stride": c.fstride, "time_stride": c.tstride, "max_length": c.inputTdim, "num_mel_bins": c.inputFdim,
            "id2label": id2label, "label2id": label2id,
            "problem_type": multiLabel ? "multi_label_classification" : "single_label_classification",
            "torch_dtype": "float32",
        ]
    }

    /// A Float as the Double its shortest decimal names (1e-12, not 9.99999996e-13), as Python reads it back.
    static func decimal(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }

    /// `preprocessor_config.json` for `ASTFeatureExtractor`, which computes Kaldi fbank with AST's settings
    /// (25 ms Hanning frames every 10 ms, no dither, no energy) at `sampling_rate` into `num_mel_bins`, pads or
    /// cuts to `max_length` and normalises as (x − mean) / (2·std); a pipeline it cannot express is refused.
    public static func preprocessor(_ pipeline: FeaturePipeline, frames: Int) throws -> [String: Any] {
        guard case .kaldiFbank(let fbank) = pipeline.kind else {
            throw ModelError("the model's features are log-mel, not the Kaldi fbank Hugging Face's ASTFeatureExtractor computes")
        }
        var ast = KaldiFbankConfig.ast
        ast.numMelBins = fbank.numMelBins
        ast.sampleRate = fbank.sampleRate
        guard fbank == ast else {
            throw ModelError("the model's Kaldi fbank settings (\(fbank)) differ from AST's, which are all Hugging Face's ASTFeatureExtractor computes")
        }
        guard (pipeline.mean == nil) == (pipeline.std == nil) else {
            throw ModelError("the model's features have a mean without a std (or the reverse); ASTFeatureExtractor normalises with both or neither")
        }
        return [
            "feature_extractor_type": "ASTFeatureExtractor", "feature_size": 1, "sampling_rate": fbank.sampleRate,
            "num_mel_bins": fbank.numMelBins, "max_length": pipeline.targetFrames ?? frames, "padding_value": 0.0,
            "do_normalize": pipeline.mean != nil, "mean": decimal(pipeline.mean ?? 0), "std": decimal(pipeline.std ?? 1),
            "return_attention_mask": false,
        ]
    }

    /// Writes `model` as a Hugging Face folder (created if needed; each file written atomically). Nothing is
    /// written when any part cannot be expressed.
    public static func save(_ model: AST, classes: [String], pipeline: FeaturePipeline, multiLabel: Bool, to folder: URL) throws -> Written {
        let c = model.config
        guard c.pooling == .clsPair else {
            throw ModelError("the model pools the mean of its patch tokens (SSAST's ft_avgtok); Hugging Face's ASTForAudioClassification pools the cls and distillation tokens, so it would score differently (export to ONNX instead)")
        }
        guard c.fshape == c.tshape else {
            throw ModelError("patches of \(c.fshape)x\(c.tshape): Hugging Face's AST takes square patches (one patch_size)")
        }
        guard model.v.prompts == nil else { throw ModelError("prompt tokens have no place in a Hugging Face ASTForAudioClassification (export to ONNX instead)") }
        guard classes.count == c.labelDim else { throw ModelError("\(classes.count) class names for \(c.labelDim) outputs") }
        guard Set(classes).count == classes.count else { throw ModelError("class names repeat: label2id needs each once") }
        let state = try huggingFaceState(model.stateDict())
        let pre = try preprocessor(pipeline, frames: c.inputTdim)
        let json = try JSONSerialization.data(withJSONObject: config(c, classes: classes, multiLabel: multiLabel), options: [.prettyPrinted, .sortedKeys])
        let preJSON = try JSONSerialization.data(withJSONObject: pre, options: [.prettyPrinted, .sortedKeys])
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // transformers refuses a safetensors file whose metadata does not name its framework.
        try SafeTensors.write(state, to: folder.appendingPathComponent("model.safetensors"), metadata: ["format": "pt"])
        try AtomicFile.write(json, to: folder.appendingPathComponent("config.json"))
        try AtomicFile.write(preJSON, to: folder.appendingPathComponent("preprocessor_config.json"))
        var notes: [String] = []
        if c.headEps != c.eps {
            notes.append("the head's LayerNorm eps \(c.headEps) becomes \(c.eps) (Hugging Face has one layer_norm_eps)")
        }
        return Written(notes: notes, files: files)
    }

    /// A Hugging Face model card (README.md, with the Hub's metadata header): what the model is, its classes and
    /// features, how to run it in Python, and `test` (a run's test line: its metrics, scored once on the checkpoint
    /// chosen on validation) where the export came from a run.
    public static func modelCard(_ model: AST, classes: [String], pipeline: FeaturePipeline, multiLabel: Bool,
                                 source: String, test: [String: Any]? = nil) -> String {
        let c = model.config
        var features = "Kaldi fbank (AST's settings), \(pipeline.sampleRate) Hz, \(pipeline.bins) mel bins, \(pipeline.targetFrames ?? c.inputTdim) frames"
        if let mean = pipeline.mean, let std = pipeline.std { features += String(format: ", normalised as (x - %g) / (2 x %g)", mean, std) }
        let shown = classes.prefix(30).joined(separator: ", ") + (classes.count > 30 ? ", ... (\(classes.count - 30) more)" : "")
        var lines = [
            "---", "library_name: transformers", "pipeline_tag: audio-classification", "tags:", "- audio-classification", "- earshot", "---", "",
            "# Audio Spectrogram Transformer exported by Earshot", "",
            "An `ASTForAudioClassification` (\(c.dim) wide, \(c.depth) layers, \(c.heads) heads, \(c.fshape)x\(c.tshape) patches at strides "
                + "\(c.fstride)x\(c.tstride)) exported by `earshot export --format hf` from `\(source)`.", "",
            "- **Classes** (\(classes.count), \(multiLabel ? "multi-label: sigmoid scores" : "single-label: softmax scores")): \(shown)",
            "- **Features**: \(features); `ASTFeatureExtractor` computes them from 16-bit or float audio at the sampling rate above.",
        ]
        if let test {
            let keys = ["test_accuracy": "accuracy", "test_macro_f1": "macro F1", "test_mAP": "mAP"]
            let metrics = keys.keys.sorted().compactMap { k in (test[k] as? Double).map { String(format: "%@ %.3f", keys[k]!, $0) } }
            if !metrics.isEmpty {
                let epoch = (test["scored_once_on_epoch"] as? Int).map { " on epoch \($0)" } ?? ""
                lines.append("- **Test result** (the run's test split, scored once\(epoch), the checkpoint chosen on its validation split): "
                             + metrics.joined(separator: ", "))
            }
        }
        lines += ["", "## Use", "", "```python", "from transformers import pipeline", "",
                  "classifier = pipeline(\"audio-classification\", model=\"path/to/this/folder\")",
                  "print(classifier(\"clip.wav\"))", "```", ""]
        return lines.joined(separator: "\n")
    }
}
