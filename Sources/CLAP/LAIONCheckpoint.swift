import Engine
import Foundation
import Models
import NN
import Text

/// LAION-CLAP's own `.pt` checkpoints (`630k-audioset-best.pt`, …): `torch.save({"state_dict": …})`
/// with DataParallel's `module.` prefix, the original HTSAT names and no config. The keys are renamed
/// to Hugging Face's (the renames of transformers' conversion script) and the config is read off the
/// weights' shapes.
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
        if s.keys.contains(where: { $0.hasPrefix("audio_branch.patch_embed.fusion_model.") || $0.hasPrefix("audio_branch.patch_embed.mel_conv2d.") }) {
            throw CLAPError("a fused LAION-CLAP checkpoint (patch_embed.fusion_model): fusion is not supported yet, only unfused ones")
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
        do {
            let (state, config) = try convert(raw, textHeads: textHeads)
            return try CLAPCheckpoint.load(state, config: config)
        } catch let e as CLAPError { throw CLAPError("\(file.path): \(e.message)") }
    }
}
