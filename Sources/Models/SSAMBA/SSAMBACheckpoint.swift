import Audio
import Engine
import Foundation
import NN

/// An SSAMBA encoder to fine-tune or embed with: a released pretraining checkpoint (`amba_tiny_300.pth`
/// and its siblings), an Earshot SSAMBA pretraining run or checkpoint (`ssamba`), or an Earshot AMBA
/// classifier (`amba`, transferred like AST's supervised starts). Its weights are under the
/// reference's keys without `module.` (`v.*`).
struct AMBAPretrained {
    let file: URL
    /// The encoder as trained: sizes, patch, strides and the input its positions cover.
    let config: AMBAConfig
    /// A self-supervised encoder (a release or an `ssamba` run), not an `amba` classifier.
    let selfSupervised: Bool
    /// What it is, for the log.
    var kind: String { selfSupervised ? "SSAMBA" : "AMBA" }
    private(set) var encoder: [String: Tensor]
    /// The features it was trained on, where its checkpoint records them (Earshot runs).
    var pipeline: FeaturePipeline?

    /// The start at `path`, nil when it is not this family's file.
    static func read(_ path: URL) throws -> AMBAPretrained? {
        guard let file = SSAMBACheckpoint.ownFile(path) else { return nil }
        if ModelFiles.isZipArchive(file) {
            guard SSAMBACheckpoint.namesMambaLayers(file) else { return nil }
            let state = SSAMBACheckpoint.unwrapped(try TorchCheckpoint.read(file))
            let config = try SSAMBACheckpoint.config(of: state, file: file)
            return AMBAPretrained(file: file, config: config, selfSupervised: true, encoder: SSAMBACheckpoint.encoderWeights(state))
        }
        let st = try SafeTensors.read(file)
        guard let arch = ModelRegistry.architecture(st.metadata), SSAMBAFamily().architectures.contains(arch.family) else { return nil }
        let config = try AMBAConfig.decode(arch.config, file.path)
        let pretraining = arch.family == SSAMBAFamily.pretrainingFamily
        var pre = AMBAPretrained(file: file, config: config, selfSupervised: pretraining,
                                 encoder: SSAMBACheckpoint.encoderWeights(st.tensors))
        pre.pipeline = try ASTFamily.recordedPipeline(st.metadata, file: file)
        return pre
    }

    /// Copies the encoder into `model` (same sizes and patch shape), its positions cut or interpolated
    /// from the encoder's grid to the model's as SSAST/SSAMBA fine-tuning does, the model's own head
    /// kept; the encoder is given up as it is copied.
    mutating func initialiseReleasing(_ model: AMBA) throws {
        let pre = config, c = model.config
        guard (pre.dim, pre.depth, pre.fshape, pre.tshape, pre.mamba) == (c.dim, c.depth, c.fshape, c.tshape, c.mamba) else {
            throw ModelError("\(file.path): pretrained encoder (dim \(pre.dim), depth \(pre.depth), patch \(pre.fshape)x\(pre.tshape)) does not match the classifier (dim \(c.dim), depth \(c.depth), patch \(c.fshape)x\(c.tshape))")
        }
        var weights = encoder
        encoder = [:]
        if let pos = weights["v.pos_embed"], pos.shape[1] != c.patches + 1 {
            weights["v.pos_embed"] = try ASTCheckpoint.adaptPositionalEmbedding(pos, from: (pre.fGrid, pre.tGrid), to: (c.fGrid, c.tGrid),
                                                                                prefixTokens: 1)
        }
        for (k, t) in model.stateDict() where model.isHead(k) { weights[k] = t }
        do { try model.load(consuming: &weights) } catch { throw ModelError("\(file.path): \(error)") }
    }
}

/// Reading SSAMBA's released checkpoints: DataParallel state dicts of the pretraining model
/// (`module.v.*`, `module.cpredlayer.*`, `module.gpredlayer.*`, `module.mask_embed`,
/// `module.p_input_fdim`/`tdim`; no classifier head).
public enum SSAMBACheckpoint {
    /// The key every SSAMBA checkpoint has and no other family's does.
    static let marker = "v.layers.0.mixer.A_log"

    /// Whether a `torch.save` archive names `marker`: its pickle (data.pkl, written first and stored
    /// uncompressed) holds every key as UTF-8 text, so the first megabytes say it without reading the
    /// tensors. A false positive is caught when the state dict is read.
    static func namesMambaLayers(_ file: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: file) else { return false }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 8 << 20) else { return false }
        return head.range(of: Data(marker.utf8)) != nil
    }

    /// The file `path` stands for, where it could be this family's: a run folder's best checkpoint or
    /// a file; nil for a folder without one (a Hugging Face model) and for a missing file.
    static func ownFile(_ path: URL) -> URL? {
        let file = ModelFiles.checkpointFile(path)
        return FileManager.default.fileExists(atPath: file.path) ? (try? ModelFiles.modelFile(path)) : nil
    }

    /// The state dict without DataParallel's `module.` prefix.
    public static func unwrapped(_ state: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (key, t) in state { out[key.hasPrefix("module.") ? String(key.dropFirst(7)) : key] = t }
        return out
    }

    /// The encoder's weights (`v.*`) without Vim's unused ImageNet head (`v.head.*`).
    static func encoderWeights(_ state: [String: Tensor]) -> [String: Tensor] {
        state.filter { $0.key.hasPrefix("v.") && !$0.key.hasPrefix("v.head.") }
    }

    /// The config of a released state dict (after `unwrapped`): sizes from the shapes; the pretraining
    /// input from `p_input_fdim`/`p_input_tdim` (else 128 bins and the clip the positions cover);
    /// stride = patch shape, as in every pretraining.
    public static func config(of state: [String: Tensor], file: URL) throws -> AMBAConfig {
        func dims(_ key: String, rank: Int) throws -> [Int] {
            guard let t = state[key] else { throw ModelError("\(file.path): no '\(key)' (module.\(key)): not an SSAMBA state dict") }
            guard t.rank == rank else { throw ModelError("\(file.path): '\(key)' has shape \(t.shape), expected rank \(rank)") }
            return t.shape
        }
        let dim = try dims("v.cls_token", rank: 3)[2]
        let patch = try dims("v.patch_embed.proj.weight", rank: 4)
        let aLog = try dims("v.layers.0.mixer.A_log", rank: 2)
        let dtRank = try dims("v.layers.0.mixer.dt_proj.weight", rank: 2)[1]
        let kernel = try dims("v.layers.0.mixer.conv1d.weight", rank: 3)[2]
        let positions = try dims("v.pos_embed", rank: 3)[1] - 1
        guard state["v.layers.0.mixer.conv1d_b.weight"] != nil, state["v.layers.0.mixer.A_b_log"] != nil else {
            throw ModelError("\(file.path): the Mamba layers have no backward branch (conv1d_b, A_b_log): not bimamba v2, which SSAMBA uses")
        }
        guard dim > 0, aLog[0] % dim == 0, patch[1] == 1 else {
            throw ModelError("\(file.path): d_inner \(aLog[0]) is not a multiple of the width \(dim), or the patch conv takes \(patch[1]) channels (1 expected)")
        }
        var c = AMBAConfig(dim: dim, depth: layerCount(state), labelDim: 1)
        (c.stateSize, c.expand, c.dtRank, c.convKernel) = (aLog[1], aLog[0] / dim, dtRank, kernel)
        (c.fshape, c.tshape, c.fstride, c.tstride) = (patch[2], patch[3], patch[2], patch[3])
        c.inputFdim = try state["p_input_fdim"].map { Int(try $0.item()) } ?? 128
        let fGrid = c.inputFdim / max(c.fshape, 1)
        c.inputTdim = try state["p_input_tdim"].map { Int(try $0.item()) } ?? positions / max(fGrid, 1) * c.tshape
        do { try c.validate() } catch { throw ModelError("\(file.path): \(error)") }
        guard c.patches == positions else {
            throw ModelError("\(file.path): patch \(c.fshape)x\(c.tshape) with \(positions) positions does not fit a \(c.inputFdim) x \(c.inputTdim) input")
        }
        return c
    }

    /// Vim layers in a state dict: the distinct `v.layers.<i>.` indices.
    static func layerCount(_ state: [String: Tensor]) -> Int {
        Set(state.keys.compactMap { key -> Int? in
            guard key.hasPrefix("v.layers.") else { return nil }
            return Int(key.dropFirst("v.layers.".count).prefix { $0 != "." })
        }).count
    }
}
