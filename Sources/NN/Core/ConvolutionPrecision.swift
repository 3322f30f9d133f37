import Engine

/// A module whose convolutions can run in reduced precision at inference (PANNs' convolution chain, in bf16
/// where the CPU has a bf16 kernel: `Tensor.convChainInference(_:algorithm:precision:)`). Its weights stay
/// fp32 (rounded as oneDNN reorders them for each call), so it still trains, saves and loads.
public protocol ReducedPrecisionConvolutions: AnyObject {
    var convolutionPrecision: Precision { get set }
}

extension Module {
    /// `precision` for inference wherever this model has it: its linear layers (`convertLinearLayers`) and,
    /// with the precision that runs there, its convolution chains (`convertConvolutions`). Returns the
    /// precision that runs: fp32 where the CPU lacks the instructions, said once on standard error.
    @discardableResult
    public func convertForInference(to precision: Precision, notice: ((String) -> Void)? = nil) -> Precision {
        guard precision != .fp32 else { return .fp32 }
        let runs = convertLinearLayers(to: precision, notice: notice)
        convertConvolutions(to: runs)
        return runs
    }

    /// Sets the inference precision of every module below this one (itself included) whose convolutions
    /// can take it; returns how many were set. Only bf16 is taken: int8 convolutions are not built here,
    /// so `.int8` (like `.fp32`) leaves them fp32.
    @discardableResult
    public func convertConvolutions(to precision: Precision) -> Int {
        let runs: Precision = precision == .bf16 ? .bf16 : .fp32
        var count = 0
        for (_, module) in namedModules() {
            guard let convolutions = module as? ReducedPrecisionConvolutions else { continue }
            convolutions.convolutionPrecision = runs
            count += 1
        }
        return count
    }
}
