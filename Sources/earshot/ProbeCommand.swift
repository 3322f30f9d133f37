import ArgumentParser
import Audio
import Foundation
import Inference

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "How much an encoder's clip embeddings know: a linear probe and kNN per dataset, test accuracy and macro-F1 with standard errors.",
        discussion: """
        Every clip is embedded whole (windows averaged, as embed does) and cached by its bytes and the model. Per dataset: \
        an L2-regularised multinomial logistic regression (L-BFGS on standardised features, λ chosen by cross-validation \
        on the training split) and a cosine k-nearest-neighbour vote (k chosen likewise) are scored once on the test clips. \
        Splits: the dataset's folds as k-fold cross-validation (ESC-10), else its test split (FSDD's official one), else \
        20% held out; cross-validation inside training is by the dataset's folds, whole speakers where clips name a \
        speaker other than their label, else stratified. Standard errors: binomial for accuracy and bootstrap for \
        macro-F1 on one test split, clustered by speaker where its clips name one other than their label (drum kits, \
        voices: clips of one group are not independent); s/√k over k folds. With --against, a second model is probed on \
        the same clips and splits, and the difference in accuracy is given with a paired standard error (per clip on one \
        test split, clustered likewise; per fold over folds). docs/PROBE.md has the details.
        """)
    @Option(help: "logmel-stats, random:<registry name> (an untrained encoder, see earshot models), or a run, checkpoint or release.")
    var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Option(help: "A dataset folder or manifest (repeat for several).") var data: [String]
    @Option(name: .customLong("label-field"), help: "label, or speaker.") var labelField = "label"
    @Option(help: "Frames per window of a random: encoder.") var frames = 128
    @Option(help: "model (the model's own pooled embedding) or mean-std (mean and std over each window's tokens).")
    var pooling: EmbeddingPooling = .model
    @Option(help: "Seed of a random: encoder, of the cross-validation folds and of held-out test clips.") var seed: UInt64 = 0
    @Option(help: "Cross-validation folds inside a training split.") var folds = 5
    @Option(help: "L-BFGS iterations per fit.") var iterations = 100
    @Option(help: "Embedding cache folder (default $XDG_CACHE_HOME/earshot/probe or ~/.cache/earshot/probe).") var cache: String?
    @Flag(name: .customLong("no-cache"), help: "Embed every clip again and store nothing.") var noCache = false
    @Flag(help: "One JSON object per dataset, then a summary line.") var json = false
    @Option(help: "A second model (as --model) probed on the same clips, splits and seed: its scores and the difference in accuracy (model − against) with a paired standard error.")
    var against: String?
    @Option(name: .customLong("against-pooling"), help: "Pooling of --against (default: --pooling's; logmel-stats has its own).")
    var againstPooling: EmbeddingPooling?

    func run() throws {
        guard !data.isEmpty else { throw ValidationError("give at least one --data") }
        guard folds >= 2 else { throw ValidationError("--folds \(folds) must be at least 2") }
        guard iterations >= 1 else { throw ValidationError("--iterations \(iterations) must be at least 1") }
        guard frames >= 1 else { throw ValidationError("--frames \(frames) must be at least 1") }
        let started = Date()
        let embedder = try probeEmbedder(model, frames: frames, seed: seed, pooling: pooling, released: released.options, base: released.baseURL)
        let other = try against.map { name -> any ClipEmbedder in
            if name == "logmel-stats", let p = againstPooling, p != .model {
                throw ValidationError("--against-pooling \(p.rawValue) is for encoders; logmel-stats is already a mean and std")
            }
            let own = againstPooling ?? (name == "logmel-stats" ? .model : pooling)
            return try probeEmbedder(name, frames: frames, seed: seed, pooling: own, released: released.options, base: released.baseURL)
        }
        let store = noCache ? nil : try EmbeddingCache(directory: cache.map { URL(fileURLWithPath: $0) } ?? EmbeddingCache.defaultDirectory)
        var settings = ProbeSettings()
        (settings.seed, settings.folds, settings.iterations) = (seed, folds, iterations)
        if !json {
            print("model: \(embedder.summary)")
            if let other { print("against: \(other.summary)") }
        }
        var results: [ProbeResult] = [], againstResults: [ProbeResult] = [], comparisons: [ProbeComparison] = []
        for path in data {
            let ds = try Dataset.load(URL(fileURLWithPath: path)).labelled(by: labelField)
            let paths = ds.records.filter { $0.labels.count == 1 }.map(\.path)
            let name = URL(fileURLWithPath: path).lastPathComponent + (labelField == "label" ? "" : " (\(labelField))")
            let mine = try embed(paths, with: embedder, store: store)
            // Both models embed before the clock for the probe starts, so probe_seconds is the fits alone.
            let theirs = try other.map { try embed(paths, with: $0, store: store) }
            let t1 = Date()
            var object: [String: Any]
            if let theirs {
                let (result, r, comparison, shared) = try Probe.compare(ds, name: name, labelField: labelField, embeddings: mine.embeddings,
                                                                        against: theirs.embeddings, skipped: (mine.skipped, theirs.skipped),
                                                                        settings: settings)
                if shared < max(mine.embeddings.count, theirs.embeddings.count) {
                    progressLine("\(name): the \(shared) clips both models embedded are compared (\(mine.embeddings.count) and \(theirs.embeddings.count))")
                }
                results.append(result); againstResults.append(r); comparisons.append(comparison)
                object = result.json
                var theirObject = r.json
                (theirObject["embedded"], theirObject["embed_seconds"]) = (theirs.computed, theirs.seconds)
                (object["against"], object["difference"], object["compared_clips"]) = (theirObject, comparison.json, shared)
            } else {
                let result = try Probe.run(ds, name: name, labelField: labelField, embeddings: mine.embeddings, skipped: mine.skipped, settings: settings)
                results.append(result)
                object = result.json
            }
            let probeSeconds = Date().timeIntervalSince(t1)
            if json {
                (object["embedded"], object["embed_seconds"], object["probe_seconds"]) = (mine.computed, mine.seconds, probeSeconds)
                try printJSONLine(object)
            } else {
                progressLine("\(name): \(Self.embedded(mine)), probed in \(String(format: "%.1f", probeSeconds)) s")
                if let theirs { progressLine("\(name): against, \(Self.embedded(theirs))") }
            }
        }
        if json {
            var summary: [String: Any] = ["model": model, "embedder": embedder.summary, "cache_key": embedder.cacheKey,
                                          "seconds": Date().timeIntervalSince(started)]
            if let other, let against { (summary["against"], summary["against_embedder"]) = (against, other.summary) }
            try printJSONLine(["summary": summary])
            return
        }
        print(Self.table(results))
        for r in results { print("\(r.dataset): \(r.plan)") }
        if !comparisons.isEmpty {
            print("\nagainst \(against!):")
            print(Self.table(againstResults))
            print("\nmodel − against, accuracy (paired SE; clips only the model / only against got right):")
            print(Self.differenceTable(comparisons))
        }
    }

    /// "N clips embedded (M from the cache) in S s", for the progress lines of either model.
    private static func embedded(_ e: (embeddings: [String: [Float]], skipped: Int, computed: Int, seconds: Double)) -> String {
        String(format: "%d clips embedded (%d from the cache) in %.1f s", e.embeddings.count,
               e.embeddings.count - min(e.computed, e.embeddings.count), e.seconds)
    }

    /// Embeddings of `paths` (through the cache unless --no-cache), reporting skipped clips.
    private func embed(_ paths: [String], with embedder: any ClipEmbedder, store: EmbeddingCache?) throws
        -> (embeddings: [String: [Float]], skipped: Int, computed: Int, seconds: Double) {
        let t0 = Date()
        let (embeddings, report, computed): ([String: [Float]], SkipReport, Int)
        if let store {
            (embeddings, report, computed) = try store.embeddings(of: paths, with: embedder, progress: progressLine)
        } else {
            let (e, r) = try embedder.embed(paths, progress: progressLine)
            (embeddings, report, computed) = (e, r, paths.count)
        }
        for (file, reason) in report.skipped { progressLine("skipped \(file): \(reason)") }
        return (embeddings, report.skipped.count, computed, Date().timeIntervalSince(t0))
    }

    /// One row per dataset: Δ accuracy ± paired SE and the discordant clips, for both classifiers.
    static func differenceTable(_ comparisons: [ProbeComparison]) -> String {
        func cell(_ d: ProbeDifference) -> String { String(format: "%+.3f±%.3f (%d/%d)", d.difference, d.differenceSE, d.onlyA, d.onlyB) }
        return alignedTable(header: ["dataset", "logreg Δacc", "kNN Δacc"],
                            rows: comparisons.map { [$0.dataset, cell($0.logistic), cell($0.knn)] })
    }

    /// A fixed-width table: one row per dataset, mean ± standard error.
    static func table(_ results: [ProbeResult]) -> String {
        func pm(_ v: Double, _ se: Double) -> String { String(format: "%.3f±%.3f", v, se) }
        func chosen(_ v: [Double], _ format: String) -> String { Array(Set(v)).sorted().map { String(format: format, $0) }.joined(separator: ",") }
        let header = ["dataset", "clips", "classes", "logreg acc", "logreg F1", "λ", "kNN acc", "kNN F1", "k"]
        let rows = results.map { r in
            [r.dataset, String(r.clips), String(r.classes), pm(r.logistic.accuracy, r.logistic.accuracySE),
             pm(r.logistic.macroF1, r.logistic.macroF1SE), chosen(r.logistic.chosen, "%g"),
             pm(r.knn.accuracy, r.knn.accuracySE), pm(r.knn.macroF1, r.knn.macroF1SE), chosen(r.knn.chosen, "%.0f")]
        }
        return alignedTable(header: header, rows: rows)
    }

    /// Columns padded to their widest cell, two spaces apart.
    static func alignedTable(header: [String], rows: [[String]]) -> String {
        let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max()! }
        return ([header] + rows).map { row in
            row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

extension EmbeddingPooling: ExpressibleByArgument {}
