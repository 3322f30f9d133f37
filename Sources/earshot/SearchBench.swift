import ArgumentParser
import Engine
import Foundation
import Inference

/// `earshot bench search`: exact inner-product search over random unit vectors (the workload of
/// tools/bench_faiss.py, faiss-cpu's IndexFlatIP): build, latency of one query and of query batches,
/// peak memory. One JSON line.
struct SearchBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Exact search index: build time, query latency (1 and batches), memory. Twin: tools/bench_faiss.py.")
    @OptionGroup var options: BenchOptions
    @Option(help: "Items in the index.") var items = 1_000_000
    @Option(help: "Embedding dimension.") var dim = 512
    @Option(help: "Results per query.") var top = 10
    @Option(help: "Query batch sizes to time besides the single query (comma-separated).") var batches = "16,100,1000"
    @Option(help: "Rows generated and added per chunk.") var chunk = 65_536

    func run() throws {
        Threading.setThreads(options.threads)
        let batchSizes = batches.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard items > 0, dim > 0, top > 0, batchSizes.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--items, --dim, --top and --batches must be positive")
        }
        var generator = RandomGenerator(seed: 0)
        let index = try EmbeddingIndex(dim: dim, modelHash: "bench")
        let clock = ContinuousClock()
        var buildSeconds = 0.0
        var start = 0
        while start < items {
            let n = min(chunk, items - start)
            let rows = unitVectors(n, dim, &generator)
            let paths = (start..<(start + n)).map(String.init)
            let t0 = clock.now
            try index.add(paths: paths, embeddings: rows, modelHash: "bench")
            buildSeconds += seconds(t0.duration(to: clock.now))
            start += n
        }
        var fields: [(String, Any)] = [("bench", "search"), ("items", items), ("dim", dim), ("top", top), ("threads", options.threads),
                                       ("build_s", buildSeconds)]
        // A fresh random query per timed run, so no run is served from a cache the previous one warmed.
        let single = try medianTime(iters: max(options.iters, 5), warmup: options.warmup) {
            _ = try index.search(queries: unitVectors(1, dim, &generator), modelHash: "bench", top: top)
        }
        fields.append(("query1_ms", single * 1000))
        for b in batchSizes {
            let queries = unitVectors(b, dim, &generator)
            let t = try medianTime(iters: options.iters, warmup: options.warmup) {
                _ = try index.search(queries: queries, modelHash: "bench", top: top)
            }
            fields.append(("batch\(b)_ms", t * 1000))
            fields.append(("batch\(b)_per_query_ms", t * 1000 / Double(b)))
        }
        fields.append(("index_mb", Double(items * dim * 4) / 1e6))
        fields.append(("peak_rss_mb", peakResidentMB()))
        printJSON(fields)
    }

    /// n Gaussian vectors scaled to unit length (uniform on the sphere), row-major.
    func unitVectors(_ n: Int, _ d: Int, _ g: inout RandomGenerator) -> [Float] {
        var out = [Float](repeating: 0, count: n * d)
        for r in 0..<n {
            var norm: Float = 0
            for j in 0..<d { let v = g.nextNormal(); out[r * d + j] = v; norm += v * v }
            let s = 1 / max(norm.squareRoot(), 1e-12)
            for j in 0..<d { out[r * d + j] *= s }
        }
        return out
    }
}

/// The process's peak resident memory (Linux ru_maxrss is in KiB).
func peakResidentMB() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    return Double(usage.ru_maxrss) * 1024 / 1e6
}
