import ArgumentParser
import Foundation
import Training

/// The audio pipeline end to end (to become the README's main job once its accuracy is there):
/// spoken keywords synthesised with espeak-ng, SSAST pretraining, fine-tuning, evaluation, one
/// classification.
struct Keywords: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate spoken keywords, pretrain SSAST-tiny without labels, fine-tune, evaluate and classify a clip.")

    @Option(help: "Where the generated data and runs go.") var workdir = "runs/demo"
    @Option(name: .customLong("pretrain-epochs")) var pretrainEpochs = 3
    @Option(name: .customLong("finetune-epochs")) var finetuneEpochs = 8
    @Option var seed: UInt64 = 0
    @Option(name: .customLong("shipped-encoder"), help: "Also fine-tune from this shipped encoder (earshot models); \"\" skips it.")
    var shippedEncoder = "earshot-ssast-tiny"

    func run() throws {
        var o = KeywordDemoOptions()
        (o.workdir, o.pretrainEpochs, o.finetuneEpochs, o.seed) = (URL(fileURLWithPath: workdir), pretrainEpochs, finetuneEpochs, seed)
        o.shippedEncoder = shippedEncoder.isEmpty ? nil : shippedEncoder
        try runKeywordDemo(o)
    }
}

/// The README's main job for now: a small transformer learns a generated sequence task in seconds.
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
