import ArgumentParser
import Audio
import Engine
import Foundation
import Models
import NN

/// PANNs on log-mel batches: inference (clip scores) or a training step (BCE, backward, Adam), to compare
/// with `tools/bench_torch.py cnn` (the same network in PyTorch) on one machine.
struct CNNBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cnn",
        abstract: "PANNs Cnn6/10/14 on [batch, frames, 64] log-mel: clip inference, or --train a BCE step with Adam.")
    @Option(help: "cnn6, cnn10 or cnn14.") var model = "cnn14"
    @Option(help: "Seconds of 32 kHz audio per clip (100 frames a second).") var seconds = 10.0
    @Option var batch = 8
    @Option(help: "Output classes (AudioSet: 527).") var labels = 527
    @Flag var train = false
    @Option(help: "Also write the network benchmarked as ONNX here (tools/bench_torch.py cnn --onnx runs it in onnxruntime).") var onnx: String?
    @OptionGroup var options: BenchOptions
    @OptionGroup var precision: PrecisionArguments

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        guard let variant = PANNsConfig.Variant(rawValue: model) else { throw ValidationError("--model \(model): cnn6, cnn10 or cnn14") }
        let frames = LogMelConfig.panns.frameCount(samples: Int(seconds * 32000))
        var c = PANNsConfig(variant, classes: labels, frames: frames)
        c.specAugment = false   // the twin times the network alone
        if onnx != nil && (train || precision.precision != .fp32) { throw ValidationError("--onnx writes the fp32 inference model: not with --train or --precision") }
        let net = PANNs(c)
        let x = Tensor.randn([batch, frames, 64], mean: -40, std: 15)
        let targets = Tensor.zeros([batch, labels])
        for b in 0..<batch { targets.data[b * labels + (b * 37) % labels] = 1 }   // one positive a clip
        let t: Double
        if train {
            net.train()
            let optimizer = Adam(net.trainableParameters(), lr: 1e-4)
            t = try medianTime(iters: options.iters, warmup: options.warmup) {
                let loss = try net.logits(x).binaryCrossEntropyWithLogits(targets: targets)
                optimizer.zeroGrad(); try loss.backward(); try optimizer.step()
            }
        } else {
            net.eval()
            precision.apply(to: net)
            t = try medianTime(iters: options.iters, warmup: options.warmup) { _ = try GradMode.noGrad { try net.logits(x).sigmoid() } }
        }
        let peak = Memory.peakRSSMegabytes()   // before the export below, which copies the weights
        if let onnx { try writeBenchmarkONNX(net, pipeline: FeaturePipeline(kind: .logMel(.panns)), to: onnx) }
        printJSON([("bench", "cnn"), ("model", model), ("mode", train ? "train" : "inference"), ("precision", train ? "fp32" : precision.precision.rawValue), ("seconds", seconds), ("frames", frames),
                   ("batch", batch), ("threads", options.threads), ("parameters", net.parameterCount()),
                   ("ms_per_batch", t * 1e3), ("clips_per_s", Double(batch) / t), ("peak_rss_mb", peak),
                   ("peak_tensor_mb", Double(Memory.peakTensorBytes) / 1048576), ("pooled_mb", Double(Memory.pooledBytes) / 1048576)])
    }
}
