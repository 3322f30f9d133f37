import Audio
import Engine
import Foundation
import Models
import NN

/// What a released AST checkpoint does not say about itself, given by the user (the command line's
/// `--fstride`, `--labels`, ...). Every field is optional: nil takes the checkpoint's own value, else
/// the AST recipes' default.
public struct ReleasedCheckpointOptions: Sendable {
    /// Patch strides. An original `.pth` does not record them; AST names its files after them
    /// (`audioset_10_10_0.4593.pth`: 10 and 10), which is read when these are nil, else 10.
    public var fstride: Int?, tstride: Int?
    /// Attention heads of an original `.pth` (nil: AST's sizes, dim / 64).
    public var heads: Int?
    /// Mel bins of the fbank (original `.pth` only; nil: 128 as every AST release).
    public var melBins: Int?
    /// Normalisation statistics (nil: the HF feature extractor's, else AudioSet's).
    public var mean: Float?, std: Float?
    /// Class names: a CSV with `index` and `display_name` columns (AST's class_labels_indices.csv)
    /// or one name per line. nil: HF's id2label, or "0", "1", ... for a `.pth`.
    public var labels: URL?
    /// Sigmoid (multi-label) or softmax scores. nil: HF's `problem_type` when it is set, else sigmoid,
    /// as AST's released models were trained with BCE and its inference script applies a sigmoid.
    public var multiLabel: Bool?

    public init() {}
}

extension Classifier {
    /// Loads a classifier from an Earshot fine-tuning run or checkpoint, a Hugging Face
    /// `ASTForAudioClassification` folder (config.json + model.safetensors), or an original AST `.pth`
    /// release (a zip archive; see `TorchCheckpoint`), with `options` filling in what a release lacks.
    public static func load(_ path: URL, released options: ReleasedCheckpointOptions) throws -> Classifier {
        var isDir: ObjCBool = false
        FileManager.default.fileExists(atPath: path.path, isDirectory: &isDir)
        if isDir.boolValue && FileManager.default.fileExists(atPath: path.appendingPathComponent("model.safetensors").path) {
            return try huggingFace(path, options)
        }
        if !isDir.boolValue && isZipArchive(path) { return try originalAST(path, options) }
        return try load(path)
    }

    static func isZipArchive(_ url: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data([0x50, 0x4B, 0x03, 0x04])
    }

    /// A Hugging Face folder: architecture and classes from config.json, features from
    /// preprocessor_config.json where present (AST's AudioSet statistics where not).
    static func huggingFace(_ folder: URL, _ options: ReleasedCheckpointOptions) throws -> Classifier {
        let configURL = folder.appendingPathComponent("config.json")
        let model = try ASTCheckpoint.loadHuggingFace(folder)
        let json = (try? JSONSerialization.jsonObject(with: Data(contentsOf: configURL))) as? [String: Any] ?? [:]
        var classes = (0..<model.config.labelDim).map(String.init)
        if let id2label = json["id2label"] as? [String: Any] {
            for (key, name) in id2label {
                guard let i = Int(key), classes.indices.contains(i) else {
                    throw ModelError("\(configURL.path): id2label key '\(key)' is not a class index below \(classes.count)")
                }
                classes[i] = "\(name)"
            }
        }
        if let labels = options.labels { classes = try readClassNames(labels, count: classes.count) }
        let pre = (try? JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("preprocessor_config.json")))) as? [String: Any] ?? [:]
        var fbank = KaldiFbankConfig.ast
        fbank.numMelBins = model.config.inputFdim
        if let rate = (pre["sampling_rate"] as? NSNumber)?.intValue { fbank.sampleRate = rate }
        let normalise = (pre["do_normalize"] as? Bool) ?? true
        let mean = options.mean ?? (pre["mean"] as? NSNumber)?.floatValue ?? ASTInputConfig.audioset.mean
        let std = options.std ?? (pre["std"] as? NSNumber)?.floatValue ?? ASTInputConfig.audioset.std
        let pipeline = FeaturePipeline(kind: .kaldiFbank(fbank), targetFrames: model.config.inputTdim,
                                       mean: normalise ? mean : nil, std: normalise ? std : nil)
        let problem = json["problem_type"] as? String
        let multiLabel = options.multiLabel ?? (problem.map { $0 == "multi_label_classification" } ?? true)
        return Classifier(model: model, classes: classes, pipeline: pipeline, multiLabel: multiLabel)
    }

    /// An original AST release: a DataParallel state dict (`module.v.*`, `module.mlp_head.*`). The
    /// shapes give width, depth, patch size, the MLP and the classes; strides, heads and mel bins
    /// come from `options`, the file name or AST's defaults, and the clip length from the patch grid.
    static func originalAST(_ file: URL, _ options: ReleasedCheckpointOptions) throws -> Classifier {
        let raw = try TorchCheckpoint.read(file)
        let state = ASTCheckpoint.fromOriginal(raw)
        if state.keys.contains(where: { $0.hasPrefix("cpredlayer.") || $0 == "mask_embed" }) {
            throw ModelError("\(file.path): an SSAST pretraining checkpoint has no classifier head; fine-tune it first (earshot finetune --init-from)")
        }
        func shape(_ key: String, rank: Int) throws -> [Int] {
            guard let t = state[key] else { throw ModelError("\(file.path): no '\(key)' (module.\(key)): not an AST state dict") }
            guard t.rank == rank else { throw ModelError("\(file.path): '\(key)' has shape \(t.shape), expected rank \(rank)") }
            return t.shape
        }
        let dim = try shape("v.cls_token", rank: 3)[2]
        let patch = try shape("v.patch_embed.proj.weight", rank: 4)
        let mlpHidden = try shape("v.blocks.0.mlp.fc1.weight", rank: 2)[0]
        let labelDim = try shape("mlp_head.1.weight", rank: 2)[0]
        let positions = try shape("v.pos_embed", rank: 3)[1]
        let depth = Set(state.keys.compactMap { key -> Int? in
            guard key.hasPrefix("v.blocks.") else { return nil }
            return Int(key.dropFirst("v.blocks.".count).prefix { $0 != "." })
        }).count
        let heads: Int
        if let h = options.heads {
            guard h > 0, dim % h == 0 else { throw ModelError("\(file.path): width \(dim) does not split into \(h) heads (--heads)") }
            heads = h
        } else {
            guard dim % 64 == 0 else {
                throw ModelError("\(file.path): width \(dim) is not an AST size (192, 384, 768: heads of 64); give the head count (--heads)")
            }
            heads = dim / 64
        }
        var config = ASTConfig(dim: dim, depth: depth, heads: heads, mlpHidden: mlpHidden, labelDim: labelDim)
        (config.fshape, config.tshape) = (patch[2], patch[3])
        let named = stridesFromName(file.lastPathComponent)
        config.fstride = options.fstride ?? named?.0 ?? 10
        config.tstride = options.tstride ?? named?.1 ?? 10
        config.inputFdim = options.melBins ?? 128
        guard config.inputFdim >= config.fshape, config.fGrid > 0, (positions - 2) % config.fGrid == 0, positions > 2 else {
            throw ModelError("\(file.path): v.pos_embed holds \(positions) positions, not 2 + a grid of \(config.fGrid) frequency patches "
                             + "(\(config.inputFdim) bins, patch \(config.fshape), stride \(config.fstride)); check --fstride and --mel-bins")
        }
        // The clip length is whatever the time grid covers: (t − 1)·stride + patch frames. AudioSet's
        // 1024-frame models give 1016, the same logits, as frames past the last patch reach no patch.
        let tGrid = (positions - 2) / config.fGrid
        config.inputTdim = (tGrid - 1) * config.tstride + config.tshape
        (config.eps, config.headEps) = (1e-6, 1e-5)   // timm's blocks and PyTorch's default for the head
        do { try config.validate() } catch { throw ModelError("\(file.path): \(error)") }
        let model = AST(config)
        do { try ASTCheckpoint.load(state, into: model) } catch { throw ModelError("\(file.path): \(error)") }
        model.eval()
        let classes = try options.labels.map { try readClassNames($0, count: labelDim) } ?? (0..<labelDim).map(String.init)
        var fbank = KaldiFbankConfig.ast
        fbank.numMelBins = config.inputFdim
        let pipeline = FeaturePipeline(kind: .kaldiFbank(fbank), targetFrames: config.inputTdim,
                                       mean: options.mean ?? ASTInputConfig.audioset.mean, std: options.std ?? ASTInputConfig.audioset.std)
        return Classifier(model: model, classes: classes, pipeline: pipeline, multiLabel: options.multiLabel ?? true)
    }

    /// AST's release names carry the strides: `audioset_10_10_0.4593.pth`, `speechcommands_10_10_0.9812.pth`.
    static func stridesFromName(_ name: String) -> (Int, Int)? {
        let parts = (name as NSString).deletingPathExtension.split(separator: "_")
        for i in parts.indices.dropLast() {
            if let f = Int(parts[i]), let t = Int(parts[i + 1]), (1...64).contains(f), (1...64).contains(t) { return (f, t) }
        }
        return nil
    }

    /// Class names from AST's class_labels_indices.csv (`index`, `display_name`) or a plain list, one per line.
    static func readClassNames(_ url: URL, count: Int) throws -> [String] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ModelError("\(url.path): cannot read class names (\(error.localizedDescription))")
        }
        var names: [String]
        let (header, rows) = CSV.records(text)
        if header.contains("display_name") {
            names = [String](repeating: "", count: rows.count)
            for (n, row) in rows.enumerated() {
                guard let i = Int(row["index"] ?? "\(n)"), names.indices.contains(i), let name = row["display_name"] else {
                    throw ModelError("\(url.path): row \(n + 2) has no usable index and display_name")
                }
                names[i] = name
            }
        } else {
            names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        guard names.count == count else {
            throw ModelError("\(url.path): \(names.count) class names for a model with \(count) outputs")
        }
        return names
    }
}

/// An SSAST encoder to fine-tune from: an Earshot pretraining run or checkpoint, or an SSAST release
/// (`SSAST-Tiny-Patch-400.pth` and its siblings: `module.v.*`, the pretext heads, and the pretraining
/// input size as `module.p_input_fdim` / `module.p_input_tdim`).
public struct PretrainedSSAST {
    public let file: URL
    /// The encoder as pretrained: width, depth, patch shape and the input size its positions cover.
    public let config: ASTConfig
    public let size: String
    public let variant: SSAST.Variant
    /// The encoder's weights under AST's keys (`v.*`).
    let encoder: [String: Tensor]

    public static func read(_ path: URL) throws -> PretrainedSSAST {
        let file = RunDirectory.checkpointFile(path)
        if Classifier.isZipArchive(file) { return try release(file) }
        let st = try SafeTensors.read(file)
        guard let c = st.metadata["ssast_config"], let config = try? JSONDecoder().decode(ASTConfig.self, from: Data(c.utf8)) else {
            throw NNError("\(file.path): not an SSAST checkpoint (no ssast_config metadata)")
        }
        let (size, variant) = try shape(of: config, file)
        return PretrainedSSAST(file: file, config: config, size: size, variant: variant,
                               encoder: st.tensors.filter { $0.key.hasPrefix("v.") })
    }

    static func release(_ file: URL) throws -> PretrainedSSAST {
        let state = ASTCheckpoint.fromOriginal(try TorchCheckpoint.read(file))
        guard state["mask_embed"] != nil || state.keys.contains(where: { $0.hasPrefix("cpredlayer.") || $0.hasPrefix("gpredlayer.") }) else {
            throw NNError("\(file.path): not an SSAST release (no mask_embed or pretext heads); a fine-tuned AST is not a starting point here")
        }
        guard let cls = state["v.cls_token"], cls.rank == 3, let patch = state["v.patch_embed.proj.weight"], patch.rank == 4,
              let pos = state["v.pos_embed"], pos.rank == 3 else {
            throw NNError("\(file.path): v.cls_token, v.patch_embed.proj.weight or v.pos_embed missing or misshapen")
        }
        let depth = Set(state.keys.compactMap { key -> Int? in
            guard key.hasPrefix("v.blocks.") else { return nil }
            return Int(key.dropFirst("v.blocks.".count).prefix { $0 != "." })
        }).count
        let dim = cls.shape[2], (fshape, tshape) = (patch.shape[2], patch.shape[3])
        // The pretraining input (128 x 1024 in every release); without it, 128 bins and what the positions hold.
        let fdim = try state["p_input_fdim"].map { Int(try $0.item()) } ?? 128
        let positions = pos.shape[1] - 2, fGrid = fdim / max(fshape, 1)
        let tdim = try state["p_input_tdim"].map { Int(try $0.item()) } ?? positions / max(fGrid, 1) * tshape
        guard let size = ["tiny": 192, "small": 384, "base": 768].first(where: { $0.value == dim })?.key else {
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
        _ = try shape(of: config, file)
        return PretrainedSSAST(file: file, config: config, size: size, variant: variant,
                               encoder: state.filter { $0.key.hasPrefix("v.") })
    }

    /// The named size and variant a pretrained encoder's config matches.
    static func shape(of c: ASTConfig, _ file: URL) throws -> (String, SSAST.Variant) {
        guard let size = ["tiny", "small", "base"].first(where: { ASTConfig.named($0, labelDim: 1).map { ($0.dim, $0.heads, $0.mlpHidden) == (c.dim, c.heads, c.mlpHidden) } ?? false }) else {
            throw NNError("\(file.path): encoder width \(c.dim) is not an SSAST size (tiny 192, small 384, base 768)")
        }
        return (size, c.fshape == 16 && c.tshape == 16 ? .patch : .frame)
    }

    /// Copies the encoder into an AST classifier of the same width, depth and patch shape, cutting or
    /// interpolating the positions from the pretraining grid to the classifier's (as SSAST fine-tuning does).
    public func initialise(_ model: AST) throws {
        let pre = config
        guard pre.dim == model.config.dim, pre.depth == model.config.depth, pre.fshape == model.config.fshape, pre.tshape == model.config.tshape else {
            throw NNError("\(file.path): pretrained encoder (dim \(pre.dim), depth \(pre.depth), patch \(pre.fshape)x\(pre.tshape)) does not match the classifier")
        }
        var weights = encoder.filter { !$0.key.hasPrefix("v.head") }
        if let pos = weights["v.pos_embed"], pos.shape[1] != model.config.patches + 2 {
            weights["v.pos_embed"] = try ASTCheckpoint.adaptPositionalEmbedding(pos, from: (pre.fGrid, pre.tGrid), to: (model.config.fGrid, model.config.tGrid))
        }
        for (k, t) in model.stateDict() where k.hasPrefix("mlp_head.") { weights[k] = t }
        do { try model.load(stateDict: weights) } catch { throw NNError("\(file.path): \(error)") }
    }
}
