import Audio
import Engine
import Foundation
import NN

/// Reading an original AST release's architecture from its weights.
public enum ASTRelease {
    /// The config of an original AST state dict (keys as `ASTCheckpoint.fromOriginal` leaves them):
    /// width, depth, patch, MLP and outputs from the shapes; strides, heads and mel bins from `shape`,
    /// the file name or AST's defaults; the clip length from the patch grid the positions hold.
    public static func config(of state: [String: Tensor], file: URL, shape: ReleaseShape) throws -> ASTConfig {
        func dims(_ key: String, rank: Int) throws -> [Int] {
            guard let t = state[key] else { throw ModelError("\(file.path): no '\(key)' (module.\(key)): not an AST state dict") }
            guard t.rank == rank else { throw ModelError("\(file.path): '\(key)' has shape \(t.shape), expected rank \(rank)") }
            return t.shape
        }
        let dim = try dims("v.cls_token", rank: 3)[2]
        let patch = try dims("v.patch_embed.proj.weight", rank: 4)
        let mlpHidden = try dims("v.blocks.0.mlp.fc1.weight", rank: 2)[0]
        let labelDim = state["mlp_head.1.weight"]?.shape.first ?? 1
        let positions = try dims("v.pos_embed", rank: 3)[1]
        let depth = blockCount(state)
        let heads: Int
        if let h = shape.heads {
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
        config.fstride = shape.fstride ?? named?.0 ?? 10
        config.tstride = shape.tstride ?? named?.1 ?? 10
        config.inputFdim = shape.melBins ?? 128
        guard config.inputFdim >= config.fshape, config.fstride > 0, positions > 2, (positions - 2) % config.fGrid == 0 else {
            throw ModelError("\(file.path): v.pos_embed holds \(positions) positions, not 2 + a grid of \(config.fGrid) frequency patches "
                             + "(\(config.inputFdim) bins, patch \(config.fshape), stride \(config.fstride)); check --fstride and --mel-bins")
        }
        // The clip length is whatever the time grid covers: (t − 1)·stride + patch frames. AudioSet's
        // 1024-frame models give 1016, the same logits, as frames past the last patch reach no patch.
        let tGrid = (positions - 2) / config.fGrid
        config.inputTdim = (tGrid - 1) * config.tstride + config.tshape
        (config.eps, config.headEps) = (1e-6, 1e-5)   // timm's blocks and PyTorch's default for the head
        do { try config.validate() } catch { throw ModelError("\(file.path): \(error)") }
        return config
    }

    /// AST's release names carry the strides: `audioset_10_10_0.4593.pth`, `speechcommands_10_10_0.9812.pth`.
    static func stridesFromName(_ name: String) -> (Int, Int)? {
        let parts = (name as NSString).deletingPathExtension.split(separator: "_")
        for i in parts.indices.dropLast() {
            if let f = Int(parts[i]), let t = Int(parts[i + 1]), (1...64).contains(f), (1...64).contains(t) { return (f, t) }
        }
        return nil
    }

    /// The normalisation statistics of the recipe a release's name says it came from: AST's Speech
    /// Commands model (`speechcommands_10_10_0.9812.pth`) was trained on its own dataset's statistics,
    /// every other release on AudioSet's.
    static func statistics(_ file: URL) -> ASTInputConfig {
        file.lastPathComponent.lowercased().hasPrefix("speechcommands") ? .speechCommands : .audioset
    }

    /// Transformer blocks in a state dict: the distinct `v.blocks.<i>.` indices.
    static func blockCount(_ state: [String: Tensor]) -> Int {
        Set(state.keys.compactMap { key -> Int? in
            guard key.hasPrefix("v.blocks.") else { return nil }
            return Int(key.dropFirst("v.blocks.".count).prefix { $0 != "." })
        }).count
    }

    /// Whether the state dict (after `fromOriginal`) is an SSAST pretraining checkpoint.
    static func isSSAST(_ state: [String: Tensor]) -> Bool {
        state["mask_embed"] != nil || state.keys.contains { $0.hasPrefix("cpredlayer.") || $0.hasPrefix("gpredlayer.") }
    }
}

extension ASTFamily {
    /// The features a Hugging Face AST folder's `preprocessor_config.json` describes (sample rate,
    /// statistics, whether it normalises; AST's AudioSet statistics where it says nothing); `mean`/`std`
    /// override its statistics.
    static func huggingFacePipeline(_ folder: URL, bins: Int, frames: Int, mean: Float? = nil, std: Float? = nil) -> FeaturePipeline {
        let pre = (try? JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("preprocessor_config.json")))) as? [String: Any] ?? [:]
        var fbank = KaldiFbankConfig.ast
        fbank.numMelBins = bins
        if let rate = (pre["sampling_rate"] as? NSNumber)?.intValue { fbank.sampleRate = rate }
        let normalise = (pre["do_normalize"] as? Bool) ?? true
        let mean = mean ?? (pre["mean"] as? NSNumber)?.floatValue ?? ASTInputConfig.audioset.mean
        let std = std ?? (pre["std"] as? NSNumber)?.floatValue ?? ASTInputConfig.audioset.std
        return FeaturePipeline(kind: .kaldiFbank(fbank), targetFrames: frames, mean: normalise ? mean : nil, std: normalise ? std : nil)
    }

    /// A Hugging Face folder: architecture and classes from config.json, features from
    /// preprocessor_config.json where present (AST's AudioSet statistics where not).
    static func huggingFace(_ folder: URL, _ options: ReleasedCheckpointOptions) throws -> LoadedClassifier {
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
        let pipeline = huggingFacePipeline(folder, bins: model.config.inputFdim, frames: model.config.inputTdim,
                                           mean: options.mean, std: options.std)
        let problem = json["problem_type"] as? String
        let multiLabel = options.multiLabel ?? (problem.map { $0 == "multi_label_classification" } ?? true)
        return LoadedClassifier(model: model, classes: classes, pipeline: pipeline, multiLabel: multiLabel)
    }

    /// An original AST release: a DataParallel state dict (`module.v.*`, `module.mlp_head.*`). The
    /// shapes give width, depth, patch size, the MLP and the classes; strides, heads and mel bins
    /// come from `options`, the file name or AST's defaults, and the clip length from the patch grid.
    static func originalAST(_ file: URL, _ options: ReleasedCheckpointOptions) throws -> LoadedClassifier {
        var state = ASTCheckpoint.fromOriginal(try TorchCheckpoint.read(file))
        return try originalAST(&state, file: file, options)
    }

    /// Builds the classifier from a parsed original release, emptying `state` as its tensors are copied.
    static func originalAST(_ state: inout [String: Tensor], file: URL, _ options: ReleasedCheckpointOptions) throws -> LoadedClassifier {
        if ASTRelease.isSSAST(state) {
            throw ModelError("\(file.path): an SSAST pretraining checkpoint has no classifier head; fine-tune it first (earshot finetune --init-from)")
        }
        guard state["mlp_head.1.weight"] != nil else { throw ModelError("\(file.path): no 'mlp_head.1.weight': an AST without its classifier head") }
        let config = try ASTRelease.config(of: state, file: file, shape: options.shape)
        let model = Random.withoutInitialisation { AST(config) }   // every weight comes from the file
        do { try ASTCheckpoint.load(consuming: &state, into: model) } catch { throw ModelError("\(file.path): \(error)") }
        model.eval()
        let classes = try options.labels.map { try readClassNames($0, count: config.labelDim) } ?? (0..<config.labelDim).map(String.init)
        let recipe = ASTRelease.statistics(file)
        let pipeline = FeaturePipeline.astFbank(bins: config.inputFdim, targetFrames: config.inputTdim,
                                                mean: options.mean ?? recipe.mean, std: options.std ?? recipe.std)
        return LoadedClassifier(model: model, classes: classes, pipeline: pipeline, multiLabel: options.multiLabel ?? true)
    }

    /// Class names from AST's class_labels_indices.csv (`index`, `display_name`) or a plain list, one per line.
    public static func readClassNames(_ url: URL, count: Int) throws -> [String] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ModelError("\(url.path): cannot read class names (\(error.localizedDescription))")
        }
        var names: [String]
        let (header, rows) = try CSV.records(text, file: url.path)
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
