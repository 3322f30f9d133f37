import ArgumentParser
import Engine
import Foundation
import Models
import NN

/// CLAP's audio tower, HTSAT (a Swin transformer over the log-mel folded into a 256 x 256 image), on
/// log-mel batches: the pooled embedding (inference), or a training step (a loss on it, backward,
/// AdamW). `tools/bench_torch.py htsat` runs transformers' `ClapAudioModel` on the same workload.
struct HTSATBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "htsat",
        abstract: "CLAP's HTSAT audio tower on [batch, 1001, 64] log-mel: pooled embeddings, or --train a step with AdamW.")
    @Option(help: "tiny (the released CLAPs': widths 96-768, depths 2-2-6-2) or base (128-1024, 2-2-12-2).") var size = "tiny"
    @Option var batch = 8
    @Flag var train = false
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        let config: HTSATConfig
        switch size {
        case "tiny": config = .tiny
        case "base": config = .base
        default: throw ValidationError("--size \(size): tiny or base")
        }
        let net = HTSAT(config)
        let x = Tensor.randn([batch, config.frames, config.melBins], mean: -40, std: 15)
        let t: Double
        if train {
            net.train()
            let optimizer = AdamW(net.trainableParameters(), lr: 1e-4)
            t = try medianTime(iters: options.iters, warmup: options.warmup) {
                let loss = try net.embedding(x).square().mean()
                optimizer.zeroGrad(); try loss.backward(); try optimizer.step()
            }
        } else {
            net.eval()
            t = try medianTime(iters: options.iters, warmup: options.warmup) { _ = try GradMode.noGrad { try net.embedding(x) } }
        }
        printJSON([("bench", "htsat"), ("size", size), ("mode", train ? "train" : "inference"), ("batch", batch),
                   ("threads", options.threads), ("parameters", net.parameterCount()), ("ms_per_step", t * 1e3),
                   ("items_per_s", Double(batch) / t), ("peak_rss_mb", Memory.peakRSSMegabytes())])
    }
}
