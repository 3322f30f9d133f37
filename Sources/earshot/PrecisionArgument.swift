import ArgumentParser
import Engine
import NN

extension Precision: ExpressibleByArgument {}

/// `--precision` of the commands that run a model: the number format of its linear layers
/// (docs/PRECISION.md). Reduced precision falls back to fp32, saying so on standard error, on a CPU
/// without the instructions.
struct PrecisionArguments: ParsableArguments {
    @Option(help: "fp32 (default), bf16 (needs avx512_bf16 or AMX) or int8 (needs VNNI): the linear layers' number format at inference (bf16 also PANNs' convolutions). Without the instructions it says so and runs fp32.")
    var precision: Precision = .fp32

    /// Converts `model`'s linear layers (and with bf16 its convolution chains, PANNs'); returns the precision that runs.
    @discardableResult
    func apply(to model: Module) -> Precision {
        model.convertForInference(to: precision)
    }
}
