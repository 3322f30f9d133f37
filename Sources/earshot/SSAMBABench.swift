import ArgumentParser
import Engine
import Foundation
import Models

/// A whole SSAMBA classifier at inference, for the side-by-side with onnxruntime running Earshot's own
/// export (`--onnx FILE`, then `tools/bench_torch.py ssamba --onnx FILE`): no PyTorch SSAMBA runs on a CPU
/// (mamba_ssm's CPU path is unidirectional), so the comparison is with that runtime, whose scans are
/// ONNX `Scan` loops.
struct SSAMBABench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ssamba",
        abstract: "SSAMBA classifier (16x16 patches) inference on [batch, frames, 128] features.")
    @Option var size = "tiny"
    @Option var frames = 1024
    @Option var batch = 1
    @Option var labels = 527
    @Option(help: "Also write the model benchmarked as ONNX here (tools/bench_torch.py ssamba --onnx runs it in onnxruntime).") var onnx: String?
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        let model = try ModelRegistry.entry(named: "ssamba-\(size)-patch").classifier(ModelShape(frames: frames, outputs: labels))
        model.eval()
        let x = Tensor.randn([batch, frames, 128])
        let t = try medianTime(iters: options.iters, warmup: options.warmup) { _ = try GradMode.noGrad { try model.logits(x) } }
        let peak = Memory.peakRSSMegabytes()
        if let onnx { try writeBenchmarkONNX(model, pipeline: .astFbank(bins: 128, targetFrames: frames, mean: nil, std: nil), to: onnx) }
        printJSON([("bench", "ssamba"), ("mode", "inference"), ("size", size), ("frames", frames), ("batch", batch),
                   ("threads", options.threads), ("ms_per_step", t * 1e3), ("items_per_s", Double(batch) / t), ("peak_rss_mb", peak)])
    }
}
