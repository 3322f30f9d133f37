import Engine
import Foundation
import NN

/// Loading AST weights from the released formats onto `AST`'s keys.
public enum ASTCheckpoint {
    /// Hugging Face `ASTForAudioClassification` keys outside the layers (the model prefix
    /// `audio_spectrogram_transformer.` dropped; the classifier has none) → original AST keys.
    static let huggingFaceKeys: [String: String] = [
        "embeddings.cls_token": "v.cls_token", "embeddings.distillation_token": "v.dist_token",
        "embeddings.position_embeddings": "v.pos_embed",
        "embeddings.patch_embeddings.projection.weight": "v.patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "v.patch_embed.proj.bias",
        "layernorm.weight": "v.norm.weight", "layernorm.bias": "v.norm.bias",
        "classifier.layernorm.weight": "mlp_head.0.weight", "classifier.layernorm.bias": "mlp_head.0.bias",
        "classifier.dense.weight": "mlp_head.1.weight", "classifier.dense.bias": "mlp_head.1.bias",
    ]

    /// A Hugging Face layer's keys (after `encoder.layer.<i>.`) → an original block's (after `v.blocks.<i>.`),
    /// query/key/value aside (fused into `attn.qkv`).
    static let huggingFaceLayerKeys: [String: String] = [
        "attention.output.dense.weight": "attn.proj.weight", "attention.output.dense.bias": "attn.proj.bias",
        "layernorm_before.weight": "norm1.weight", "layernorm_before.bias": "norm1.bias",
        "layernorm_after.weight": "norm2.weight", "layernorm_after.bias": "norm2.bias",
        "intermediate.dense.weight": "mlp.fc1.weight", "intermediate.dense.bias": "mlp.fc1.bias",
        "output.dense.weight": "mlp.fc2.weight", "output.dense.bias": "mlp.fc2.bias",
    ]

    /// Maps Hugging Face `ASTForAudioClassification` keys to the original ones, fusing the separate
    /// query/key/value projections into `qkv` (q, k, v order, as the HF converter split them).
    public static func fromHuggingFace(_ hf: [String: Tensor]) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        var qkv: [Int: [String: Tensor]] = [:]
        let prefix = "audio_spectrogram_transformer."
        for (key, t) in hf {
            var k = key
            if k.hasPrefix(prefix) { k.removeFirst(prefix.count) }
            if k.hasPrefix("encoder.layer.") {
                let rest = k.dropFirst("encoder.layer.".count)
                guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) else { throw ModelError("unexpected key '\(key)'") }
                let tail = String(rest[rest.index(after: dot)...])
                if tail.hasPrefix("attention.attention.") {
                    qkv[i, default: [:]][String(tail.dropFirst("attention.attention.".count))] = t
                } else if let m = huggingFaceLayerKeys[tail] {
                    out["v.blocks.\(i).\(m)"] = t
                } else { throw ModelError("unexpected key '\(key)'") }
                continue
            }
            guard let m = huggingFaceKeys[k] else { throw ModelError("unexpected key '\(key)'") }
            out[m] = t
        }
        for (i, parts) in qkv {
            for kind in ["weight", "bias"] {
                guard let q = parts["query.\(kind)"], let k = parts["key.\(kind)"], let v = parts["value.\(kind)"] else {
                    throw ModelError("layer \(i): query/key/value \(kind) incomplete")
                }
                out["v.blocks.\(i).attn.qkv.\(kind)"] = try stackRows([q, k, v], name: "layer \(i) query/key/value \(kind)")
            }
        }
        return out
    }

    /// `Tensor.concat(parts, axis: 0)` into a page-backed tensor, so that, like the tensors it is built
    /// from, it goes back to the system rather than the buffer pool once a model has copied it.
    static func stackRows(_ parts: [Tensor], name: String) throws -> Tensor {
        let rest = Array(parts[0].shape.dropFirst())
        guard parts.allSatisfy({ $0.rank == parts[0].rank && Array($0.shape.dropFirst()) == rest }) else {
            throw ModelError("\(name): shapes \(parts.map(\.shape)) cannot be stacked")
        }
        let out = Tensor.pageBacked([parts.reduce(0) { $0 + $1.shape[0] }] + rest)
        var at = 0
        for p in parts { (out.data + at).update(from: p.data, count: p.count); at += p.count }
        return out
    }

    /// Original AST state dicts: strips DataParallel's `module.` prefix and drops timm's unused
    /// ImageNet heads (`v.head`, `v.head_dist`).
    public static func fromOriginal(_ state: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (key, t) in state {
            let k = key.hasPrefix("module.") ? String(key.dropFirst(7)) : key
            if k.hasPrefix("v.head.") || k.hasPrefix("v.head_dist.") { continue }
            out[k] = t
        }
        return out
    }

    /// Adapts a positional embedding [1, p + fs·ts, D] from a (fs, ts) patch grid to (f, t) exactly as
    /// the original AST does (ast_models.py): per axis, centre-cut when the target is smaller, bilinear
    /// interpolation (align_corners=False) when larger; the p prefix-token positions are kept (AST's
    /// cls and distillation tokens: 2; SSAMBA's cls token: 1).
    public static func adaptPositionalEmbedding(_ pos: Tensor, from source: (Int, Int), to target: (Int, Int),
                                                prefixTokens p: Int = 2) throws -> Tensor {
        let (fs, ts) = source, (f, t) = target
        guard pos.rank == 3, pos.shape[0] == 1, pos.shape[1] == p + fs * ts else {
            throw ModelError("pos_embed \(pos.shape) does not hold \(p) + \(fs)x\(ts) positions")
        }
        let d = pos.shape[2]
        return try GradMode.noGrad {
            let tokens = try pos.slice(axis: 1, start: 0, end: p)
            var grid = try pos.slice(axis: 1, start: p).transpose(1, 2).reshape([1, d, fs, ts])
            if t < ts {
                grid = try grid.slice(axis: 3, start: ts / 2 - t / 2, end: ts / 2 - t / 2 + t)
            } else if t > ts {
                grid = try grid.interpolate(size: (fs, t), mode: .bilinear)
            }
            if f < fs {
                grid = try grid.slice(axis: 2, start: fs / 2 - f / 2, end: fs / 2 - f / 2 + f)
            } else if f > fs {
                grid = try grid.interpolate(size: (f, t), mode: .bilinear)
            }
            let patches = try grid.reshape([1, d, f * t]).transpose(1, 2)
            return try Tensor.concat([tokens, patches], axis: 1)
        }
    }

    /// Loads `state` (original keys) into `model`, adapting the positional embedding when it was
    /// trained on another grid (`sourceGrid`, e.g. (12, 101) for the AudioSet checkpoints).
    public static func load(_ state: [String: Tensor], into model: AST, sourceGrid: (Int, Int)? = nil) throws {
        var s = state
        try load(consuming: &s, into: model, sourceGrid: sourceGrid)
    }

    /// `load(_:into:sourceGrid:)` that empties `state` as it goes (`Module.load(consuming:)`), so a
    /// released checkpoint is not resident twice while it loads (a base AST: 344 MB, not 688).
    public static func load(consuming state: inout [String: Tensor], into model: AST, sourceGrid: (Int, Int)? = nil) throws {
        let c = model.config
        if let pos = state["v.pos_embed"], pos.shape[1] != c.patches + 2 {
            guard let grid = sourceGrid else {
                throw ModelError("v.pos_embed has \(pos.shape[1]) positions but the model needs \(c.patches + 2); give the checkpoint's patch grid to adapt it")
            }
            state["v.pos_embed"] = try adaptPositionalEmbedding(pos, from: grid, to: (c.fGrid, c.tGrid))
        }
        try model.load(consuming: &state)
    }

    /// The weight files a Hugging Face folder may hold, preferred first: safetensors, then the older
    /// `torch.save` of the state dict (read by the restricted unpickler, `TorchCheckpoint`).
    static let huggingFaceWeightFiles = ["model.safetensors", "pytorch_model.bin"]

    /// The weights file of a Hugging Face model folder, nil when `url` is not one.
    public static func huggingFaceWeights(in url: URL) -> URL? {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else { return nil }
        return huggingFaceWeightFiles.map { url.appendingPathComponent($0) }.first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Whether `url` is a Hugging Face model folder (one holding model.safetensors or pytorch_model.bin).
    public static func isHuggingFaceFolder(_ url: URL) -> Bool { huggingFaceWeights(in: url) != nil }

    /// The state dict of a Hugging Face folder's weights file, under AST's keys.
    public static func readHuggingFace(_ folder: URL) throws -> (file: URL, state: [String: Tensor]) {
        guard let file = huggingFaceWeights(in: folder) else {
            throw ModelError("\(folder.path): no \(huggingFaceWeightFiles.joined(separator: " or ")) in the folder")
        }
        let raw = file.pathExtension == "safetensors" ? try SafeTensors.read(file).tensors : try TorchCheckpoint.read(file)
        do { return (file, try fromHuggingFace(raw)) } catch { throw ModelError("\(file.path): \(error)") }
    }

    /// Loads a Hugging Face folder (config.json + weights). `inputTdim` overrides the clip
    /// length; the positional embedding is then cut or interpolated like the original AST.
    public static func loadHuggingFace(_ folder: URL, inputTdim: Int? = nil) throws -> AST {
        let hfConfig = try ASTConfig.fromHuggingFace(folder.appendingPathComponent("config.json"))
        var config = hfConfig
        if let inputTdim { config.inputTdim = inputTdim }
        do { try config.validate() } catch { throw ModelError("\(folder.path): \(error)") }
        let model = Random.withoutInitialisation { AST(config) }   // every weight comes from the file
        var (file, state) = try readHuggingFace(folder)
        do { try load(consuming: &state, into: model, sourceGrid: (hfConfig.fGrid, hfConfig.tGrid)) } catch { throw ModelError("\(file.path): \(error)") }
        model.eval()
        return model
    }
}
