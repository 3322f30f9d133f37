import Engine

/// A `Linear` whose inference runs in bf16 or int8 (`LowPrecisionMatmul`): the weight converted once,
/// here, the activations per call, fp32 out. It keeps the fp32 `weight` and `bias` under their keys
/// (checkpoints and gradients see an ordinary Linear); a call that must record a graph runs fp32.
///
/// Being a subclass, it turns off the fp32 fusions that read a stock `Linear` (LayerNorm inside the qkv
/// GEMM, the fused MLP): those layers are then called one by one, each product in reduced precision.
public final class LowPrecisionLinear: Linear {
    public let precision: Precision
    let matmul: LowPrecisionMatmul

    /// Converts `other`'s weight; throws where oneDNN has no hardware kernel for `precision` on this CPU.
    public init(converting other: Linear, to precision: Precision) throws {
        self.precision = precision
        matmul = try LowPrecisionMatmul(weight: other.weight, bias: other.bias, precision: precision)
        super.init(sharing: other)
    }

    /// The oneDNN kernel that runs (`brg:avx512_core_bf16`, `brg:avx512_core_amx_bf16`, ...).
    public var implementation: String { matmul.implementation }

    public override func callAsFunction(_ x: Tensor) throws -> Tensor {
        if needsGraph([x, weight, bias]) { return try super.callAsFunction(x) }
        let (outF, inF) = (weight.shape[0], weight.shape[1])
        try check(x.rank >= 1 && x.shape[x.rank - 1] == inF, "linear: input shape \(x.shape) does not end in \(inF) (weight \(weight.shape))")
        let out = Tensor.empty(Array(x.shape.dropLast()) + [outF])
        try matmul.apply(rows: x.count / Swift.max(inF, 1), x: x.data, out: out.data)
        return out
    }
}

extension Module {
    /// Replaces every stock `Linear` below this module (declared `@Child`) with a `LowPrecisionLinear`
    /// in `precision`, for inference. Returns the precision that runs: fp32 (nothing replaced) where this
    /// CPU lacks the instructions or oneDNN a kernel, said once on standard error (`Precision.resolved`).
    /// Layers already converted, adapters and other Linear subclasses are left as they are.
    @discardableResult
    public func convertLinearLayers(to precision: Precision, on cpu: CPUFeatures = .host,
                                    notice: ((String) -> Void)? = nil) -> Precision {
        let runs = precision.resolved(on: cpu, notice: notice)
        guard runs != .fp32 else { return .fp32 }
        let keys = namedModules().filter { !$0.0.isEmpty && type(of: $0.1) == Linear.self }
        // Every weight converted before any layer is swapped: a kernel that fails leaves the model all fp32.
        var converted: [String: LowPrecisionLinear] = [:]
        do {
            for (key, module) in keys { converted[key] = try LowPrecisionLinear(converting: module as! Linear, to: runs) }
        } catch {
            (notice ?? noticeOnStderr)("--precision \(precision.rawValue) is unavailable here: \(error); running fp32")
            return .fp32
        }
        for (key, layer) in converted {
            // A Linear held outside a @Child slot cannot be swapped, and stays fp32.
            _ = try? replaceModules(matching: key) { _, _ in layer }
        }
        return runs
    }
}
