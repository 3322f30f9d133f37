import Engine
import Foundation

/// Audio Spectrogram Transformer configuration (YuanGongND/ast, HF `ASTConfig`).
public struct ASTConfig: CheckpointConfig, Sendable, Equatable {
    public static let configName = "AST"
    public enum Pooling: String, Codable, Sendable {
        /// (h[cls] + h[dist]) / 2 — AST and HF `ASTForAudioClassification`.
        case clsPair
        /// Mean of the patch tokens — SSAST `ft_avgtok`, PETL.
        case meanTokens
    }

    public var dim: Int
    public var depth: Int
    public var heads: Int
    public var mlpHidden: Int
    public var labelDim: Int
    public var inputFdim = 128
    public var inputTdim = 1024
    public var fshape = 16, tshape = 16
    public var fstride = 10, tstride = 10
    /// Encoder LayerNorm eps: 1e-6 in timm (original AST), 1e-12 in Hugging Face.
    public var eps: Float = 1e-6
    /// Head LayerNorm eps: 1e-5 (PyTorch default) in the original, 1e-12 in Hugging Face.
    public var headEps: Float = 1e-5
    public var pooling: Pooling = .clsPair
    public var dropPath: Float = 0

    public init(dim: Int, depth: Int, heads: Int, mlpHidden: Int, labelDim: Int) {
        self.dim = dim; self.depth = depth; self.heads = heads; self.mlpHidden = mlpHidden; self.labelDim = labelDim
    }

    /// The DeiT sizes AST and SSAST use.
    public static func named(_ size: String, labelDim: Int) -> ASTConfig? {
        switch size {
        case "tiny": ASTConfig(dim: 192, depth: 12, heads: 3, mlpHidden: 768, labelDim: labelDim)
        case "small": ASTConfig(dim: 384, depth: 12, heads: 6, mlpHidden: 1536, labelDim: labelDim)
        case "base": ASTConfig(dim: 768, depth: 12, heads: 12, mlpHidden: 3072, labelDim: labelDim)
        default: nil
        }
    }

    /// Throws, naming the field, when the shapes cannot make a model: a clip shorter than a patch, a
    /// width that does not split into the heads, no blocks. (A checkpoint's metadata or the command
    /// line can say anything; the model's kernels assume these hold.)
    public func validate() throws {
        func need(_ ok: Bool, _ what: String) throws { if !ok { throw ModelError("model config: \(what)") } }
        try need(dim > 0 && heads > 0 && dim % heads == 0, "width \(dim) does not split into \(heads) heads")
        try need(depth >= 1, "depth \(depth) must be at least 1")
        try need(mlpHidden > 0, "MLP width \(mlpHidden) must be positive")
        try need(labelDim >= 1, "\(labelDim) outputs (at least 1)")
        try need(fshape > 0 && tshape > 0 && fstride > 0 && tstride > 0, "patch \(fshape)x\(tshape) and strides \(fstride)x\(tstride) must be positive")
        try need(inputFdim >= fshape, "\(inputFdim) mel bins are fewer than the patch height \(fshape)")
        try need(inputTdim >= tshape, "clips of \(inputTdim) frames are shorter than the patch width \(tshape) (target length)")
        if let what = ConfigLimits.oversized([("the positional table", [fGrid, tGrid, dim]), ("the MLP", [dim, mlpHidden]),
                                              ("the blocks' attention", [depth, 4, dim, dim]), ("the blocks' MLPs", [depth, 2, dim, mlpHidden]),
                                              ("the patch embedding", [dim, fshape, tshape]), ("the head", [dim, labelDim])]) {
            throw ModelError("model config: \(what)")
        }
    }



    public var fGrid: Int { (inputFdim - fshape) / fstride + 1 }
    public var tGrid: Int { (inputTdim - tshape) / tstride + 1 }
    public var patches: Int { fGrid * tGrid }

    /// Reads a Hugging Face `config.json` of `ASTForAudioClassification`.
    public static func fromHuggingFace(_ url: URL) throws -> ASTConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw ModelError("\(url.path): cannot read config (\(error.localizedDescription))") }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ModelError("\(url.path): not a JSON object")
        }
        // Another Hugging Face model (a ClapModel folder given to finetune) would fail on a missing field.
        if let type = json["model_type"] as? String, type != "audio-spectrogram-transformer" {
            throw ModelError("\(url.path): model_type '\(type)' is not an Audio Spectrogram Transformer (audio-spectrogram-transformer)")
        }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = json[key] as? NSNumber { return v.intValue }
            if let fallback { return fallback }
            throw ModelError("\(url.path): missing integer field '\(key)'")
        }
        var labels = (json["id2label"] as? [String: Any])?.count ?? 0
        if labels == 0 { labels = try int("num_labels", 2) }
        var c = ASTConfig(dim: try int("hidden_size"), depth: try int("num_hidden_layers"), heads: try int("num_attention_heads"),
                          mlpHidden: try int("intermediate_size"), labelDim: labels)
        c.inputFdim = try int("num_mel_bins", 128)
        c.inputTdim = try int("max_length", 1024)
        c.fshape = try int("patch_size", 16); c.tshape = c.fshape
        c.fstride = try int("frequency_stride", 10); c.tstride = try int("time_stride", 10)
        let eps = (json["layer_norm_eps"] as? NSNumber)?.floatValue ?? 1e-12
        c.eps = eps; c.headEps = eps
        if let act = json["hidden_act"] as? String, act != "gelu" {
            throw ModelError("\(url.path): hidden_act '\(act)' is not supported (only exact 'gelu')")
        }
        return c
    }
}

public struct ModelError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
