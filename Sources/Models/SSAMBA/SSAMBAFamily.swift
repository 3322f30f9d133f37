import Audio
import Engine
import Foundation
import NN

/// The SSAMBA family (Shams et al., 2024): SSAST's masked patch pretraining (`ssamba`) and
/// classifiers (`amba`) on an audio Mamba encoder of Vim layers, Kaldi fbank in as SSAST; its released
/// pretraining checkpoints (`amba_{tiny,small,base}_{250,300,400}.pth`) as fine-tuning starts and
/// embedders.
public struct SSAMBAFamily: ModelFamily {
    public static let classifierFamily = "amba"
    public static let pretrainingFamily = "ssamba"
    public init() {}

    public var architectures: [String] { [Self.classifierFamily, Self.pretrainingFamily] }

    public var entries: [ModelEntry] {
        var out: [ModelEntry] = []
        for size in ["tiny", "small", "base"] {
            for variant in [SSAST.Variant.patch, .frame] {
                let what = variant == .patch ? "16x16 patches (patch-based" : "128x2 frames (frame-based"
                out.append(ModelEntry(name: "ssamba-\(size)-\(variant.rawValue)", family: Self.pretrainingFamily,
                                      summary: "SSAMBA-\(size): 24 bidirectional Mamba layers, \(what) masked pretraining; mean-token pooling)",
                                      classifier: { shape in AMBA(try Self.config(size, variant, shape)) },
                                      pretrainer: { shape in SSAST.ssamba(try Self.config(size, variant, shape)) }))
            }
        }
        return out
    }

    static func config(_ size: String, _ variant: SSAST.Variant, _ shape: ModelShape, bins: Int = 128) throws -> AMBAConfig {
        guard var c = AMBAConfig.pretraining(size, variant: variant, inputTdim: shape.frames, inputFdim: bins) else {
            throw ModelError("no SSAMBA size \(size)")
        }
        if let d = shape.depth { c.depth = d }
        (c.labelDim, c.dropPath) = (shape.outputs, shape.dropPath)
        try c.validate()
        return c
    }

    /// An AMBA classifier for either architecture (a pretraining checkpoint's gives its encoder under a
    /// one-output head, as `ssast` does).
    public func classifier(_ architecture: ModelArchitecture, dropPath: Float?) throws -> any AudioClassifierModel {
        var c = try AMBAConfig.decode(architecture.config, "checkpoint config")
        if let dropPath { c.dropPath = dropPath }
        try c.validate()
        return Random.withoutInitialisation { AMBA(c) }
    }

    public func legacyArchitecture(_ metadata: [String: String]) -> ModelArchitecture? { nil }

    /// SSAMBA releases are pretraining checkpoints without a head: named as such rather than read as a
    /// classifier (or left to another family's reader, which would misname them).
    public func releasedClassifier(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        guard let file = SSAMBACheckpoint.ownFile(path), ModelFiles.isZipArchive(file), SSAMBACheckpoint.namesMambaLayers(file) else { return nil }
        throw ModelError("\(file.path): an SSAMBA pretraining checkpoint has no classifier head; fine-tune it first "
                         + "(earshot finetune --init-from \(path.path) ...), or embed with it (earshot embed --model)")
    }

    public func encoderOnly(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        guard var pre = try AMBAPretrained.read(path), pre.selfSupervised else { return nil }
        var c = pre.config
        (c.labelDim, c.pooling, c.dropPath) = (1, .meanTokens, 0)
        let model = Random.withoutInitialisation { AMBA(c) }   // the encoder comes from the file; the head is unused
        try pre.initialiseReleasing(model)
        model.eval()
        var pipeline = pre.pipeline ?? .astFbank(bins: c.inputFdim, targetFrames: c.inputTdim,
                                                 mean: ASTInputConfig.audioset.mean, std: ASTInputConfig.audioset.std)
        if let mean = options.mean { pipeline.mean = mean }
        if let std = options.std { pipeline.std = std }
        return LoadedClassifier(model: model, classes: [], pipeline: pipeline, multiLabel: false)
    }

    /// A start from a release, an `ssamba` pretraining run or an `amba` classifier: the recorded
    /// encoder on the new clip length (positions adapted), a fresh head; `--fstride`/`--tstride` give
    /// the classifier other strides (SSAMBA's fine-tuning scripts use 10 with 16x16 patches).
    public func start(_ path: URL, shape: ReleaseShape) throws -> ClassifierStart? {
        guard var pre = try AMBAPretrained.read(path) else { return nil }
        let base = pre.config
        // The named config it matches (recorded as the run's model, its depth next to it).
        let name = base.sizeName.flatMap { size in base.variant.map { "ssamba-\(size)-\($0.rawValue)" } }
        let strides = (shape.fstride ?? base.fstride, shape.tstride ?? base.tstride)
        return ClassifierStart(file: pre.file, kind: pre.kind, modelName: name, pipeline: pre.pipeline, bins: base.inputFdim,
                               depth: base.depth) { s in
            if let d = s.depth, d != base.depth { throw ModelError("depth \(d) differs from the \(base.depth) layers of \(pre.file.path)") }
            var c = base
            (c.inputTdim, c.labelDim, c.dropPath) = (s.frames, s.outputs, s.dropPath)
            (c.fstride, c.tstride) = strides
            try c.validate()
            let model = AMBA(c)
            try pre.initialiseReleasing(model)   // its weights are not needed again
            return model
        }
    }

    public func pipeline(for model: any AudioClassifierModel, frames: Int, mean: Float?, std: Float?) -> FeaturePipeline {
        .astFbank(bins: model.inputBins, targetFrames: frames, mean: mean, std: std)
    }
}
