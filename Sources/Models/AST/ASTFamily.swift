import Audio
import Engine
import Foundation
import NN

/// The AST family: AST classifiers (`ast`) and SSAST masked-patch pretraining (`ssast`) on one encoder,
/// with the original `.pth` releases, Hugging Face folders and SSAST releases they come as.
public struct ASTFamily: ModelFamily {
    public static let classifierFamily = "ast"
    public static let pretrainingFamily = "ssast"
    public init() {}

    public var architectures: [String] { [Self.classifierFamily, Self.pretrainingFamily] }

    public var entries: [ModelEntry] {
        var out: [ModelEntry] = []
        for size in ["tiny", "small", "base"] {
            out.append(ModelEntry(name: "ast-\(size)", family: Self.classifierFamily,
                                  summary: "AST-\(size): 16x16 patches at stride 10, cls+dist pooling (AST's supervised recipe)",
                                  classifier: { shape in
                guard var c = ASTConfig.named(size, labelDim: shape.outputs) else { throw ModelError("no AST size \(size)") }
                c.inputTdim = shape.frames
                if let d = shape.depth { c.depth = d }
                c.dropPath = shape.dropPath
                try c.validate()
                return AST(c)
            }, pretrainer: nil))
            for variant in [SSAST.Variant.patch, .frame] {
                let summary = variant == .patch ? "SSAST-\(size), 16x16 patches (patch-based masked pretraining; mean-token pooling)"
                    : "SSAST-\(size), 128x2 frames (frame-based masked pretraining; mean-token pooling)"
                out.append(ModelEntry(name: "ssast-\(size)-\(variant.rawValue)", family: Self.pretrainingFamily, summary: summary,
                                      classifier: { shape in AST(try Self.ssastConfig(size, variant, shape)) },
                                      pretrainer: { shape in SSAST(try Self.ssastConfig(size, variant, shape)) }))
            }
        }
        return out
    }

    static func ssastConfig(_ size: String, _ variant: SSAST.Variant, _ shape: ModelShape, bins: Int = 128) throws -> ASTConfig {
        guard var c = SSAST.config(size, variant: variant, inputTdim: shape.frames, inputFdim: bins) else {
            throw ModelError("no SSAST size \(size)")
        }
        if let d = shape.depth { c.depth = d }
        (c.labelDim, c.dropPath) = (shape.outputs, shape.dropPath)
        try c.validate()
        return c
    }

    public func classifier(_ architecture: ModelArchitecture, dropPath: Float?) throws -> any AudioClassifierModel {
        var c = try ASTConfig.decode(architecture.config, "checkpoint config")
        try c.validate()
        if let dropPath { c.dropPath = dropPath }
        return Random.withoutInitialisation { AST(c) }
    }

    public func legacyArchitecture(_ metadata: [String: String]) -> ModelArchitecture? {
        if let c = metadata["ast_config"] { return ModelArchitecture(family: Self.classifierFamily, config: c) }
        if let c = metadata["ssast_config"] { return ModelArchitecture(family: Self.pretrainingFamily, config: c) }
        return nil
    }

    public func releasedClassifier(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        if ASTCheckpoint.isHuggingFaceFolder(path) { return try Self.huggingFace(path, options) }
        if ModelFiles.isZipArchive(path) { return try Self.originalAST(path, options) }
        return nil
    }

    public func encoderOnly(_ path: URL, options: ReleasedCheckpointOptions) throws -> LoadedClassifier? {
        if ASTCheckpoint.isHuggingFaceFolder(path) { return try Self.huggingFace(path, options) }
        let file = try ModelFiles.modelFile(path)
        var pre: PretrainedEncoder
        if ModelFiles.isZipArchive(file) {
            // A .pth is parsed once, whichever kind it turns out to be.
            var state = ASTCheckpoint.fromOriginal(try TorchCheckpoint.read(file))
            guard ASTRelease.isSSAST(state) else { return try Self.originalAST(&state, file: file, options) }
            pre = try PretrainedEncoder.release(state, file: file, shape: options.shape)
        } else {
            // Safetensors are memory-mapped: looking at the metadata first costs nothing.
            guard let arch = ModelRegistry.architecture(try SafeTensors.read(file).metadata), arch.family == Self.pretrainingFamily else { return nil }
            pre = try PretrainedEncoder.read(file)
        }
        var config = pre.config
        (config.labelDim, config.pooling) = (1, .meanTokens)
        let model = Random.withoutInitialisation { AST(config) }   // the encoder comes from the file; the head is unused
        try pre.initialiseReleasing(model)
        model.eval()
        var pipeline = pre.pipeline ?? .astFbank(bins: config.inputFdim, targetFrames: config.inputTdim,
                                                 mean: ASTInputConfig.audioset.mean, std: ASTInputConfig.audioset.std)
        if let mean = options.mean { pipeline.mean = mean }
        if let std = options.std { pipeline.std = std }
        return LoadedClassifier(model: model, classes: [], pipeline: pipeline, multiLabel: false)
    }

    public func start(_ path: URL, shape: ReleaseShape) throws -> ClassifierStart? {
        if !ASTCheckpoint.isHuggingFaceFolder(path) {
            let file = try ModelFiles.modelFile(path)
            if !ModelFiles.isZipArchive(file) {
                guard let arch = ModelRegistry.architecture(try SafeTensors.read(file).metadata), architectures.contains(arch.family) else { return nil }
            }
        }
        var pre = try PretrainedEncoder.read(path, shape: shape)
        let name = pre.ssastShape.map { "ssast-\($0.size)-\($0.variant.rawValue)" }
        let kind = pre.source == .ast ? "AST" : "SSAST"
        return ClassifierStart(file: pre.file, kind: kind, modelName: name, pipeline: pre.pipeline, bins: pre.config.inputFdim,
                               depth: pre.config.depth) { shape in
            if let d = shape.depth, d != pre.config.depth {
                throw ModelError("depth \(d) differs from the \(pre.config.depth) blocks of \(pre.file.path)")
            }
            var c: ASTConfig
            if let ssast = pre.ssastShape {
                var s = shape
                s.depth = pre.config.depth
                c = try Self.ssastConfig(ssast.size, ssast.variant, s, bins: pre.config.inputFdim)
            } else {
                c = pre.classifierConfig(inputTdim: shape.frames, labelDim: shape.outputs)
                c.dropPath = shape.dropPath
                try c.validate()
            }
            let model = AST(c)
            try pre.initialiseReleasing(model)   // its weights are not needed again
            return model
        }
    }

    public func pipeline(for model: any AudioClassifierModel, frames: Int, mean: Float?, std: Float?) -> FeaturePipeline {
        .astFbank(bins: model.inputBins, targetFrames: frames, mean: mean, std: std)
    }

    /// The features a pretraining checkpoint records: its `pipeline` metadata, or the `pretrain_config`
    /// of checkpoints written before it (Kaldi fbank, its clip length and statistics).
    static func recordedPipeline(_ metadata: [String: String], file: URL) throws -> FeaturePipeline? {
        do { if let pipeline = try FeaturePipeline.recorded(in: metadata, file: file.path) { return pipeline } } catch let e as AudioError {
            throw ModelError(e.message)
        }
        guard let p = metadata["pretrain_config"],
              let json = (try? JSONSerialization.jsonObject(with: Data(p.utf8))) as? [String: Any],
              let frames = (json["inputTdim"] as? NSNumber)?.intValue else { return nil }
        return FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: frames, mean: (json["mean"] as? NSNumber)?.floatValue,
                               std: (json["std"] as? NSNumber)?.floatValue)
    }
}
