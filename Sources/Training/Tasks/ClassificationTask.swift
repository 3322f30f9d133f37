import Audio
import Engine
import Foundation
import Inference
import Models
import NN

/// How a classification batch is augmented (per clip, then mixup across the batch).
public struct ClassificationAugmentation: Sendable {
    /// Random time crop to the model's input, SpecAugment widths (0 = off), AST's noise and roll.
    public var cropFrames: Int? = nil
    public var freqm = 0, timem = 0
    public var noise = false
    /// Mixup α (0 = off) and label smoothing.
    public var mixup: Float = 0
    public var labelSmoothing: Float = 0
    /// The normalised value of silence (SpecAugment fills and crops pad with it).
    public var padValue: Float = 0
    public init() {}

    /// The per-clip part (crop, SpecAugment, noise) on features [B, T, F]; mixup is the caller's.
    public func perClip(_ features: Tensor, generator: inout RandomGenerator) throws -> Tensor {
        guard freqm > 0 || timem > 0 || noise || cropFrames != nil else { return features }
        let items = try (0..<features.shape[0]).map { i -> Tensor in
            var x = try features.slice(axis: 0, start: i, end: i + 1).squeeze(0)
            if let crop = cropFrames, crop < x.shape[0] {
                x = try Augment.randomCrop(x, frames: crop, padValue: padValue, generator: &generator)
            }
            if freqm > 0 { x = try Augment.mask(x, axis: 1, param: freqm, value: padValue, generator: &generator) }
            if timem > 0 { x = try Augment.mask(x, axis: 0, param: timem, value: padValue, generator: &generator) }
            if noise { x = try Augment.astNoise(x, generator: &generator) }
            return x
        }
        return try Tensor.stack(items)
    }
}

/// Supervised classification, single- or multi-label, of any registered classifier: cross-entropy
/// (soft targets under mixup, smoothing otherwise) or binary cross-entropy; validation accuracy
/// (or mAP for multi-label) chooses the checkpoint.
public final class ClassificationTask: TrainingTask {
    public let model: any AudioClassifierModel
    public let classes: [String]
    public let multiLabel: Bool
    public let pipeline: FeaturePipeline
    public let augmentation: ClassificationAugmentation
    /// The parameter-efficient method the model is wrapped for, recorded in every checkpoint.
    public let peft: PEFTConfig?
    let validation: Dataset
    let batchSize: Int
    let report: SkipReport
    /// A teacher's logits per training clip (`--teacher`): its softened scores join the labels as targets.
    public var distillation: TeacherTargets?

    public init(model: any AudioClassifierModel, classes: [String], multiLabel: Bool, pipeline: FeaturePipeline,
                augmentation: ClassificationAugmentation, peft: PEFTConfig? = nil, validation: Dataset, batchSize: Int,
                report: SkipReport) {
        self.model = model; self.classes = classes; self.multiLabel = multiLabel; self.pipeline = pipeline
        self.augmentation = augmentation; self.peft = peft
        self.validation = validation; self.batchSize = batchSize; self.report = report
    }

    public var module: Module { model }
    public var selectionMetric: String { multiLabel ? "mAP" : "accuracy" }

    public var checkpointMetadata: [String: String] {
        let enc = JSONEncoder()
        return model.architecture.metadata.merging([
            "classes": String(data: (try? enc.encode(classes)) ?? Data(), encoding: .utf8)!,
            "pipeline": String(data: (try? enc.encode(pipeline)) ?? Data(), encoding: .utf8)!,
            "multi_label": multiLabel ? "true" : "false",
        ].merging(peft.map { ["peft": $0.json] } ?? [:]) { a, _ in a }) { a, _ in a }
    }

    /// The classifier as it stands (for validation and tests).
    public var classifier: Classifier { Classifier(model: model, classes: classes, pipeline: pipeline, multiLabel: multiLabel) }

    public func loss(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Tensor, metrics: [String: Double]) {
        guard let distillation else {
            return (try loss(batch, classes: classes.count, multiLabel: multiLabel, generator: &generator, logits: model.logits), [:])
        }
        let teacher = try Losses.softenedTeacher(distillation.batch(batch.indices, labels: batch.labels),
                                                 temperature: distillation.config.temperature, multiLabel: self.multiLabel)
        var kd = Tensor.scalar(0)
        let labels = try loss(batch, classes: classes.count, multiLabel: multiLabel, generator: &generator, teacher: teacher,
                              scored: { scores, mixedTeacher in
                                  kd = try Losses.distillation(student: scores, teacher: mixedTeacher!,
                                                               temperature: distillation.config.temperature, multiLabel: self.multiLabel)
                              }, logits: model.logits)
        let alpha = distillation.config.weight
        return (try labels * (1 - alpha) + kd * alpha, ["kd": Double(kd.data[0]), "label_loss": Double(labels.data[0])])
    }

    /// The loss of a batch whose labels index `classes` classes, scored by `logits` on the augmented
    /// features: the model's own head, or another head on its encoder (FLAD's auxiliary datasets
    /// with other label sets), under the same augmentation. `teacher` (soft targets [B, C]) is mixed as
    /// the labels are under mixup and handed, with the logits, to `scored`.
    public func loss(_ batch: TrainingBatch, classes: Int, multiLabel: Bool, generator: inout RandomGenerator,
                     teacher: Tensor? = nil, scored: ((Tensor, Tensor?) throws -> Void)? = nil,
                     logits: (Tensor) throws -> Tensor) throws -> Tensor {
        let a = augmentation
        var feats = try a.perClip(batch.features, generator: &generator)
        var targets = batch.multiHot(classes: classes)
        var teacher = teacher
        if a.mixup > 0 && feats.shape[0] > 1 {
            let lambda = Augment.beta(a.mixup, generator: &generator)
            let perm = Array((1..<feats.shape[0])) + [0]
            feats = try feats * lambda + feats.indexSelect(axis: 0, indices: perm) * (1 - lambda)
            targets = try targets * lambda + targets.indexSelect(axis: 0, indices: perm) * (1 - lambda)
            teacher = try teacher.map { try $0 * lambda + $0.indexSelect(axis: 0, indices: perm) * (1 - lambda) }
        }
        let scores = try logits(feats)
        try scored?(scores, teacher)
        if multiLabel { return try scores.binaryCrossEntropyWithLogits(targets: targets) }
        if a.mixup > 0 { return try scores.crossEntropy(softTargets: targets) }
        // A clip without a label (trained on a teacher's scores alone) adds nothing here; a batch of only such clips, zero.
        let indices = batch.labels.map { $0.first ?? -1 }
        guard indices.contains(where: { $0 >= 0 }) else { return Tensor.scalar(0) }
        return try scores.crossEntropy(targets: indices, labelSmoothing: a.labelSmoothing, ignoreIndex: -1)
    }

    public func validate() throws -> [String: Any] {
        let (result, _) = try evaluate(classifier, on: validation, batchSize: batchSize, report: report)
        var line = result.json
        line.removeValue(forKey: "confusion_matrix")
        return line
    }
}
