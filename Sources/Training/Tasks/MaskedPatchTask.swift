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
    /// Train on random windows of this many frames (nil: the whole input).
    let cropFrames: Int?
    let padValue: Float
    let heldOut: FeatureLoader
    let metadata: [String: String]

    public init(model: any MaskedPatchModel, maskCount: Int, cropFrames: Int?, padValue: Float, heldOut: FeatureLoader,
                metadata: [String: String]) {
        self.model = model; self.maskCount = maskCount; self.cropFrames = cropFrames; self.padValue = padValue
        self.heldOut = heldOut; self.metadata = metadata
    }

    public var module: Module { model }
    public var selectionMetric: String { "pretext_accuracy" }
    public var checkpointMetadata: [String: String] { model.architecture.metadata.merging(metadata) { a, _ in a } }

    func crops(_ features: Tensor, _ g: inout RandomGenerator) throws -> Tensor {
        guard let crop = cropFrames, crop < features.shape[1] else { return features }
        return try Tensor.stack((0..<features.shape[0]).map { i in
            try Augment.randomCrop(try features.slice(axis: 0, start: i, end: i + 1).squeeze(0), frames: crop,
                                   padValue: padValue, generator: &g)
        })
    }

    public func loss(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Tensor, metrics: [String: Double]) {
        let r = try model.pretextLoss(try crops(batch.features, &generator), maskCount: maskCount, generator: &generator)
        return (r.loss, ["pretext_accuracy": Double(r.accuracy)])
    }

    public func validate() throws -> [String: Any] {
        var maskGen = RandomGenerator(seed: 12345), cropGen = RandomGenerator(seed: 54321)
        var loss = 0.0, acc = 0.0, batches = 0
        try heldOut.forEachBatch(epoch: 0) { batch in
            let x = try crops(batch.features, &cropGen)
            let r = try GradMode.noGrad { try model.pretextLoss(x, maskCount: maskCount, generator: &maskGen) }
            loss += Double(try r.loss.item()); acc += Double(r.accuracy); batches += 1
        }
        let n = Double(max(batches, 1))
        return ["pretext_accuracy": acc / n, "loss": loss / n]
    }
}
