import Audio
import Engine
import Foundation
import Models
import NN

extension ZeroShotClassifier {
    /// The zero-shot classifier as an ONNX model: CLAP's audio side (HTSAT, the audio projection), the unit
    /// audio embedding a = e / ‖e‖, and logits = exp(s_a) · a Tᵀ with the labels' unit caption embeddings T
    /// [K, P] and the logit scale as constants, so a runtime classifies into these labels without the text
    /// tower. Input: CLAP's unnormalised log-mel of the model's frames (a clip repeat-padded to 10 s as
    /// CLAP pads it; the metadata's `pipeline`). Outputs `logits` [batch, K] (softmax for probabilities) and
    /// `embedding` [batch, P] (a). Unfused HTSAT CLAPs only.
    /// `withMetadata` false leaves the metadata (written last) out: what the fixture hashes.
    public func onnx(withMetadata: Bool = true) throws -> Data {
        guard let model = clap.model as? CLAPModel else {
            throw CLAPError("ONNX export of zero-shot classification is written for CLAPs with an HTSAT audio tower")
        }
        let audio = model.config.audio
        let g = ONNXGraph()
        let pooled = try model.audioEncoder.writeONNX(g, features: "features", key: "audio_model.audio_encoder.")
        let e = try model.audioProjection.writeONNX(g, pooled, key: "audio_projection")
        let unit = g.node("Div", [e, g.node("Sqrt", [g.node("ReduceSumSquare", [e], [.ints("axes", [-1]), .int("keepdims", 1)])])])
        let captions = g.weight(try textEmbeddings.transpose(0, 1), name: "label_embeddings")
        let scale = g.scalar(Foundation.exp(try model.logitScaleA.item()), name: "logit_scale")
        g.output(g.node("Mul", [g.node("MatMul", [unit, captions]), scale]), as: "logits")
        g.output(unit, as: "embedding")
        let meta = ["architecture": "clap-zeroshot", "multi_label": "false", "scores": "softmax of the logits",
                    "classes": try ONNXExport.metadataJSON(labels), "templates": try ONNXExport.metadataJSON(templates),
                    "pipeline": try ONNXExport.metadataJSON(CLAPAudioFamily.pipeline(audio, frames: audio.frames)),
                    "input": "features [batch, \(audio.frames), \(audio.melBins)]: CLAP's log-mel (unnormalised) of a clip repeat-padded to \(audio.frames) frames"]
        return g.model(name: "clap-zeroshot",
                       inputs: [("features", [.named("batch"), .fixed(audio.frames), .fixed(audio.melBins)])],
                       outputs: [("logits", [.named("batch"), .fixed(labels.count)]), ("embedding", [.named("batch"), .fixed(model.projectionDim)])],
                       metadata: withMetadata ? meta : [:])
    }
}
