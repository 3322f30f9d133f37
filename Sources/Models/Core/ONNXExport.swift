import Audio
import Engine
import Foundation
import NN

/// A classifier that can write its forward pass as an ONNX graph (`ONNXGraph`): features in, logits and
/// the pooled embedding out, for runtimes without Swift (onnxruntime on a phone, a server in another
/// language). The front end stays outside the graph, as every exporter of these models leaves it (an
/// STFT is not an ONNX op before opset 17's DFT, and runtimes differ on it): the model's metadata
/// records the feature pipeline a caller reproduces.
public protocol ONNXExportable: AudioClassifierModel {
    /// Appends the nodes from `features` ([batch, frames, bins], already normalised) and returns the
    /// names of the logits [batch, outputs] and the embedding [batch, width].
    func writeONNX(_ graph: ONNXGraph, features: String) throws -> (logits: String, embedding: String)
}

public enum ONNXExport {
    /// A metadata value as JSON with sorted keys (the same bytes on every run).
    public static func metadataJSON<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// The serialised ONNX model of a loaded classifier, with its classes, feature pipeline and
    /// architecture as metadata. Throws naming the family where it has no exporter.
    /// `withMetadata` false leaves the metadata out (it is written last, so the rest is the same bytes):
    /// what the exporter's fixture hashes.
    /// `embeddingOnly`: an encoder without a trained head (a pretraining run, a shipped encoder): the graph's
    /// one output is the embedding.
    public static func model(_ model: any AudioClassifierModel, classes: [String], pipeline: FeaturePipeline, multiLabel: Bool,
                             embeddingOnly: Bool = false, withMetadata: Bool = true) throws -> Data {
        guard let exportable = model as? any ONNXExportable else {
            throw ModelError("ONNX export is written for AST, SSAST, SSAMBA, PANNs and CLAP audio classifiers; a \(model.architecture.family) model has no exporter yet")
        }
        let graph = ONNXGraph()
        let (logits, embedding) = try exportable.writeONNX(graph, features: "features")
        if !embeddingOnly { graph.output(logits, as: "logits") }
        graph.output(embedding, as: "embedding")
        let extras = embeddingOnly ? [] : graph.extraOutputs
        for extra in extras { graph.output(extra.value, as: extra.name) }
        // A model that takes clips of any length (PANNs, SSAMBA) gets a free frames axis; the others their window.
        let anyLength = (model as? any VariableLengthClassifier)?.takesAnyLength == true
        let frames: ONNXGraph.Dimension = anyLength ? .named("frames") : .fixed(model.inputFrames)
        let framesText = anyLength ? "frames (any number from \((model as? any VariableLengthClassifier)?.minimumFrames ?? 1))" : "\(model.inputFrames)"
        var meta = ["architecture": model.architecture.family, "config": model.architecture.config,
                    "multi_label": multiLabel ? "true" : "false",
                    "scores": embeddingOnly ? "none: an encoder (the embedding only)" : multiLabel ? "sigmoid of the logits" : "softmax of the logits",
                    "input": "features [batch, \(framesText), \(model.inputBins)]: the pipeline's features"
                        + (anyLength ? ", normalised as it says" : ", padded or cut to \(model.inputFrames) frames and normalised as it says")
                        + (!anyLength && (pipeline.targetFrames ?? model.inputFrames) > model.inputFrames
                           ? "; Earshot averages windows of \(model.inputFrames) frames, half a window apart, over the pipeline's \(pipeline.targetFrames!) frames" : "")]
        if extras.contains(where: { $0.name == "framewise" }) {
            meta["framewise"] = "sigmoid scores per input frame [batch, frames, classes] (each output step's repeated over the frames it spans)"
        }
        meta["classes"] = try metadataJSON(classes)
        meta["pipeline"] = try metadataJSON(pipeline)
        return graph.model(name: model.architecture.family,
                           inputs: [("features", [.named("batch"), frames, .fixed(model.inputBins)])],
                           outputs: (embeddingOnly ? [] : [("logits", [.named("batch"), .fixed(model.outputs)])])
                                + [("embedding", [.named("batch"), .fixed(model.embeddingWidth)])] + extras.map { ($0.name, $0.dims) },
                           metadata: withMetadata ? meta : [:])
    }
}

extension ONNXGraph {
    /// The patch embedding of AST-style encoders (AST, SSAST, SSAMBA): features [B, T, F] → [B, 1, F, T] →
    /// the patch Conv ([B, D, fGrid, t], returned for its shape) → tokens [B, N, D]; and the batch size
    /// as a 1-element shape, for expanding learned tokens to it.
    func patchTokens(_ features: String, _ proj: Conv2d, width d: Int) -> (patches: String, tokens: String, batch: String) {
        let image = node("Transpose", [node("Unsqueeze", [features, int64s([1])])], [.ints("perm", [0, 1, 3, 2])])
        let patches = conv2d(image, proj, key: "v.patch_embed.proj")
        let tokens = node("Transpose", [node("Reshape", [patches, int64s([0, d, -1])])], [.ints("perm", [0, 2, 1])])
        return (patches, tokens, node("Shape", [features], [.int("start", 0), .int("end", 1)]))
    }

    /// `mlp_head` = LayerNorm + Linear (AST's and SSAMBA's) on the embedding; anything else is refused.
    func normLinearHead(_ embedding: String, _ head: Sequential, width d: Int) throws -> String {
        guard let headNorm = head.layers.first as? LayerNorm, let headLinear = head.layers.last as? Linear, head.layers.count == 2,
              type(of: headNorm) == LayerNorm.self, type(of: headLinear) == Linear.self else {
            throw ModelError("ONNX export: mlp_head is not the stock LayerNorm + Linear")
        }
        return try linear(layerNorm(embedding, headNorm, key: "mlp_head.0", width: d), headLinear, key: "mlp_head.1")
    }
}
