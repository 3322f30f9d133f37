import Audio
import Engine
import Foundation
import NN

/// An encoder to fine-tune from (`finetune --init-from`):
/// - self-supervised (SSAST): an Earshot pretraining run or checkpoint, or an SSAST release
///   (`SSAST-Tiny-Patch-400.pth` and its siblings: `module.v.*`, the pretext heads, and the pretraining
///   input size as `module.p_input_fdim` / `module.p_input_tdim`);
/// - supervised (AST): an original AST release (`audioset_10_10_0.4593.pth`), a Hugging Face
///   `ASTForAudioClassification` folder, or an Earshot classifier: AST's transfer recipe (its ESC-50
///   runs start from the AudioSet model), the classifier keeping the release's architecture.
/// Either way the encoder's weights are copied, positions adapted to the new clip length, and the
/// head starts afresh for the new classes.
public struct PretrainedEncoder {
    public enum Source: String, Sendable { case ssast, ast }
    public let file: URL
    public let source: Source
    /// The encoder as trained: width, depth, patch, strides, and the input its positions cover.
    public let config: ASTConfig
    /// The named SSAST size and variant (what `FineTuneConfig.size` and `variant` say); nil for AST.
    public let ssastShape: (size: String, variant: SSAST.Variant)?
    /// The encoder's weights under AST's keys (`v.*`).
    private(set) var encoder: [String: Tensor]
    /// The features it was trained on, where the checkpoint records them (Earshot runs).
    public var pipeline: FeaturePipeline? = nil

    public static func read(_ path: URL, shape: ReleaseShape = ReleaseShape()) throws -> PretrainedEncoder {
        if ASTCheckpoint.isHuggingFaceFolder(path) { return try huggingFace(path) }
        let file = try ModelFiles.modelFile(path)
        if ModelFiles.isZipArchive(file) { return try release(file, shape: shape) }
        let st = try SafeTensors.read(file)
        let encoder = st.tensors.filter { $0.key.hasPrefix("v.") }
        guard let arch = ModelRegistry.architecture(st.metadata),
              [ASTFamily.pretrainingFamily, ASTFamily.classifierFamily].contains(arch.family) else {
            throw NNError("\(file.path): neither an SSAST pretraining nor an AST classifier checkpoint (no architecture ssast or ast in its metadata)")
        }
        let config = try ASTConfig.decode(arch.config, file.path)
        var pre = arch.family == ASTFamily.pretrainingFamily
            ? PretrainedEncoder(file: file, source: .ssast, config: config, ssastShape: try ssastShape(of: config, file), encoder: encoder)
            : PretrainedEncoder(file: file, source: .ast, config: config, ssastShape: nil, encoder: encoder)
        pre.pipeline = try ASTFamily.recordedPipeline(st.metadata, file: file)
        return pre
    }

    static func huggingFace(_ folder: URL) throws -> PretrainedEncoder {
        let config = try ASTConfig.fromHuggingFace(folder.appendingPathComponent("config.json"))
        let (file, state) = try ASTCheckpoint.readHuggingFace(folder)
        var pre = PretrainedEncoder(file: file, source: .ast, config: config, ssastShape: nil, encoder: state.filter { $0.key.hasPrefix("v.") })
        pre.pipeline = ASTFamily.huggingFacePipeline(folder, bins: config.inputFdim, frames: config.inputTdim)
        return pre
    }

    static func release(_ file: URL, shape: ReleaseShape) throws -> PretrainedEncoder {
        var pre = try release(ASTCheckpoint.fromOriginal(try TorchCheckpoint.read(file)), file: file, shape: shape)
        // Released AST and SSAST models read Kaldi fbank normalised with their recipe's statistics.
        let statistics = ASTRelease.statistics(file)
        pre.pipeline = .astFbank(bins: pre.config.inputFdim, targetFrames: pre.config.inputTdim, mean: statistics.mean, std: statistics.std)
        return pre
    }

    /// A release's state dict, already read (keys as `ASTCheckpoint.fromOriginal` leaves them).
    static func release(_ state: [String: Tensor], file: URL, shape: ReleaseShape) throws -> PretrainedEncoder {
        let encoder = state.filter { $0.key.hasPrefix("v.") }
        guard ASTRelease.isSSAST(state) else {
            return PretrainedEncoder(file: file, source: .ast, config: try ASTRelease.config(of: state, file: file, shape: shape),
                                     ssastShape: nil, encoder: encoder)
        }
        guard let cls = state["v.cls_token"], cls.rank == 3, let patch = state["v.patch_embed.proj.weight"], patch.rank == 4,
              let pos = state["v.pos_embed"], pos.rank == 3 else {
            throw NNError("\(file.path): v.cls_token, v.patch_embed.proj.weight or v.pos_embed missing or misshapen")
        }
        let depth = ASTRelease.blockCount(state)
        let dim = cls.shape[2], (fshape, tshape) = (patch.shape[2], patch.shape[3])
        // The pretraining input (128 x 1024 in every release); without it, 128 bins and what the positions hold.
        let fdim = try state["p_input_fdim"].map { Int(try $0.item()) } ?? 128
        let positions = pos.shape[1] - 2, fGrid = fdim / max(fshape, 1)
        let tdim = try state["p_input_tdim"].map { Int(try $0.item()) } ?? positions / max(fGrid, 1) * tshape
        guard let size = ["tiny", "small", "base"].first(where: { ASTConfig.named($0, labelDim: 1)?.dim == dim }) else {
            throw NNError("\(file.path): width \(dim) is not an SSAST size (tiny 192, small 384, base 768)")
        }
        let variant: SSAST.Variant = fshape == fdim && tshape == 2 ? .frame : .patch
        guard var config = SSAST.config(size, variant: variant, inputTdim: tdim, inputFdim: fdim) else {
            throw NNError("\(file.path): no SSAST configuration for size \(size)")
        }
        config.depth = depth
        guard config.fshape == fshape, config.tshape == tshape, config.patches == positions else {
            throw NNError("\(file.path): patch \(fshape)x\(tshape) with \(positions) positions does not fit a \(fdim) x \(tdim) input")
        }
        return PretrainedEncoder(file: file, source: .ssast, config: config, ssastShape: (size, variant), encoder: encoder)
    }

    /// The named size and variant an SSAST encoder's config matches.
    static func ssastShape(of c: ASTConfig, _ file: URL) throws -> (size: String, variant: SSAST.Variant) {
        guard let size = ["tiny", "small", "base"].first(where: {
            ASTConfig.named($0, labelDim: 1).map { ($0.dim, $0.heads, $0.mlpHidden) == (c.dim, c.heads, c.mlpHidden) } ?? false
        }) else {
            throw NNError("\(file.path): encoder width \(c.dim) is not an SSAST size (tiny 192, small 384, base 768)")
        }
        return (size, c.fshape == 16 && c.tshape == 16 ? .patch : .frame)
    }

    /// The classifier an AST encoder becomes: its own architecture (strides, pooling, norms) on clips
    /// of `inputTdim` frames with `labelDim` outputs.
    public func classifierConfig(inputTdim: Int, labelDim: Int) -> ASTConfig {
        var c = config
        (c.inputTdim, c.labelDim) = (inputTdim, labelDim)
        return c
    }

    /// Copies the encoder into an AST classifier of the same width, depth and patch shape, cutting or
    /// interpolating the positions from the encoder's grid to the classifier's (as AST and SSAST
    /// fine-tuning do); the classifier keeps its own fresh head.
    public func initialise(_ model: AST) throws {
        var weights = try weights(for: model)
        do { try model.load(consuming: &weights) } catch { throw NNError("\(file.path): \(error)") }
    }

    /// `initialise(_:)` that gives the encoder's weights up as they are copied (`Module.load(consuming:)`),
    /// so a model built for them under `Random.withoutInitialisation` never has them resident twice.
    /// The encoder is empty afterwards.
    public mutating func initialiseReleasing(_ model: AST) throws {
        var weights = try weights(for: model)
        encoder = [:]
        do { try model.load(consuming: &weights) } catch { throw NNError("\(file.path): \(error)") }
    }

    /// The state dict `model` loads: the encoder with its positions adapted, and the model's own head.
    private func weights(for model: AST) throws -> [String: Tensor] {
        let pre = config
        guard pre.dim == model.config.dim, pre.depth == model.config.depth, pre.fshape == model.config.fshape, pre.tshape == model.config.tshape else {
            throw NNError("\(file.path): pretrained encoder (dim \(pre.dim), depth \(pre.depth), patch \(pre.fshape)x\(pre.tshape)) does not match the classifier")
        }
        var weights = encoder.filter { !$0.key.hasPrefix("v.head") }
        if let pos = weights["v.pos_embed"], pos.shape[1] != model.config.patches + 2 {
            weights["v.pos_embed"] = try ASTCheckpoint.adaptPositionalEmbedding(pos, from: (pre.fGrid, pre.tGrid), to: (model.config.fGrid, model.config.tGrid))
        }
        for (k, t) in model.stateDict() where k.hasPrefix("mlp_head.") { weights[k] = t }
        return weights
    }
}
