import Audio
import Engine
import Foundation
import Models
import NN

/// Self-supervised masked patch modelling (SSAST's joint discriminative and generative objective) on
/// any `MaskedPatchModel`; held-out pretext accuracy, with masks fixed across epochs so they compare
/// fairly, chooses the checkpoint.
public final class MaskedPatchTask: TrainingTask {
    public let model: any MaskedPatchModel
    let maskCount: Int
    /// The windows (and, for a two-view objective, views) the model is given.
    let views: PretextViews
    let heldOut: FeatureLoader
    let metadata: [String: String]

    /// `cropFrames`: train on random windows of this many frames (nil: the whole input); `mixRatio` and
    /// `scale`: how a two-view objective's views are mixed (`PretextViews`).
    public init(model: any MaskedPatchModel, maskCount: Int, cropFrames: Int?, padValue: Float, heldOut: FeatureLoader,
                metadata: [String: String], mixRatio: Float = 0.4, scale: Float = 1) {
        self.model = model; self.maskCount = maskCount
        self.views = PretextViews(cropFrames: cropFrames, padValue: padValue, mixRatio: mixRatio, scale: scale)
        self.heldOut = heldOut; self.metadata = metadata
    }

    /// The model's input: one window per clip, or two views when the objective wants them.
    func inputs(_ features: Tensor, _ g: inout RandomGenerator) throws -> (Tensor, Tensor?) {
        guard model.wantsTwoViews else { return (try views.crops(features, &g), nil) }
        let (a, b) = try views.twoViews(features, &g)
        return (a, b)
    }

    func pretext(_ x: (Tensor, Tensor?), masks g: inout RandomGenerator) throws -> (loss: Tensor, accuracy: Float, metrics: [String: Double]) {
        try model.pretextLoss(x.0, secondView: x.1, maskCount: maskCount, generator: &g)
    }

    public var module: Module { model }
    public var selectionMetric: String { "pretext_accuracy" }
    public var checkpointMetadata: [String: String] { model.architecture.metadata.merging(metadata) { a, _ in a } }

    public func loss(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Tensor, metrics: [String: Double]) {
        let r = try pretext(try inputs(batch.features, &generator), masks: &generator)
        return (r.loss, r.metrics.merging(["pretext_accuracy": Double(r.accuracy)]) { a, _ in a })
    }

    public func validate() throws -> [String: Any] {
        var maskGen = RandomGenerator(seed: 12345), cropGen = RandomGenerator(seed: 54321)
        var loss = 0.0, acc = 0.0, clip = 0.0, batches = 0
        try heldOut.forEachBatch(epoch: 0) { batch in
            let x = try inputs(batch.features, &cropGen)
            let r = try GradMode.noGrad { try pretext(x, masks: &maskGen) }
            loss += Double(try r.loss.item()); acc += Double(r.accuracy); batches += 1
            if let c = r.metrics["clip_accuracy"] { clip += c }
        }
        let n = Double(max(batches, 1))
        var out: [String: Any] = ["pretext_accuracy": acc / n, "loss": loss / n]
        if model.wantsTwoViews { out["clip_accuracy"] = clip / n }
        return out
    }
}
