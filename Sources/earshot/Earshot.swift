import ArgumentParser
import Engine

@main
struct Earshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "earshot",
        abstract: "Pretrain, adapt and run audio encoders on the CPU.",
        subcommands: [Demo.self, Keywords.self, ModelsCommand.self, Pretrain.self, Finetune.self, Evaluate.self, Classify.self, Tag.self, Embed.self,
                      Features.self, DatasetCommand.self, Bench.self, ProbeCommand.self, PairsCommand.self, Doctor.self,
                      ZeroShot.self, IndexCommand.self, Search.self, Convert.self])

    /// OpenBLAS picks its kernels when it loads, from a table of CPU models; on a CPU it does not know it
    /// runs SSE kernels. Restart once with OPENBLAS_CORETYPE chosen from the CPU's features (`BLASCore`).
    static func main() {
        BLASCore.reexecIfOpenBLASFallsBack()
        main(nil)
    }
}
