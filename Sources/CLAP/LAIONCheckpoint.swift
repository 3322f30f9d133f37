import Engine
import Foundation
import Models
import NN
import Text

/// LAION-CLAP's own `.pt` checkpoints (`630k-audioset-best.pt`, …): `torch.save({"state_dict": …})`
/// with DataParallel's `module.` prefix, the original HTSAT names and no config. The keys are renamed
/// to Hugging Face's (the renames of transformers' conversion script) and the config is read off the
/// weights' shapes. Fused checkpoints (`630k-audioset-fusion-best.pt`, fusion_type aff_2d) load too: their
/// `patch_embed.mel_conv2d` and `patch_embed.fusion_model` keys are HF's after the `audio_branch` rename.
public enum LAIONCheckpoint {
    /// The state under HF `ClapModel` keys and the config its shapes describe.
    ///
    /// `textHeads`: RoBERTa's head count is not in its weights; nil takes width / 64 (roberta-base: 12).
    /// The text tower is taken to be a RoBERTa (LAION's default and every released checkpoint; its BERT
    /// and BART options are not supported) with LayerNorm eps 1e-5 as roberta-base's config says.
    public static func convert(_ raw: [String: Tensor], textHeads: Int? = nil) throws -> (state: [String: Tensor], config: CLAPConfig) {
        var s: [String: Tensor] = [:]
        for (k, v) in raw {
            var key = k
            for prefix in ["state_dict.", "module."] where key.hasPrefix(prefix) { key.removeFirst(prefix.count) }
            s[key] = v
        }
        guard s["audio_branch.patch_embed.proj.weight"] != nil else {
            throw CLAPError("not a LAION-CLAP HTSAT checkpoint: no audio_branch.patch_embed.proj.weight")
        }
        let config = try inferConfig(s, textHeads: textHeads)
        var out: [String: Tensor] = [:]
        var masks: [String: Tensor] = [:]
        for (key, v) in s {
            if key.hasPrefix("audio_branch.") {
                let rest = String(key.dropFirst("audio_branch.".count))
                if ["spectrogram_extractor.", "logmel_extractor.", "tscam_conv.", "head."].contains(where: { rest.hasPrefix($0) }) { continue }
                if rest.hasSuffix(".attn_mask") { masks[rest] = v; continue }
                for (name, t) in try audioKey(rest, v) { out["audio_model.audio_encoder." + name] = t }
            } else if key.hasPrefix("text_branch.") {
                let rest = key.dropFirst("text_branch.".count)
                if rest == "embeddings.position_ids" || rest == "embeddings.token_type_ids" { continue }
                out["text_model." + rest] = v
            } else if key.hasPrefix("audio_transform.") || key.hasPrefix("text_transform.") {
                continue   // the optional --clap-mlploss heads, unused for embeddings
            } else if let m = key.firstMatch(of: /^(audio|text)_projection\.(0|2)\.(weight|bias)$/) {
                out["\(m.1)_projection.linear\(m.2 == "0" ? 1 : 2).\(m.3)"] = v
            } else if key == "logit_scale_a" || key == "logit_scale_t" {
                out[key] = v
            } else {
                throw CLAPError("unexpected key '\(key)' in a LAION-CLAP checkpoint")
            }
        }
        try checkMasks(masks, config.audio)
        return (out, config)
    }

    /// One HTSAT key under HF's names; `attn.qkv` splits into query, key and value (rows in that order).
    static func audioKey(_ rest: String, _ v: Tensor) throws -> [(String, Tensor)] {
        if rest.hasPrefix("bn0.") { return [("batch_norm." + rest.dropFirst(4), v)] }
        guard let m = rest.firstMatch(of: /^(layers\.\d+\.blocks\.\d+)\.(.+)$/) else { return [(rest, v)] }
        let (block, tail) = (String(m.1), String(m.2))
        let renames = ["norm1.": "layernorm_before.", "norm2.": "layernorm_after.", "attn.proj.": "attention.output.dense.",
                       "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
                       "attn.relative_position_index": "attention.self.relative_position_index",
                       "mlp.fc1.": "intermediate.dense.", "mlp.fc2.": "output.dense."]
        if tail.hasPrefix("attn.qkv.") {
            let kind = tail.dropFirst("attn.qkv.".count), rows = v.shape[0] / 3
            return try ["query", "key", "value"].enumerated().map { i, name in
                ("\(block).attention.self.\(name).\(kind)", try v.slice(axis: 0, start: i * rows, end: (i + 1) * rows))
            }
        }
        guard let (from, to) = renames.first(where: { tail.hasPrefix($0.key) }) else {
            throw CLAPError("unexpected HTSAT key 'audio_branch.\(rest)'")
        }
        return [("\(block).\(to)\(tail.dropFirst(from.count))", v)]
    }

    /// The shifted-window masks a checkpoint carries (`attn_mask` buffers) must be the ones the model
    /// builds: a different grid, window or shift would silently change every shifted block.
    static func checkMasks(_ masks: [String: Tensor], _ c: HTSATConfig) throws {
        let model = Random.withoutInitialisation { HTSAT(c) }
        for (key, mask) in masks {
            guard let m = key.firstMatch(of: /^layers\.(\d+)\.blocks\.(\d+)\.attn_mask$/), let s = Int(m.1), let b = Int(m.2),
                  s < model.layers.count, b < model.layers[s].blocks.count else { throw CLAPError("unexpected key 'audio_branch.\(key)'") }
            let ours = model.layers[s].blocks[b].mask
            guard let ours, ours.count == mask.count, zip(ours.toArray(), mask.toArray()).allSatisfy({ $0 == $1 }) else {
                throw CLAPError("audio_branch.\(key): the shifted-window mask is not the one of a \(model.layers[s].rows)x\(model.layers[s].cols) grid, window \(c.window), shift \(model.layers[s].blocks[b].shift)")
            }
        }
    }

    /// Which feature fusion a checkpoint's keys show (LAION's `fusion_type`): false for none, true for
    /// aff_2d (`630k-audioset-fusion-best.pt`, `630k-fusion-best.pt`: `patch_embed.mel_conv2d` and
    /// `patch_embed.fusion_model.{local_att,global_att}`); LAION's other types are refused by name:
    /// iaff_2d (a second `local_att2`/`global_att2`), daf_2d (a `mel_conv2d` and no fusion weights),
    /// the 1-d ones (`audio_branch.mel_conv1d`, `audio_branch.fusion_model`) and channel_map (`proj`
    /// over 4 channels).
    static func fusion(_ s: [String: Tensor]) throws -> Bool {
        let p = "audio_branch.patch_embed."
        func has(_ prefix: String) -> Bool { s.keys.contains { $0.hasPrefix(prefix) } }
        if has("audio_branch.mel_conv1d.") || has("audio_branch.fusion_model.") {
            throw CLAPError("a LAION-CLAP checkpoint with 1-d feature fusion (audio_branch.mel_conv1d / audio_branch.fusion_model: fusion_type daf_1d, aff_1d or iaff_1d): only aff_2d, the released fused models' type, is supported")
        }
        if let proj = s[p + "proj.weight"], proj.rank == 4, proj.shape[1] == 4 {
            throw CLAPError("a LAION-CLAP checkpoint with fusion_type channel_map (\(p)proj.weight takes 4 channels): only aff_2d is supported")
        }
        if has(p + "fusion_model.local_att2.") || has(p + "fusion_model.global_att2.") {
            throw CLAPError("a LAION-CLAP checkpoint with fusion_type iaff_2d (\(p)fusion_model.local_att2): only aff_2d is supported")
        }
        let conv = has(p + "mel_conv2d."), aff = has(p + "fusion_model.")
        if conv && !aff {
            throw CLAPError("a LAION-CLAP checkpoint with \(p)mel_conv2d but no \(p)fusion_model weights (fusion_type daf_2d?): only aff_2d is supported")
        }
        if aff && !conv { throw CLAPError("LAION-CLAP checkpoint: \(p)fusion_model without \(p)mel_conv2d.weight (missing key)") }
        return conv
    }

    /// HTSAT and RoBERTa sizes from the weights. The patch stride is taken equal to the patch size (true of
    /// every LAION HTSAT); the spectrogram side from stage 1's shifted-window mask (else 256).
    static func inferConfig(_ s: [String: Tensor], textHeads: Int?) throws -> CLAPConfig {
        func shape(_ k: String) throws -> [Int] {
            guard let t = s[k] else { throw CLAPError("LAION-CLAP checkpoint: no \(k)") }
            return t.shape
        }
        var a = HTSATConfig()
        a.melBins = try shape("audio_branch.bn0.weight")[0]
        let proj = try shape("audio_branch.patch_embed.proj.weight")
        a.patchDim = proj[0]; a.patchSize = proj[2]; a.patchStride = [proj[2], proj[3]]
        a.patchNorm = s["audio_branch.patch_embed.norm.weight"] != nil
        var depths: [Int] = [], heads: [Int] = []
        while s["audio_branch.layers.\(depths.count).blocks.0.norm1.weight"] != nil {
            let i = depths.count
            var d = 0
            while s["audio_branch.layers.\(i).blocks.\(d).norm1.weight"] != nil { d += 1 }
            depths.append(d)
            heads.append(try shape("audio_branch.layers.\(i).blocks.0.attn.relative_position_bias_table")[1])
        }
        guard !depths.isEmpty else { throw CLAPError("LAION-CLAP checkpoint: no audio_branch.layers.0.blocks.0") }
        a.depths = depths; a.heads = heads
        let tableRows = try shape("audio_branch.layers.0.blocks.0.attn.relative_position_bias_table")[0]
        let side = Int(Double(tableRows).squareRoot().rounded())
        guard side * side == tableRows, side % 2 == 1 else { throw CLAPError("relative_position_bias_table of \(tableRows) rows is not (2w − 1)²") }
        a.window = (side + 1) / 2
        a.mlpRatio = Float(try shape("audio_branch.layers.0.blocks.0.mlp.fc1.weight")[0]) / Float(a.patchDim)
        a.qkvBias = s["audio_branch.layers.0.blocks.0.attn.qkv.bias"] != nil
        a.specSize = 256
        if let (i, mask) = (0..<depths.count).lazy.compactMap({ i in s["audio_branch.layers.\(i).blocks.1.attn_mask"].map { (i, $0) } }).first {
            let perSide = Int(Double(mask.shape[0]).squareRoot().rounded())
            a.specSize = perSide * (a.window << i) * a.patchStride[0]
        }
        a.frames = min(a.specWidth, 1001)
        if try fusion(s) {
            // AFF's first 1×1 convolution takes C channels to ⌊C / r⌋; mel_conv2d is patch × 3·patch.
            let inner = try shape("audio_branch.patch_embed.fusion_model.local_att.0.weight")
            guard inner.count == 4, inner[1] == a.patchDim, inner[0] > 0, a.patchDim % inner[0] == 0 else {
                throw CLAPError("audio_branch.patch_embed.fusion_model.local_att.0.weight has shape \(inner), expected [\(a.patchDim) / r, \(a.patchDim), 1, 1]")
            }
            a.fusion = true
            a.affRatio = a.patchDim / inner[0]
            let conv = try shape("audio_branch.patch_embed.mel_conv2d.weight"), expected = [a.patchDim, 1, a.patchSize, 3 * a.patchSize]
            guard conv == expected else {
                throw CLAPError("audio_branch.patch_embed.mel_conv2d.weight has shape \(conv), expected \(expected) (patch × 3·patch)")
            }
        }
        do { try a.validate() } catch { throw CLAPError("LAION-CLAP checkpoint: \(error)") }

        let words = try shape("text_branch.embeddings.word_embeddings.weight")
        var layers = 0
        while s["text_branch.encoder.layer.\(layers).attention.self.query.weight"] != nil { layers += 1 }
        let hidden = words[1]
        let heads_ = textHeads ?? hidden / 64
        let text = BertConfig(vocabSize: words[0], hiddenSize: hidden, layers: layers, heads: heads_,
                              intermediateSize: try shape("text_branch.encoder.layer.0.intermediate.dense.weight")[0],
                              maxPositions: try shape("text_branch.embeddings.position_embeddings.weight")[0],
                              typeVocabSize: try shape("text_branch.embeddings.token_type_embeddings.weight")[0],
                              layerNormEps: 1e-5, padTokenID: 1, robertaPositions: true)
        do { try text.validate() } catch { throw CLAPError("LAION-CLAP checkpoint: \(error) (give textHeads)") }
        let dim = try shape("audio_projection.0.weight")[0]
        let config = CLAPConfig(audio: a, text: text, projectionDim: dim)
        guard try shape("audio_projection.0.weight")[1] == a.width else {
            throw CLAPError("audio_projection.0.weight takes \(try shape("audio_projection.0.weight")[1]) features, the HTSAT gives \(a.width)")
        }
        return config
    }

    /// The model of a LAION-CLAP `.pt` file, in eval mode.
    public static func load(_ file: URL, textHeads: Int? = nil) throws -> CLAPModel {
        let raw = try TorchCheckpoint.read(file)
        do { return try load(state: raw, textHeads: textHeads) } catch let e as CLAPError { throw CLAPError("\(file.path): \(e.message)") }
    }

    /// The model of a LAION-CLAP state as `TorchCheckpoint.read` gives it, in eval mode.
    public static func load(state raw: [String: Tensor], textHeads: Int? = nil) throws -> CLAPModel {
        let (state, config) = try convert(raw, textHeads: textHeads)
        return try CLAPCheckpoint.load(state, config: config)
    }
}
