import ArgumentParser
import Engine
import NN

extension Precision: ExpressibleByArgument {}

/// `--precision` of the commands that run a model: the number format of its linear layers
/// (docs/PRECISION.md). Reduced precision falls back to fp32, saying so on standard error, on a CPU
/// without the instructions.
struct PrecisionArguments: ParsableArguments {
    @Option(help: "fp32 (default), bf16 (needs avx512_bf16 or AMX) or int8 (needs VNNI): the linear layers' number format at inference. Without the instructions it says so and runs fp32.")
    var precision: Precision = .fp32

    /// Converts `model`'s linear layers; returns the precision that runs.
    @discardableResult
    func apply(to model: Module) -> Precision {
        precision == .fp32 ? .fp32 : model.convertLinearLayers(to: precision)
    }
}
