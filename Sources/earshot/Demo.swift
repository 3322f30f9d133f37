import ArgumentParser
import Foundation
import Training

/// The README's main job (for now): train a small transformer on a generated task and report accuracy.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a small transformer on a generated sequence task and print its held-out accuracy.")

    @Option(help: "Optimisation steps.") var steps = 300
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func run() throws {
        print("earshot demo: transformer (dim 32, depth 2, 4 heads) on a synthetic hidden-token task")
        let report = try runSyntheticDemo(steps: steps, batch: batch, seed: seed) { print($0) }
        print(String(format: "trained %d parameters for %d steps in %.1f s: final loss %.4f, held-out accuracy %.1f%%",
                     report.parameters, report.steps, report.seconds, report.finalLoss, 100 * report.accuracy))
    }
}
