import Engine
import Foundation
import NN

/// A parameter-efficient transfer method and its options (PETL_AST's set; the reference's defaults).
/// Applied to a classifier by wrapping its blocks' layers by key pattern (`Module.replaceModules`), then
/// freezing what the method does not train: model code is never edited, and a checkpoint records the
/// config (`peft` metadata) so the same wrappers are rebuilt before its weights load.
public struct PEFTConfig: Codable, Sendable, Equatable, CustomStringConvertible {
    public enum Method: String, Codable, Sendable, CaseIterable {
        /// Every weight trains.
        case full
        /// Only the head (a linear probe on the frozen encoder).
        case linear
        /// Biases only (every Linear and LayerNorm bias), and the head.
        case bitfit
        /// Bottleneck adapters (`adapterKind`, `placement`).
        case adapter
        /// Conformer adapters (PETL_AST's proposal), placed as `adapter`'s.
        case conformer
        /// A mixture of `experts` bottleneck adapters (`mixture`: dense, a softmax router per token; soft,
        /// `slots` learned averages of the tokens per expert) at `mixtureLocation`.
        case moa
        /// Low-rank updates of the attention and MLP projections (`loraTargets`).
        case lora
        /// Learned keys and values in every attention layer (`prefixTokens`).
        case prefix
        /// Learned prompt tokens among the encoder's prefix tokens (`promptTokens`, `deepPrompts`).
        case prompt
    }
    public enum AdapterKind: String, Codable, Sendable, CaseIterable {
        /// One adapter at the feed-forward half of each block.
        case pfeiffer
        /// Two: at the attention half too.
        case houlsby
    }

    public var method: Method
    /// Bottleneck and LoRA inner width: round(width / reductionRate) (PETL_AST's RR; 64 by default).
    public var reductionRate = 64
    public var adapterKind = AdapterKind.pfeiffer
    public var placement = AdapterPlacement.parallel
    /// PETL_AST's `apply_residual` for sequential adapters (off; its string flag makes it always on).
    public var adapterResidual = false
    /// PETL_AST's all-zero adapters (only `up.bias` can learn) or the usual init (`BottleneckAdapter`).
    public var adapterInit = BottleneckAdapter.Initialisation.zeros
    /// Which projections LoRA adapts: q, k, v (the attention's input thirds), o (its output), fc1, fc2.
    /// PETL_AST adapts q and v (its comment says q and k).
    public var loraTargets = ["q", "v"]
    /// LoRA scale s = alpha / reductionRate as in PETL_AST; with `loraScaleByRank`, alpha / rank as in
    /// the original LoRA paper.
    public var loraAlpha: Float = 8
    public var loraScaleByRank = false
    /// Prefix tuning's N: N/2 learned keys and N/2 learned values per layer (PETL_AST: 24, so 12 + 12).
    public var prefixTokens = 24
    /// The most prefix or prompt tokens a layer takes: 54 times the longest sequence here (AST-base's 1214
    /// at 1024 frames). These weights are drawn at random when made, so a count of 10^12 was an allocation
    /// that crashed, not a refusal.
    public static let maxLearnedTokens = 1 << 16
    /// Prompt tuning: this many prompts, one set for every block (deep, PETL_AST's default) or the first only.
    public var promptTokens = 25
    /// Dense-MoA's number of adapters (PETL_AST: 7, at reduction rate 128).
    public var experts = 7
    public var deepPrompts = true
    public enum MixtureKind: String, Codable, Sendable, CaseIterable { case dense, soft }
    public enum MixtureLocation: String, Codable, Sendable, CaseIterable {
        /// Beside the attention, reading its input (PETL_AST's default, 'MHSA'); trains the norm before it.
        case attention
        /// Beside the MLP, as Pfeiffer adapters sit.
        case mlp
    }
    /// Mixture of adapters: Dense-MoA or Soft-MoA (`DenseMixture`, `SoftMixture`).
    public var mixture = MixtureKind.dense
    /// Soft-MoA: slots per expert (PETL_AST: 1) and its NORMALIZE option (off).
    public var slots = 1
    public var normalizeSlots = false
    public var mixtureLocation = MixtureLocation.attention
    /// PETL_AST adds a Pfeiffer mixture's output at the attention twice (after the attention and again
    /// after the MLP: `AdapterEcho`); false adds it once.
    public var mixtureAddsTwice = true

    public init(method: Method) { self.method = method }

    public var description: String {
        switch method {
        case .full, .linear, .bitfit: return method.rawValue
        case .moa:
            let soft = mixture == .soft ? ", \(slots) slot\(slots == 1 ? "" : "s") each\(normalizeSlots ? ", normalised" : "")" : ""
            let at = adapterKind == .houlsby ? "" : " at the \(mixtureLocation.rawValue)\(mixtureLocation == .attention && mixtureAddsTwice ? ", added twice" : "")"
            return "\(mixture.rawValue) mixture of \(experts) adapters\(soft) (\(adapterKind.rawValue)\(at), reduction rate \(reductionRate))"
        case .conformer: return "conformer adapter (\(adapterKind.rawValue), \(placement.rawValue), reduction rate \(reductionRate))"
        case .adapter: return "adapter (\(adapterKind.rawValue), \(placement.rawValue), reduction rate \(reductionRate), \(adapterInit.rawValue) init)"
        case .prompt: return "\(deepPrompts ? "deep" : "shallow") prompt tuning (\(promptTokens) prompts)"
        case .prefix: return "prefix tuning (\(prefixTokens / 2) keys and values a layer)"
        case .lora: return "LoRA on \(loraTargets.joined(separator: ",")) (reduction rate \(reductionRate), alpha \(loraAlpha))"
        }
    }

    /// Reads every field that is present and keeps the default for the rest, so configs recorded before
    /// a field existed still load; a mixture recorded before `mixtureLocation` existed sat at the MLP.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decode(Method.self, forKey: .method)
        func read<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let v = try c.decodeIfPresent(T.self, forKey: key) { value = v }
        }
        try read(.reductionRate, &reductionRate); try read(.adapterKind, &adapterKind)
        try read(.placement, &placement); try read(.adapterResidual, &adapterResidual)
        try read(.adapterInit, &adapterInit); try read(.loraTargets, &loraTargets)
        try read(.loraAlpha, &loraAlpha); try read(.loraScaleByRank, &loraScaleByRank)
        try read(.prefixTokens, &prefixTokens); try read(.promptTokens, &promptTokens)
        try read(.experts, &experts); try read(.deepPrompts, &deepPrompts)
        try read(.mixture, &mixture); try read(.slots, &slots); try read(.normalizeSlots, &normalizeSlots)
        mixtureLocation = .mlp
        try read(.mixtureLocation, &mixtureLocation); try read(.mixtureAddsTwice, &mixtureAddsTwice)
    }

    public var json: String { String(data: (try? JSONEncoder().encode(self)) ?? Data(), encoding: .utf8) ?? "{}" }

    /// The inner width of an adapter or LoRA factor for a `width`-wide encoder; throws naming the option
    /// when it leaves nothing.
    public func innerWidth(_ width: Int) throws -> Int {
        let inner = Int((Double(width) / Double(max(reductionRate, 1))).rounded())
        guard reductionRate >= 1, inner >= 1 else {
            throw ModelError("--reduction-rate \(reductionRate) leaves no bottleneck for width \(width) (at most \(2 * width - 1))")
        }
        return inner
    }
}

/// What applying a method trains: counts for the log.
public struct PEFTSummary: Sendable, CustomStringConvertible {
    public var trainable: Int, total: Int
    public var description: String {
        String(format: "%d of %d parameters trainable (%.2f%%)", trainable, total, 100 * Double(trainable) / Double(max(total, 1)))
    }
}

extension PEFTConfig {
    /// Wraps `model`'s layers for the method and freezes what it does not train. With `freezing` false
    /// only the structure is built (a checkpoint about to load into it).
    @discardableResult
    public func apply(to model: any AudioClassifierModel, freezing: Bool = true) throws -> PEFTSummary {
        let blocks = model.blockPattern
        let modules = model.namedModules()
        let attention = modules.contains { $0.1 is MultiHeadAttention }, mamba = modules.contains { $0.1 is VimBlock }
        let swin = modules.contains { $0.1 is SwinSelfAttention }
        if [.adapter, .conformer, .moa, .lora, .prefix].contains(method), !attention, !(mamba && method != .prefix),
           !(swin && [.lora, .adapter, .conformer, .moa].contains(method)) {
            let fits = mamba || swin ? "full, linear, bitfit, adapter, conformer, moa or lora" : "full, linear or bitfit"
            let what = method == .prefix ? "attention layers" : "transformer or Mamba blocks"
            throw ModelError("--peft \(method.rawValue) adapts \(what); a \(model.architecture.family) model has none: use \(fits)")
        }
        var trained: [String] = []   // key fragments the method trains, beside the head and the final norm
        switch method {
        case .full, .linear, .bitfit: break
        case .adapter, .conformer, .moa:
            let (width, inner, kind) = (model.embeddingWidth, try innerWidth(model.embeddingWidth), method)
            if kind == .moa {
                guard experts >= 1 else { throw ModelError("--experts \(experts) must be at least 1") }
                guard mixture == .dense || slots >= 1 else { throw ModelError("--slots \(slots) must be at least 1") }
            }
            let config = self
            func make() -> any UnaryLayer { config.adapterModule(width: width, inner: inner) }
            if swin {
                trained = try applySwinAdapters(to: model)
                break
            }
            if mamba && !attention {
                // A Mamba block has one sub-layer: the adapter sits beside its mixer, the norm before both trains.
                try model.replaceModules(matching: blocks, as: VimBlock.self) { _, block in AdaptedVimBlock(wrapping: block, adapter: make()) }
                trained = [".adapter.", ".norm."]
                break
            }
            if kind == .moa && adapterKind == .pfeiffer && mixtureLocation == .attention {
                // PETL_AST's default: one mixture beside the attention, reading LN₁ h; its norm trains.
                var echoes: [String: AdapterEcho] = [:]
                try model.replaceModules(matching: blocks + ".attn", as: MultiHeadAttention.self) { key, attn in
                    let echo = mixtureAddsTwice ? AdapterEcho() : nil
                    echoes[String(key.dropLast(".attn".count))] = echo
                    return AdaptedAttention(wrapping: attn, adapter: make(), placement: .parallel, echo: echo)
                }
                if mixtureAddsTwice {
                    try model.replaceModules(matching: blocks + ".mlp", as: MLP.self) { key, mlp in
                        guard let echo = echoes[String(key.dropLast(".mlp".count))] else {
                            throw ModelError("\(key): no attention mixture in its block to echo")
                        }
                        return EchoedMLP(wrapping: mlp, echo: echo)
                    }
                }
                trained = [".adapter.", ".norm1."]
                break
            }
            try model.replaceModules(matching: blocks + ".mlp", as: MLP.self) { _, mlp in
                AdaptedMLP(wrapping: mlp, adapter: make(), placement: placement, residual: adapterResidual)
            }
            trained = [".adapter.", ".norm2."]
            if adapterKind == .houlsby {
                try model.replaceModules(matching: blocks + ".attn", as: MultiHeadAttention.self) { _, attn in
                    AdaptedAttention(wrapping: attn, adapter: make(), placement: placement, residual: adapterResidual)
                }
                trained.append(".norm1.")
            }
        case .lora:
            try applyLoRA(to: model)
            trained = [".lora."]
        case .prefix:
            guard prefixTokens >= 2, prefixTokens % 2 == 0, prefixTokens <= Self.maxLearnedTokens else {
                throw ModelError("--prefix-tokens \(prefixTokens) must be an even number from 2 to \(Self.maxLearnedTokens) (half keys, half values)")
            }
            try model.replaceModules(matching: model.blockPattern + ".attn", as: MultiHeadAttention.self) { _, attn in
                PrefixAttention(wrapping: attn, tokens: prefixTokens / 2, dim: model.embeddingWidth)
            }
            trained = [".prefix_key", ".prefix_value"]
        case .prompt:
            guard let encoder = model.encoder as? any PromptableEncoder else {
                throw ModelError("--peft prompt: the \(model.architecture.family) encoder has no prompt slots")
            }
            guard promptTokens >= 1, promptTokens <= Self.maxLearnedTokens else {
                throw ModelError("--prompts \(promptTokens) must be from 1 to \(Self.maxLearnedTokens)")
            }
            encoder.usePrompts(PromptTokens(count: promptTokens, dim: model.embeddingWidth, sets: deepPrompts ? max(encoder.depth, 1) : 1))
            trained = [".prompts."]
        }
        guard freezing else { return summary(model) }
        switch method {
        case .full: model.unfreeze()
        case .linear, .adapter, .conformer, .moa, .lora, .prefix, .prompt:
            model.freeze { key, _ in
                !(model.isHead(key) || (method != .linear && (model.finalNormPrefix.map(key.hasPrefix) ?? false))
                  || trained.contains { key.contains($0) })
            }
        case .bitfit:
            model.freeze { key, _ in !(model.isHead(key) || key.hasSuffix(".bias")) }
        }
        return summary(model)
    }

    func summary(_ model: Module) -> PEFTSummary {
        PEFTSummary(trainable: model.parameterCount(trainableOnly: true), total: model.parameterCount())
    }

    /// LoRA targets in a Mamba mixer: its input and output projections and both directions' x_proj
    /// (dt_proj is read as a raw weight by the fused scan path).
    static let mambaTargets = ["in": ["mixer.in_proj"], "out": ["mixer.out_proj"], "x": ["mixer.x_proj", "mixer.x_proj_b"]]

    func applyLoRA(to model: any AudioClassifierModel) throws {
        if model.namedModules().contains(where: { $0.1 is SwinSelfAttention }) { return try applySwinLoRA(to: model) }
        if !model.namedModules().contains(where: { $0.1 is MultiHeadAttention }) { return try applyMambaLoRA(to: model) }
        let known = ["q", "k", "v", "o", "fc1", "fc2"]
        for t in loraTargets where !known.contains(t) {
            throw ModelError("--lora-targets: '\(t)' is not one of \(known.joined(separator: ", "))")
        }
        guard !loraTargets.isEmpty else { throw ModelError("--lora-targets: none given") }
        let rank = try innerWidth(model.embeddingWidth)
        let scale = loraAlpha / Float(loraScaleByRank ? rank : reductionRate)
        let width = model.embeddingWidth
        let thirds = ["q", "k", "v"].enumerated().filter { loraTargets.contains($0.element) }.map { i, _ in (i * width)..<((i + 1) * width) }
        if !thirds.isEmpty {
            try model.replaceModules(matching: model.blockPattern + ".attn.qkv", as: Linear.self) { key, layer in
                guard layer.weight.shape == [3 * width, width] else {
                    throw ModelError("\(key): a fused qkv of shape \(layer.weight.shape), expected [\(3 * width), \(width)]")
                }
                return try LoRALinear(wrapping: layer, rows: thirds, rank: rank, scale: scale)
            }
        }
        for (target, child) in [("o", "attn.proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")] where loraTargets.contains(target) {
            try model.replaceModules(matching: model.blockPattern + "." + child, as: Linear.self) { _, layer in
                try LoRALinear(wrapping: layer, rows: [0..<layer.weight.shape[0]], rank: rank, scale: scale)
            }
        }
    }
}

extension PEFTConfig {
    /// LoRA targets in a Swin block (HTSAT), under Hugging Face's names: separate query, key and value
    /// layers, the attention's output, the MLP's two layers.
    static let swinTargets = ["q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                              "o": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense"]

    /// LoRA on Swin blocks, whose width doubles stage by stage (HTSAT-tiny: 96 to 768): each layer's rank
    /// is round(its input width / reduction rate), at least 1, and the scale alpha / reduction rate (or
    /// alpha / rank with `loraScaleByRank`) as on a transformer.
    func applySwinLoRA(to model: any AudioClassifierModel) throws {
        for t in loraTargets where Self.swinTargets[t] == nil {
            throw ModelError("--lora-targets: '\(t)' is not one of \(Self.swinTargets.keys.sorted().joined(separator: ", "))")
        }
        guard !loraTargets.isEmpty else { throw ModelError("--lora-targets: none given") }
        guard reductionRate >= 1 else { throw ModelError("--reduction-rate \(reductionRate) must be at least 1") }
        for t in loraTargets {
            try model.replaceModules(matching: model.blockPattern + "." + Self.swinTargets[t]!, as: Linear.self) { _, layer in
                let rank = stageInnerWidth(layer.weight.shape[1])
                return try LoRALinear(wrapping: layer, rows: [0..<layer.weight.shape[0]], rank: rank,
                                      scale: loraAlpha / Float(loraScaleByRank ? rank : reductionRate))
            }
        }
    }

    /// The inner width of a LoRA factor or adapter on a Swin layer of `width` inputs: round(width / reduction
    /// rate), at least 1 (the stages' widths differ, so the narrow first stage keeps a rank of its own).
    func stageInnerWidth(_ width: Int) -> Int { max(1, Int((Double(width) / Double(reductionRate)).rounded())) }

    /// Bottleneck or conformer adapters on Swin blocks (`AdaptedSwinLayer`): one at each block's
    /// feed-forward half (Pfeiffer), and one at its attention half too (Houlsby), each as wide as its
    /// block, inner width round(width / reduction rate), at least 1. Returns the key fragments that
    /// train: the adapters and the norms before the layers they sit beside.
    /// The module `adapter`, `conformer` or `moa` puts at one site of a `width`-wide block: a bottleneck or
    /// conformer adapter, or a dense or soft mixture of bottlenecks, `inner` wide.
    func adapterModule(width: Int, inner: Int) -> any UnaryLayer {
        switch (method, mixture) {
        case (.conformer, _): ConformerAdapter(dim: width, bottleneck: inner)
        case (.moa, .dense): DenseMixture(dim: width, bottleneck: inner, experts: experts, initialisation: adapterInit)
        case (.moa, .soft): SoftMixture(dim: width, bottleneck: inner, experts: experts, slots: slots, normalize: normalizeSlots, initialisation: adapterInit)
        default: BottleneckAdapter(dim: width, bottleneck: inner, initialisation: adapterInit)
        }
    }

    /// Called by `apply` (which has checked the mixture's options).
    func applySwinAdapters(to model: any AudioClassifierModel) throws -> [String] {
        guard reductionRate >= 1 else { throw ModelError("--reduction-rate \(reductionRate) must be at least 1") }
        let houlsby = adapterKind == .houlsby
        // A Pfeiffer mixture sits at one place, --mixture-location (beside the attention, added twice unless
        // --mixture-once, PETL_AST's default; or at the feed-forward); every other method at the feed-forward
        // half, and Houlsby's at the attention too, wired by --adapter-placement.
        let attentionMixture = method == .moa && !houlsby && mixtureLocation == .attention
        let wiring = attentionMixture ? AdapterWiring(placement: .parallel) : AdapterWiring(placement: placement, residual: adapterResidual)
        try model.replaceModules(matching: model.blockPattern, as: SwinLayer.self) { _, block in
            let make = { adapterModule(width: block.width, inner: stageInnerWidth(block.width)) }
            if attentionMixture {
                return AdaptedSwinLayer(wrapping: block, mlpAdapter: nil, attentionAdapter: make(), wiring: wiring, echoesAttentionAdapter: mixtureAddsTwice)
            }
            return AdaptedSwinLayer(wrapping: block, mlpAdapter: make(), attentionAdapter: houlsby ? make() : nil, wiring: wiring)
        }
        if attentionMixture { return ["_adapter.", ".layernorm_before."] }
        return ["_adapter.", ".layernorm_after."] + (houlsby ? [".layernorm_before."] : [])
    }

    /// LoRA on Mamba blocks: `--lora-targets` of in, out, x (the default q,v, which a Mamba block does
    /// not have, means in,out).
    func applyMambaLoRA(to model: any AudioClassifierModel) throws {
        let targets = loraTargets == ["q", "v"] ? ["in", "out"] : loraTargets
        for t in targets where Self.mambaTargets[t] == nil {
            throw ModelError("--lora-targets: '\(t)' is not one of a Mamba block's in, out, x")
        }
        let rank = try innerWidth(model.embeddingWidth)
        let scale = loraAlpha / Float(loraScaleByRank ? rank : reductionRate)
        for t in targets {
            for child in Self.mambaTargets[t]! {
                try model.replaceModules(matching: model.blockPattern + "." + child, as: Linear.self) { _, layer in
                    try LoRALinear(wrapping: layer, rows: [0..<layer.weight.shape[0]], rank: min(rank, layer.weight.shape[1]), scale: scale)
                }
            }
        }
    }
}

extension PEFTConfig {
    /// The method a checkpoint's metadata records (`peft`), nil when it records none.
    public static func recorded(_ metadata: [String: String], file: URL) throws -> PEFTConfig? {
        guard let json = metadata["peft"] else { return nil }
        do { return try JSONDecoder().decode(PEFTConfig.self, from: Data(json.utf8)) } catch {
            throw ModelError("\(file.path): unreadable 'peft' metadata (\(error))")
        }
    }

    /// Folds every LoRA update of `model` into plain `Linear` layers (inference: the stock layers'
    /// fused paths then apply). Outputs are unchanged.
    public static func mergeLoRA(_ model: any AudioClassifierModel) {
        for child in ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"] + mambaTargets.values.flatMap({ $0 }) + swinTargets.values {
            _ = try? model.replaceModules(matching: model.blockPattern + "." + child, as: Linear.self) { _, layer in
                try (layer as? LoRALinear)?.merged() ?? layer
            }
        }
    }
}
