import ArgumentParser
import CLAP
import Engine
import Foundation
// C's `stdout` is a mutable global, which Swift 6 refuses to name unless its module (SwiftGlibc, the
// clang module under Glibc) is imported @preconcurrency; `main` touches it once, before any thread starts.
#if canImport(SwiftGlibc)
@preconcurrency import SwiftGlibc
#endif

@main
struct Earshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "earshot",
        abstract: "Pretrain, adapt and run audio encoders on the CPU.",
        subcommands: [Demo.self, Keywords.self, ModelsCommand.self, Pretrain.self, Finetune.self, Evaluate.self, Classify.self, Tag.self, Embed.self,
                      Features.self, DatasetCommand.self, Bench.self, ProbeCommand.self, PairsCommand.self, Doctor.self,
                      ZeroShot.self, IndexCommand.self, Search.self, Convert.self, Export.self])

    /// OpenBLAS picks its kernels when it loads, from a table of CPU models; on a CPU it does not know it
    /// runs SSE kernels. Restart once with OPENBLAS_CORETYPE chosen from the CPU's features (`BLASCore`).
    static func main() {
        BLASCore.reexecIfOpenBLASFallsBack()
        // Line-buffered even into a file: a run logged with `> run.log` shows each epoch as it ends, and a
        // killed run's log keeps every line it printed (block buffering held up to 4 KB back).
        #if canImport(SwiftGlibc)
        setvbuf(stdout, nil, _IOLBF, 0)
        #endif
        // A released CLAP is a fine-tuning start and an encoder like any model (its loaders live in CLAP).
        CLAPAudioFamily.register()
        main(nil)
    }
}
