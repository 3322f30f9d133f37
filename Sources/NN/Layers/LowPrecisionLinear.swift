import Engine

/// A `Linear` whose inference runs in bf16 or int8 (`LowPrecisionMatmul`): the weight converted once,
/// here, the activations per call, fp32 out.
///
/// Two modes. Kept (`inferenceOnlyKey == nil`): it keeps the fp32 `weight` and `bias` under their keys, so
/// checkpoints and gradients see an ordinary Linear and a call that must record a graph runs fp32; the
/// model then holds each weight twice. Inference only (what `convertLinearLayers` does by default): the
/// fp32 weight is released, `weight` is a placeholder of the same shape in untouched pages (no memory),
/// and recording gradients, saving or loading a checkpoint are refused with an error naming the layer.
///
/// Being a subclass, it turns off the fp32 fusions that read a stock `Linear`; the encoder block and
/// attention call its own fused forms instead (LayerNorm inside the qkv product, the bf16 MLP pass).
public final class LowPrecisionLinear: Linear {
    public let precision: Precision
    let matmul: LowPrecisionMatmul
    /// The layer's key where its fp32 weight was released (inference only); nil where it is kept.
    public let inferenceOnlyKey: String?

    /// Converts `other`'s weight, keeping it; throws where oneDNN has no hardware kernel for `precision` on this CPU.
    public init(converting other: Linear, to precision: Precision) throws {
        self.precision = precision
        matmul = try LowPrecisionMatmul(weight: other.weight, bias: other.bias, precision: precision)
        inferenceOnlyKey = nil
        super.init(sharing: other)
    }

    /// Converts `other`'s weight for inference only, holding no fp32 copy of it (`key` names the layer in
    /// the refusals). The bias stays fp32 (N floats), detached from the graph.
    public init(convertingForInference other: Linear, to precision: Precision, key: String) throws {
        self.precision = precision
        matmul = try LowPrecisionMatmul(weight: other.weight, bias: other.bias, precision: precision)
        inferenceOnlyKey = key
        super.init(weight: Tensor.pageBacked(other.weight.shape), bias: other.bias?.detach())
    }

    /// The fused forms used at inference (all by default); `bench encoder --precision-fusions` turns them
    /// off one by one to measure what each pays (docs/PRECISION.md).
    public struct Fusions: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// LayerNorm applied as the qkv projection converts its rows.
        public static let norm = Fusions(rawValue: 1)
        /// The residual added by a sum post-op in the output projection.
        public static let residual = Fusions(rawValue: 2)
        /// The whole MLP half in one bf16 pass (GELU post-op, bf16 hidden activations, residual post-op).
        public static let mlp = Fusions(rawValue: 4)
        public static let all: Fusions = [.norm, .residual, .mlp]
    }
    nonisolated(unsafe) public static var fusions: Fusions = .all

    /// The oneDNN kernel that runs (`brg:avx512_core_bf16`, `brg:avx512_core_amx_bf16`, ...).
    public var implementation: String { matmul.implementation }

    /// Whether a call on `x` runs in reduced precision (not recording a graph); throws for an
    /// inference-only layer asked to record one.
    func runsReduced(_ x: Tensor) throws -> Bool {
        guard needsGraph([x, weight, bias]) else { return true }
        if let inferenceOnlyKey { throw NNError(Self.refusal(inferenceOnlyKey, precision, "record gradients")) }
        return false
    }

    static func refusal(_ key: String, _ precision: Precision, _ action: String) -> String {
        "'\(key)' was converted to \(precision.rawValue) for inference only (its fp32 weight was released): it cannot \(action); "
            + "convert with convertLinearLayers(to:keepingFP32Weights: true) to keep them"
    }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard try runsReduced(x) else { return try super.callAsFunction(x) }
        return try apply(x)
    }

    /// residual + x · Wᵀ + b; in bf16 the residual joins in the product's store (a sum post-op).
    public func callAsFunction(_ x: Tensor, adding residual: Tensor) throws -> Tensor {
        guard precision == .bf16, Self.fusions.contains(.residual), try runsReduced(x), !needsGraph([residual]) else { return try self(x) + residual }
        return try apply(x, adding: residual)
    }

    /// LN(x) · Wᵀ + b, the norm applied row by row as x is converted (a pre-LN block's qkv projection).
    func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm) throws -> Tensor {
        guard Self.fusions.contains(.norm), type(of: norm) == LayerNorm.self, !needsGraph([norm.weight, norm.bias]), try runsReduced(x) else {
            return try self(norm(x))
        }
        return try apply(x, norm: LowPrecisionMatmul.RowNorm(weight: norm.weight?.data, bias: norm.bias?.data, eps: norm.eps))
    }

    private func apply(_ x: Tensor, norm: LowPrecisionMatmul.RowNorm? = nil, adding residual: Tensor? = nil) throws -> Tensor {
        let (outF, inF) = (weight.shape[0], weight.shape[1])
        try check(x.rank >= 1 && x.shape[x.rank - 1] == inF, "linear: input shape \(x.shape) does not end in \(inF) (weight \(weight.shape))")
        let shape = Array(x.shape.dropLast()) + [outF]
        let out: Tensor
        if let residual {
            try check(residual.shape == shape, "linear: residual shape \(residual.shape), expected \(shape)")
            out = residual.copy()
        } else { out = Tensor.empty(shape) }
        try matmul.apply(rows: x.count / Swift.max(inF, 1), x: x.data, out: out.data, norm: norm, accumulate: residual != nil)
        return out
    }
}

extension ViTBlock {
    /// h + fc2(GELU(fc1(LN₂ h))) in one bf16 pass (`LowPrecisionMatmul.fusedResidualMLP`) where the MLP
    /// half is the stock one with both layers converted to bf16; nil where it does not apply.
    func lowPrecisionMLP(_ h: Tensor) throws -> Tensor? {
        guard LowPrecisionLinear.fusions.contains(.mlp), type(of: norm2) == LayerNorm.self, type(of: mlp) == MLP.self, mlp.dropout.p == 0, dropPath.isIdentity,
              let fc1 = mlp.fc1 as? LowPrecisionLinear, let fc2 = mlp.fc2 as? LowPrecisionLinear,
              fc1.precision == .bf16, fc2.precision == .bf16,
              !NN.needsGraph([norm2.weight, norm2.bias]), try fc1.runsReduced(h), try fc2.runsReduced(h) else { return nil }
        return try LowPrecisionMatmul.fusedResidualMLP(
            h, norm: LowPrecisionMatmul.RowNorm(weight: norm2.weight?.data, bias: norm2.bias?.data, eps: norm2.eps),
            fc1: fc1.matmul, fc2: fc2.matmul, approximateGELU: mlp.approximateGELU)
    }
}

extension Module {
    /// Replaces every stock `Linear` below this module (declared `@Child`) with a `LowPrecisionLinear`
    /// in `precision`, for inference. Returns the precision that runs: fp32 (nothing replaced) where this
    /// CPU lacks the instructions or oneDNN a kernel, said once on standard error (`Precision.resolved`).
    /// Layers already converted, adapters and other Linear subclasses are left as they are.
    ///
    /// By default the fp32 weights are released as each layer is converted (one copy of each weight, in
    /// the reduced precision; the model can then no longer train or be saved, and says so naming the
    /// layer). `keepingFP32Weights` keeps them: checkpoints and graph-recording calls then work as before.
    @discardableResult
    public func convertLinearLayers(to precision: Precision, keepingFP32Weights: Bool = false, on cpu: CPUFeatures = .host,
                                    notice: ((String) -> Void)? = nil) -> Precision {
        let runs = precision.resolved(on: cpu, notice: notice)
        guard runs != .fp32 else { return .fp32 }
        // Mamba's dt_proj is read as a weight by the scan, never called: converting it would change
        // nothing, and releasing its weight would hand the scan zeros.
        let readDirectly = Set(namedModules().compactMap { $0.1 as? MambaMixer }
            .flatMap { [$0.dtProj, $0.dtProjB].compactMap { $0.map(ObjectIdentifier.init) } })
        let keys = namedModules().filter { !$0.0.isEmpty && type(of: $0.1) == Linear.self && !readDirectly.contains(ObjectIdentifier($0.1)) }
            .map(\.0)
        func convert(_ key: String) throws -> LowPrecisionLinear? {
            // Looked up afresh: the module tree changes as layers are swapped.
            guard let layer = namedModules().first(where: { $0.0 == key })?.1 as? Linear else { return nil }
            return keepingFP32Weights ? try LowPrecisionLinear(converting: layer, to: runs)
                : try LowPrecisionLinear(convertingForInference: layer, to: runs, key: key)
        }
        // The first layer probes the kernel: where it fails nothing has changed and the model stays fp32.
        // After that each layer is swapped as soon as it is converted, so at most one layer is held twice.
        var failed: [String] = []
        for (index, key) in keys.enumerated() {
            do {
                guard let layer = try convert(key) else { continue }
                // A Linear held outside a @Child slot cannot be swapped, and stays fp32.
                _ = try? replaceModules(matching: key) { _, _ in layer }
                // The replaced fp32 weight went back to the engine's pool: hand it to the system now, or a
                // base model's 340 MB of them would all be resident beside the bf16 copies by the end.
                if !keepingFP32Weights { Memory.releaseCachedBuffers() }
            } catch {
                if index == 0 {
                    (notice ?? noticeOnStderr)("--precision \(precision.rawValue) is unavailable here: \(error); running fp32")
                    return .fp32
                }
                failed.append("\(key) (\(error))")
            }
        }
        if !failed.isEmpty { (notice ?? noticeOnStderr)("--precision \(precision.rawValue): these layers stay fp32: \(failed.joined(separator: ", "))") }
        return runs
    }

    /// The first layer converted for inference only (its fp32 weight released), with its refusal for `action`.
    func inferenceOnlyRefusal(_ action: String) -> String? {
        for (_, m) in namedModules() {
            if let l = m as? LowPrecisionLinear, let key = l.inferenceOnlyKey { return LowPrecisionLinear.refusal(key, l.precision, action) }
        }
        return nil
    }
}
