import ArgumentParser
import Engine
import Foundation
import NN
import Audio
import Models

/// Benchmarks print one JSON object per line; tools/bench_torch.py runs the same workloads in PyTorch.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (JSON lines). Compare with tools/bench_torch.py on the same machine.",
        subcommands: [MatmulBench.self, EncoderBench.self, AttentionBench.self, FbankBench.self, ASTBench.self, FinetuneBench.self, CNNBench.self])
}

struct BenchOptions: ParsableArguments {
    @Option(help: "Threads for kernels and BLAS.") var threads = 2
    @Option(help: "Timed iterations (the median is reported).") var iters = 5
    @Option(help: "Untimed warm-up iterations.") var warmup = 1
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

/// Median wall time of `body` over `iters` runs after `warmup` runs.
func medianTime(iters: Int, warmup: Int, _ body: () throws -> Void) rethrows -> Double {
    for _ in 0..<warmup { try body() }
    let clock = ContinuousClock()
    var times: [Double] = []
    for _ in 0..<max(iters, 1) {
        let t0 = clock.now
        try body()
        times.append(seconds(t0.duration(to: clock.now)))
    }
    times.sort()
    return times[times.count / 2]
}

func printJSON(_ fields: [(String, Any)]) {
    let body = fields.map { key, value -> String in
        switch value {
        case let s as String: return "\"\(key)\":\"\(s)\""
        case let d as Double: return "\"\(key)\":\(String(format: "%.4g", d))"
        case let b as Bool: return "\"\(key)\":\(b)"
        default: return "\"\(key)\":\(value)"
        }
    }.joined(separator: ",")
    print("{\(body)}")
}

struct MatmulBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "matmul", abstract: "C = A Bᵀ with A [m, k], B [n, k] (a Linear layer).")
    @Option var m = 4096
    @Option var k = 768
    @Option var n = 3072
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        let a = Tensor.randn([m, k]), b = Tensor.randn([n, k])
        let t = try medianTime(iters: options.iters, warmup: options.warmup) { _ = try a.linear(weight: b, bias: nil) }
        printJSON([("bench", "matmul"), ("m", m), ("k", k), ("n", n), ("threads", options.threads),
                   ("ms", t * 1e3), ("gflops", 2 * Double(m * k * n) / t / 1e9)])
    }
}

struct EncoderBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "encoder",
        abstract: "A pre-LN ViT encoder on [batch, tokens, dim] inputs; --train adds backward and an AdamW step.")
    @Option var dim = 192
    @Option var depth = 12
    @Option var heads = 3
    @Option var tokens = 1212
    @Option var batch = 8
    @Flag(help: "Time a training step (forward, backward, AdamW) instead of inference.") var train = false
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        let encoder = TransformerEncoder(ViTConfig(dim: dim, depth: depth, heads: heads))
        let x = Tensor.randn([batch, tokens, dim])
        let optimizer = AdamW(encoder.trainableParameters(), lr: 1e-4)
        let t: Double
        if train {
            t = try medianTime(iters: options.iters, warmup: options.warmup) {
                let loss = try encoder(x).square().mean()
                optimizer.zeroGrad()
                try loss.backward()
                try optimizer.step()
            }
        } else {
            encoder.eval()
            t = try medianTime(iters: options.iters, warmup: options.warmup) {
                _ = try GradMode.noGrad { try encoder(x) }
            }
        }
        // Forward FLOPs: 4 D² (qkv + proj) + 2·D·4D (MLP) multiply-adds per token, plus 2 N² D for
        // attention per sequence; a training step counts 3x forward.
        let perToken = 2.0 * Double(4 * dim * dim + 2 * dim * 4 * dim)
        let attention = 2.0 * 2.0 * Double(tokens * tokens * dim)
        let forward = Double(depth) * Double(batch) * (Double(tokens) * perToken + attention)
        let flops = train ? 3 * forward : forward
        printJSON([("bench", "encoder"), ("mode", train ? "train" : "inference"), ("dim", dim), ("depth", depth),
                   ("heads", heads), ("tokens", tokens), ("batch", batch), ("threads", options.threads),
                   ("ms_per_step", t * 1e3), ("items_per_s", Double(batch) / t), ("gflops", flops / t / 1e9),
                   ("peak_rss_mb", Memory.peakRSSMegabytes())])
    }
}

struct AttentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "attention",
        abstract: "Fused self-attention on a packed qkv tensor [batch, tokens, 3·heads·head_dim].")
    @Option var tokens = 1212
    @Option var heads = 3
    @Option(name: .customLong("head-dim")) var headDim = 64
    @Option var batch = 8
    @Flag(help: "Time forward and backward.") var train = false
    @Flag(help: "Add a learned [heads, tokens, tokens] bias, as Swin's relative-position bias.") var bias = false
    @Option(name: .customLong("key-length"), help: "Valid keys per item (key padding); default all.") var keyLength: Int?
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        let qkv = Tensor.randn([batch, tokens, 3 * heads * headDim]).requiringGrad(train)
        let table = bias ? Tensor.randn([heads, tokens, tokens]).requiringGrad(train) : nil
        let keyLengths = keyLength.map { [Int](repeating: $0, count: batch) }
        let t = try medianTime(iters: options.iters, warmup: options.warmup) {
            let y = try qkv.packedSelfAttention(heads: heads, bias: table, keyLengths: keyLengths)
            if train { try y.backward(Tensor.ones(y.shape)) }
        }
        // QKᵀ and PV: 2·N²·d multiply-adds each per head; backward recomputes QKᵀ and adds four more.
        // Counted over all keys, also where --key-length skips some.
        let forward = 4.0 * Double(batch * heads) * Double(tokens * tokens * headDim)
        let flops = train ? forward * 3.5 : forward
        printJSON([("bench", "attention"), ("mode", train ? "train" : "inference"), ("tokens", tokens), ("heads", heads),
                   ("head_dim", headDim), ("batch", batch), ("bias", bias), ("key_length", keyLength ?? tokens),
                   ("threads", options.threads), ("ms_per_step", t * 1e3),
                   ("gflops", flops / t / 1e9), ("peak_rss_mb", Memory.peakRSSMegabytes())])
    }
}

struct ASTBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ast",
        abstract: "AST (fstride = tstride = 10) on [batch, frames, 128] features; --train adds backward and an Adam step.")
    @Option var size = "tiny"
    @Option var frames = 1024
    @Option var batch = 8
    @Option var labels = 527
    @Flag var train = false
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        let model = try ModelRegistry.entry(named: "ast-\(size)").classifier(ModelShape(frames: frames, outputs: labels))
        let x = Tensor.randn([batch, frames, 128])
        let optimizer = Adam(model.trainableParameters(), lr: 1e-5)
        let t: Double
        if train {
            let targets = Tensor.zeros([batch, labels])
            t = try medianTime(iters: options.iters, warmup: options.warmup) {
                let loss = try model.logits(x).binaryCrossEntropyWithLogits(targets: targets)
                optimizer.zeroGrad(); try loss.backward(); try optimizer.step()
            }
        } else {
            model.eval()
            t = try medianTime(iters: options.iters, warmup: options.warmup) { _ = try GradMode.noGrad { try model.logits(x) } }
        }
        printJSON([("bench", "ast"), ("mode", train ? "train" : "inference"), ("size", size), ("frames", frames), ("batch", batch),
                   ("threads", options.threads), ("ms_per_step", t * 1e3),
                   ("items_per_s", Double(batch) / t), ("peak_rss_mb", Memory.peakRSSMegabytes())])
    }
}
