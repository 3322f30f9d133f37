import ArgumentParser
import Engine
import Foundation

/// `earshot bench backward-gemm`: a linear layer's two backward products (input gradient g·W, layout NN;
/// weight gradient gᵀ·x, layout TN) on OpenBLAS and on the engine's micro-kernel, at a transformer's
/// layer shapes, to choose `BackwardGemm.routeTable`.
struct BackwardGemmBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backward-gemm",
        abstract: "Linear backward products (NN input gradient, TN weight gradient): OpenBLAS against the micro-kernel, per layer shape.")
    @Option(help: "tiny (dim 192) or base (dim 768): the qkv, proj, fc1 and fc2 shapes of that ViT.") var size = "tiny"
    @Option(help: "Rows (batch x tokens); default 9696 for tiny (8 x 1212), 2416 for base (4 x 604).") var rows: Int?
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        guard let dim = ["tiny": 192, "small": 384, "base": 768][size] else { throw ValidationError("--size must be tiny, small or base, got \(size)") }
        let rows = self.rows ?? (size == "tiny" ? 9696 : 2416)
        let layers = [("qkv", 3 * dim, dim), ("proj", dim, dim), ("fc1", 4 * dim, dim), ("fc2", dim, 4 * dim)]
        for (name, outF, inF) in layers {
            let g = Tensor.randn([rows, outF]), w = Tensor.randn([outF, inF]), x = Tensor.randn([rows, inF])
            for layout in BackwardGemm.Layout.allCases {
                var fields: [(String, Any)] = [("bench", "backward-gemm"), ("layer", name), ("layout", layout.rawValue), ("rows", rows),
                                               ("out", outF), ("in", inF), ("threads", options.threads)]
                var results: [Tensor] = []
                for route in [BackwardGemm.Route.blas, .microKernel] {
                    let out = Tensor.empty(layout == .inputGradient ? [rows, inF] : [outF, inF])
                    let t = medianTime(iters: options.iters, warmup: options.warmup) {
                        switch layout {
                        case .inputGradient:
                            BackwardGemm.inputGradient(rows: rows, outFeatures: outF, inFeatures: inF, g: g.data, weight: w.data, into: out.data, route: route)
                        case .weightGradient:
                            BackwardGemm.weightGradient(rows: rows, outFeatures: outF, inFeatures: inF, g: g.data, x: x.data, into: out.data, route: route)
                        }
                    }
                    fields += [("\(route.rawValue)_ms", t * 1e3), ("\(route.rawValue)_gflops", 2 * Double(rows * outF * inF) / t / 1e9)]
                    results.append(out)
                }
                // The two routes' largest difference relative to the largest entry (both fp32).
                var diff: Float = 0, scale: Float = 0
                for i in 0..<results[0].count {
                    diff = max(diff, abs(results[0].data[i] - results[1].data[i])); scale = max(scale, abs(results[0].data[i]))
                }
                fields.append(("max_rel_diff", Double(diff / max(scale, 1e-30))))
                printJSON(fields)
            }
        }
    }
}
