import ArgumentParser
import Engine
import Foundation
import Models
import NN

/// One fine-tuning step (forward, backward, Adam) of a classifier under a parameter-efficient method or
/// in full, to compare methods on one machine: step time, peak memory, trainable parameters.
struct FinetuneBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "finetune",
        abstract: "A fine-tuning step of ast-<size> under --peft (or full): step time, peak memory, trainable parameters.")
    @Option var size = "tiny"
    /// Every `finetune --peft` option, with the same defaults (an adapter's cost does not depend on its
    /// initialisation: zero weights still get their gradient products).
    @OptionGroup var method: PEFTArguments
    @Option var frames = 512
    @Option var batch = 4
    @Option var labels = 50
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        let model = try ModelRegistry.entry(named: "ast-\(size)").classifier(ModelShape(frames: frames, outputs: labels))
        let peft = try method.config() ?? PEFTConfig(method: .full)
        let summary = try peft.apply(to: model)
        model.train()
        let x = Tensor.randn([batch, frames, 128])
        let targets = (0..<batch).map { $0 % labels }
        let optimizer = Adam(model.trainableParameters(), lr: 1e-5)
        let t = try medianTime(iters: options.iters, warmup: options.warmup) {
            let loss = try model.logits(x).crossEntropy(targets: targets)
            optimizer.zeroGrad(); try loss.backward(); try optimizer.step()
        }
        printJSON([("bench", "finetune"), ("peft", peft.method.rawValue), ("method", peft.description), ("size", size), ("frames", frames), ("batch", batch),
                   ("threads", options.threads), ("trainable", summary.trainable), ("parameters", summary.total),
                   ("ms_per_step", t * 1e3), ("items_per_s", Double(batch) / t), ("peak_rss_mb", Memory.peakRSSMegabytes())])
    }
}
extension PEFTConfig.Method: ExpressibleByArgument {}
