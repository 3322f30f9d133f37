import ArgumentParser
import Audio
import Engine
import Foundation
import NN

enum FeatureKind: String, ExpressibleByArgument, CaseIterable {
    case kaldiFbank = "kaldi-fbank", logmel
}

/// A --sample-rate the decoder would accept in a file (`AudioFile.plausibleSampleRates`).
func checkSampleRate(_ rate: Int) throws {
    let range = AudioFile.plausibleSampleRates
    guard range.contains(rate) else { throw ValidationError("--sample-rate \(rate) Hz is outside \(range.lowerBound)-\(range.upperBound)") }
}

struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute Kaldi fbank or log-mel features of audio files into one safetensors file (a key per file).")

    @Argument(help: "Audio files, folders (as datasets) or manifests.") var files: [String]
    @Option(help: "kaldi-fbank (AST, 128 bins) or logmel (PANNs/CLAP, 64 bins).") var kind: FeatureKind = .kaldiFbank
    @Option(name: .customLong("sample-rate"), help: "Resample to this rate first (default: 16000 for fbank, 32000 for logmel).") var sampleRate: Int?
    @Option(help: "Output safetensors file.") var out: String
    @Flag(help: "Stop at the first unreadable file instead of skipping it.") var strict = false

    func run() throws {
        if let sampleRate { try checkSampleRate(sampleRate) }
        let pipeline: FeaturePipeline
        switch kind {
        case .kaldiFbank:
            var c = KaldiFbankConfig.ast
            c.sampleRate = sampleRate ?? 16000
            pipeline = FeaturePipeline(kind: .kaldiFbank(c))
        case .logmel:
            var c = LogMelConfig.panns
            if let sr = sampleRate { c.sampleRate = sr; c.fMax = min(c.fMax, Double(sr) / 2) }
            pipeline = FeaturePipeline(kind: .logMel(c))
        }
        try pipeline.validate()
        var tensors: [String: Tensor] = [:]
        let report = SkipReport()
        let paths = try audioFiles(files)
        for file in paths {
            do {
                let key = (file as NSString).lastPathComponent
                guard tensors[key] == nil else { throw AudioError("another input has the same file name \(key)") }
                tensors[key] = try pipeline.features(of: URL(fileURLWithPath: file))
            } catch {
                if strict { throw error }
                report.recordSkip(file, "\(error)")
            }
        }
        // An empty file would read as a successful run; nothing is written instead.
        if tensors.isEmpty { throw AudioError(noClipReadMessage(report.skipped, total: paths.count) + "; \(out) not written") }
        let config = String(data: try JSONEncoder().encode(pipeline), encoding: .utf8) ?? ""
        try SafeTensors.write(tensors, to: URL(fileURLWithPath: out), metadata: ["pipeline": config])
        print("wrote \(tensors.count) feature tensors to \(out)")
        if !report.skipped.isEmpty { print(report.summary) }
    }
}

struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dataset", abstract: "Inspect datasets and compute feature statistics.",
                                                    subcommands: [Inspect.self, Stats.self, Events.self, Pack.self])

    struct Pack: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a dataset as WebDataset shards (LAION-CLAP's training format): a folder per split, each clip's audio as it is and a .json of its captions and tags.")
        @Argument(help: "A manifest or dataset folder (captions from a caption column).") var path: String
        @Option(help: "The folder to write train/, valid/, test/ shards into.") var out: String
        @Option(help: "Clips per shard.") var shardSize = 1000
        @Flag(help: "Decode every clip and store it as 16-bit FLAC (LAION-CLAP's loader reads the .flac member) instead of its file's bytes.")
        var flac = false

        func run() throws {
            let ds = try Dataset.load(URL(fileURLWithPath: path))
            let report = try WebDataset.pack(ds, to: URL(fileURLWithPath: out), samplesPerShard: shardSize, flac: flac)
            print("\(out): \(report.samples) clips in " + report.shards.keys.sorted().map { "\($0) \(report.shards[$0]!) shard\(report.shards[$0]! == 1 ? "" : "s")" }
                .joined(separator: ", ") + (report.skipped.isEmpty ? "" : "; \(report.skipped.count) skipped"))
            for s in report.skipped { print("  skipped \(s)") }
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clips per class and split, durations, sample rates, channels, every unreadable file with its reason, and every truncated file with its promised and readable lengths.")
        @Argument(help: "A manifest (.csv, .jsonl, AST .json) or a dataset folder.") var path: String

        func run() throws {
            let ds = try Dataset.load(URL(fileURLWithPath: path))
            // A captioned clip has a row per caption (a captions CSV, WebDataset): counted once, its captions beside.
            var seen = Set<String>()
            let clips = ds.records.filter { seen.insert($0.path).inserted }
            let captions = ds.records.compactMap(\.caption).count
            print("\(path): \(ds.layout), \(clips.count) clips\(captions > 0 ? " (\(captions) captions)" : ""), "
                  + "\(ds.classes.count) classes\(ds.multiLabel ? " (multi-label)" : "")")
            var perClass: [String: Int] = [:], perSplit: [String: Int] = [:]
            for r in clips {
                for l in r.labels { perClass[l, default: 0] += 1 }
                perSplit[r.split ?? r.fold.map { "fold \($0)" } ?? "(none)", default: 0] += 1
            }
            print("classes: " + ds.classes.map { "\($0) \(perClass[$0] ?? 0)" }.joined(separator: ", "))
            print("splits: " + perSplit.keys.sorted().map { "\($0) \(perSplit[$0]!)" }.joined(separator: ", "))
            var durations: [Double] = [], rates: [Int: Int] = [:], channels: [Int: Int] = [:], bad: [String] = [], cut: [String] = []
            for r in clips {
                do {
                    // verifyLength: a file cut short is found (and its readable frames counted) here, not mid-run.
                    let info = try AudioFile.info(URL(fileURLWithPath: r.path), verifyLength: true)
                    if info.frames <= 0 { throw AudioError("\(r.path): no audio frames" + (info.truncated.map { " (truncated: the header promises \($0.promised) frames)" } ?? "")) }
                    if let t = info.truncated { cut.append("\(r.path): the header promises \(t.promised) frames, \(t.read) read") }
                    durations.append(info.duration)
                    rates[info.sampleRate, default: 0] += 1
                    channels[info.channels, default: 0] += 1
                } catch { bad.append("\(error)") }
            }
            if !durations.isEmpty {
                let mean = durations.reduce(0, +) / Double(durations.count)
                print(String(format: "durations: min %.2f s, mean %.2f s, max %.2f s, total %.1f min",
                             durations.min()!, mean, durations.max()!, durations.reduce(0, +) / 60))
            }
            print("sample rates: " + rates.keys.sorted().map { "\($0) Hz x\(rates[$0]!)" }.joined(separator: ", "))
            print("channels: " + channels.keys.sorted().map { "\($0) x\(channels[$0]!)" }.joined(separator: ", "))
            print("unreadable: \(bad.count)")
            for b in bad { print("  \(b)") }
            print("truncated: \(cut.count)\(cut.isEmpty ? "" : " (used as far as they go)")")
            for c in cut { print("  \(c)") }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The mean and std of a dataset's Kaldi fbank features (AST's normalisation statistics), as JSON.")
        @Argument(help: "A manifest or a dataset folder.") var path: String
        @Option(name: .customLong("target-length"), help: "Pad or cut to this many frames first (AST computes its stats on padded inputs).")
        var targetLength: Int?
        @Option(help: "Use at most this many clips (evenly spaced).") var limit: Int?

        func run() throws {
            if let targetLength, targetLength < 1 { throw ValidationError("--target-length \(targetLength) must be at least 1") }
            if let limit, limit < 1 { throw ValidationError("--limit \(limit) must be at least 1") }
            let ds = try Dataset.load(URL(fileURLWithPath: path))
            let pipeline = FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: targetLength)
            try pipeline.validate()
            var records = ds.records
            if let limit, limit < records.count { records = (0..<limit).map { records[$0 * records.count / limit] } }
            var sum = 0.0, sumSq = 0.0, n = 0
            let report = SkipReport()
            for r in records {
                let f: Tensor
                do { f = try pipeline.features(of: URL(fileURLWithPath: r.path)) } catch { report.recordSkip(r.path, "\(error)"); continue }
                for i in 0..<f.count { let v = Double(f.data[i]); sum += v; sumSq += v * v }
                n += f.count
            }
            guard n > 0 else { throw AudioError("\(path): " + noClipReadMessage(report.skipped, total: records.count)) }
            if !report.skipped.isEmpty { FileHandle.standardError.write(Data((report.summary + "\n").utf8)) }
            let skipped = report.skipped.count
            let mean = sum / Double(n), std = (sumSq / Double(n) - mean * mean).squareRoot()
            print(String(format: "{\"mean\": %.7f, \"std\": %.7f, \"clips\": %d, \"skipped\": %d}", mean, std, records.count - skipped, skipped))
        }
    }
}

struct FbankBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fbank", abstract: "Kaldi fbank (AST settings) on generated clips.")
    @Option var seconds: Double = 10
    @Option var clips = 200
    @OptionGroup var options: BenchOptions

    func run() throws {
        Threading.setThreads(options.threads)
        var g = RandomGenerator(seed: 0)
        let n = Int(seconds * 16000)
        let waves = (0..<clips).map { _ in (0..<n).map { _ in 0.1 * g.nextNormal() } }
        let fbank = try KaldiFbank(.ast)
        let t = try medianTime(iters: options.iters, warmup: options.warmup) { _ = try fbank(batch: waves) }
        printJSON([("bench", "fbank"), ("seconds", seconds), ("clips", clips), ("threads", options.threads),
                   ("ms", t * 1e3), ("clips_per_s", Double(clips) / t)])
    }
}
