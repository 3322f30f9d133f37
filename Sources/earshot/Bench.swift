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
        subcommands: [MatmulBench.self, EncoderBench.self, AttentionBench.self, FbankBench.self, ASTBench.self, HTSATBench.self, FinetuneBench.self,
                      ScanBench.self, CNNBench.self, BackwardGemmBench.self, SearchBench.self, SSAMBABench.self])
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
    @OptionGroup var precision: PrecisionArguments

    func run() throws {
        Threading.setThreads(options.threads)
        let a = Tensor.randn([m, k]), b = Tensor.randn([n, k])
        // A bare Linear has no children to convert: wrap it directly.
        let runs = precision.precision.resolved()
        let layer = runs == .fp32 ? Linear(weight: b, bias: nil) : try LowPrecisionLinear(converting: Linear(weight: b, bias: nil), to: runs)
        let t = try medianTime(iters: options.iters, warmup: options.warmup) { _ = try GradMode.noGrad { try layer(a) } }
        printJSON([("bench", "matmul"), ("precision", runs.rawValue), ("m", m), ("k", k), ("n", n), ("threads", options.threads),
                   ("ms", t * 1e3), ("gflops", 2 * Double(m * k * n) / t / 1e9)])
    }
}

struct EncoderBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "encoder",
        abstract: "An encoder's blocks on [batch, tokens, dim] inputs (no patch embedding); --train adds backward and an AdamW step.",
        discussion: """
            --arch ast (the default): a pre-LN ViT encoder (AST's blocks). --arch mamba: SSAMBA's encoder blocks \
            (AMBAEncoder: Vim layers in forward/backward pairs with bimamba-v2 mixers, norm_f twice), 24 layers by default.
            """)
    @Option(help: "ast (pre-LN ViT blocks) or mamba (SSAMBA's Vim blocks).") var arch = "ast"
    @Option(help: "tiny, small or base: sets the width (and ast's heads); --dim and --heads otherwise.") var size: String?
    @Option var dim = 192
    @Option(help: "Blocks (default: ast 12, mamba 24).") var depth: Int?
    @Option var heads = 3
    @Option var tokens = 1212
    @Option var batch = 8
    @Flag(help: "Time a training step (forward, backward, AdamW) instead of inference.") var train = false
    @Option(name: .customLong("piece-tokens"),
            help: "mamba inference: stream each mixer in pieces of this many tokens (0 = the whole sequence at once; default: MambaMixer's, pieces of 1024 at every length).")
    var pieceTokens: Int?
    @OptionGroup var options: BenchOptions
    @OptionGroup var precision: PrecisionArguments
    @Option(name: .customLong("precision-fusions"),
            help: "bf16: the fused forms to use, comma-separated from norm, residual, mlp; all (default) or none (to measure what each pays).")
    var precisionFusions = "all"

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        var fusions: LowPrecisionLinear.Fusions = []
        for name in precisionFusions.split(separator: ",").map(String.init) {
            switch name {
            case "all": fusions.formUnion(.all)
            case "none": break
            case "norm": fusions.insert(.norm)
            case "residual": fusions.insert(.residual)
            case "mlp": fusions.insert(.mlp)
            default: throw ValidationError("--precision-fusions: '\(name)' is not one of all, none, norm, residual, mlp")
            }
        }
        LowPrecisionLinear.fusions = fusions
        if let pieceTokens {
            (MambaMixer.pieceTokens, MambaMixer.piecesAbove) = pieceTokens > 0 ? (pieceTokens, pieceTokens) : (Int.max, Int.max)
        }
        var (dim, heads) = (self.dim, self.heads)
        if let size {
            guard let w = ["tiny": (192, 3), "small": (384, 6), "base": (768, 12)][size] else {
                throw ValidationError("--size must be tiny, small or base, got \(size)")
            }
            (dim, heads) = w
        }
        let (module, forward): (Module, (Tensor) throws -> Tensor)
        let depth: Int
        switch arch {
        case "ast":
            depth = self.depth ?? 12
            let encoder = TransformerEncoder(ViTConfig(dim: dim, depth: depth, heads: heads))
            (module, forward) = (encoder, { try encoder($0) })
        case "mamba":
            depth = self.depth ?? 24
            var c = AMBAConfig(dim: dim, depth: depth, labelDim: 1)
            c.inputTdim = 16   // the patch embedding and positions are not used; keep them small
            try c.validate()
            let encoder = AMBAEncoder(c)
            (module, forward) = (encoder, { try encoder.blocks($0) })
        default:
            throw ValidationError("--arch must be ast or mamba, got \(arch)")
        }
        let x = Tensor.randn([batch, tokens, dim])
        if train && precision.precision != .fp32 { throw ValidationError("--precision applies to inference only (not --train)") }
        // After the conversion, and only when training: an optimizer holding the fp32 weights would keep
        // them alive after an inference-only conversion released them (and inflate peak_rss_mb).
        let runs = precision.apply(to: module)
        let optimizer = train ? AdamW(module.trainableParameters(), lr: 1e-4) : nil
        var t = 0.0
        if !train { module.eval() }
        // Tensor memory at the peak above what was live before (weights, input): what the pass itself
        // holds at once, without the engine's buffer pool and the process's other memory in RSS.
        let tensorBytes = try Memory.peakEngineBytes {
            if train {
                t = try medianTime(iters: options.iters, warmup: options.warmup) {
                    let loss = try forward(x).square().mean()
                    optimizer!.zeroGrad()
                    try loss.backward()
                    try optimizer!.step()
                }
            } else {
                t = try medianTime(iters: options.iters, warmup: options.warmup) {
                    _ = try GradMode.noGrad { try forward(x) }
                }
            }
        }
        var fields: [(String, Any)] = [("bench", "encoder"), ("arch", arch), ("mode", train ? "train" : "inference"),
                                       ("precision", runs.rawValue), ("dim", dim),
                                       ("depth", depth)]
        if arch == "ast" {
            // Forward FLOPs: 4 D² (qkv + proj) + 2·D·4D (MLP) multiply-adds per token, plus 2 N² D for
            // attention per sequence; a training step counts 3x forward.
            let perToken = 2.0 * Double(4 * dim * dim + 2 * dim * 4 * dim)
            let attention = 2.0 * 2.0 * Double(tokens * tokens * dim)
            let forward = Double(depth) * Double(batch) * (Double(tokens) * perToken + attention)
            let flops = train ? 3 * forward : forward
            fields += [("heads", heads), ("tokens", tokens), ("batch", batch), ("threads", options.threads),
                       ("ms_per_step", t * 1e3), ("items_per_s", Double(batch) / t), ("gflops", flops / t / 1e9)]
        } else {
            fields += [("tokens", tokens), ("batch", batch), ("threads", options.threads),
                       ("piece_tokens", tokens > MambaMixer.piecesAbove ? MambaMixer.pieceTokens : 0), ("ms_per_step", t * 1e3),
                       ("items_per_s", Double(batch) / t)]
        }
        fields += [("tokens_per_s", Double(batch * tokens) / t), ("peak_rss_mb", Memory.peakRSSMegabytes()),
                   ("peak_tensor_mb", Double(tensorBytes) / 1_048_576)]
        printJSON(fields)
    }
}

struct ScanBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scan",
        abstract: "The fused selective scan alone (Mamba's S6 with D, z gating, delta bias and softplus); --train adds its backward.")
    @Option(help: "Batch B.") var batch = 1
    @Option(help: "Sequence length L.") var length = 2048
    @Option(help: "Channels Din (d_inner: 384 in SSAMBA-tiny).") var din = 384
    @Option(help: "State size N.") var states = 16
    @Flag(help: "Time forward and backward (gradient of ones into every input).") var train = false
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        let (b, l, dIn, n) = (batch, length, din, states)
        // Δ = softplus(0.1·randn − 3) ≈ 0.05, as a fresh dt_proj gives; A = −(1…N) (S4D-real).
        let x = Tensor.randn([b, l, dIn]).requiringGrad(train), z = Tensor.randn([b, l, dIn]).requiringGrad(train)
        let delta = (Tensor.randn([b, l, dIn]) * 0.1).requiringGrad(train)
        let bias = Tensor.full([dIn], -3).requiringGrad(train)
        let a = Tensor.empty([dIn, n])
        for c in 0..<dIn { for k in 0..<n { a.data[c * n + k] = -Float(k + 1) } }
        _ = a.requiringGrad(train)
        let bm = Tensor.randn([b, l, n]).requiringGrad(train), cm = Tensor.randn([b, l, n]).requiringGrad(train)
        let d = Tensor.ones([dIn]).requiringGrad(train)
        let t = try medianTime(iters: options.iters, warmup: options.warmup) {
            let y = try Tensor.selectiveScan(x, delta: delta, a: a, b: bm, c: cm, d: d, z: z, deltaBias: bias, deltaSoftplus: true)
            if train { try y.backward(Tensor.ones(y.shape)) }
        }
        printJSON([("bench", "scan"), ("mode", train ? "train" : "inference"), ("batch", b), ("length", l), ("din", dIn),
                   ("states", n), ("threads", options.threads), ("ms_per_step", t * 1e3),
                   ("tokens_per_s", Double(b * l) / t), ("peak_rss_mb", Memory.peakRSSMegabytes())])
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
    @Option(help: "Also write the model benchmarked as ONNX here (tools/bench_torch.py ast --onnx runs it in onnxruntime).") var onnx: String?
    @Flag var train = false
    @OptionGroup var options: BenchOptions
    @OptionGroup var precision: PrecisionArguments

    func run() throws {
        Threading.setThreads(options.threads)
        Random.seed(0)
        let model = try ModelRegistry.entry(named: "ast-\(size)").classifier(ModelShape(frames: frames, outputs: labels))
        if train && precision.precision != .fp32 { throw ValidationError("--precision applies to inference only (not --train)") }
        if onnx != nil && (train || precision.precision != .fp32) { throw ValidationError("--onnx writes the fp32 inference model: not with --train or --precision") }
        let runs = precision.apply(to: model)
        let x = Tensor.randn([batch, frames, 128])
        let optimizer = train ? Adam(model.trainableParameters(), lr: 1e-5) : nil
        let t: Double
        if train {
            let targets = Tensor.zeros([batch, labels])
            t = try medianTime(iters: options.iters, warmup: options.warmup) {
                let loss = try model.logits(x).binaryCrossEntropyWithLogits(targets: targets)
                optimizer!.zeroGrad(); try loss.backward(); try optimizer!.step()
            }
        } else {
            model.eval()
            t = try medianTime(iters: options.iters, warmup: options.warmup) { _ = try GradMode.noGrad { try model.logits(x) } }
        }
        let peak = Memory.peakRSSMegabytes()   // before the export below, which copies the weights
        if let onnx { try writeBenchmarkONNX(model, pipeline: .astFbank(bins: 128, targetFrames: frames, mean: nil, std: nil), to: onnx) }
        printJSON([("bench", "ast"), ("mode", train ? "train" : "inference"), ("precision", runs.rawValue), ("size", size), ("frames", frames), ("batch", batch),
                   ("threads", options.threads), ("ms_per_step", t * 1e3),
                   ("items_per_s", Double(batch) / t), ("peak_rss_mb", peak)])
    }
}

/// Writes a benchmark's model as ONNX for `tools/bench_torch.py ... --onnx` to time in onnxruntime, after
/// the timing and the memory reading (the export copies the weights).
func writeBenchmarkONNX<M: Module & AudioClassifierModel>(_ model: M, pipeline: FeaturePipeline, to path: String) throws {
    model.eval()
    let data = try ONNXExport.model(model, classes: (0..<model.outputs).map(String.init), pipeline: pipeline, multiLabel: true)
    try AtomicFile.write(data, to: URL(fileURLWithPath: path))
}
