import ArgumentParser
import Audio
import CLAP
import Engine
import Foundation
import Inference
import Models
import NN
import Training

struct PairsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pairs", abstract: "Preference pairs for P2C training (finetune --pairs): make them, or check a file against the data.",
        subcommands: [PairsMake.self, PairsCheck.self])
}

enum PreferenceSourceKind: String, ExpressibleByArgument, CaseIterable {
    case salience, votes, teacher, snr
}

struct PairsMake: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make", abstract: "Write a pairs file (clip_a,clip_b,class,preference) from annotation records, votes, a teacher or SNR mixing.",
        discussion: """
        Pairs are within a class. salience: a metadata column, the lower value winning by default (UrbanSound8K: 1 \
        foreground beats 2 background), equal values tie. votes: a votes file, the higher fraction for the clip's class \
        winning. teacher: an Earshot classifier's probability of the clip's class, within --tie-margin a tie; with --clap, \
        a CLAP's zero-shot probability of the clip's class among the data's classes (--keywords, --prompt). snr: each \
        clip mixed over another class's clip at --snr-high and --snr-low dB into --audio-out, the high SNR winning, plus \
        pairs of different clips; --manifest gets the data's clips and the mixtures, to fine-tune on. Clips in \
        --exclude-split (default test) are left out so no held-out clip informs training.
        """)
    @Option(name: .customLong("from"), help: "salience, votes, teacher or snr.") var source: PreferenceSourceKind
    @Option(help: "A manifest or dataset folder.") var data: String
    @Option(help: "The pairs file to write.") var out: String
    @Option(name: .customLong("label-field"), help: "What the classes are: label, or speaker.") var labelField = "label"
    @Option(name: .customLong("exclude-split"), help: "A split (or fold) whose clips get no pairs (empty: none).") var excludeSplit = "test"
    @Option(help: "Partners drawn per clip within its class (salience, votes, teacher).") var partners = 20
    @Option var seed: UInt64 = 0
    @Option(help: "salience: the CSV with the column (default: the data's manifest).") var metadata: String?
    @Option(help: "salience: the column to compare.") var column = "salience"
    @Option(help: "salience: which value wins, lower or higher.") var prefer = "lower"
    @Option(name: .customLong("votes"), help: "votes: the votes file (clip,<class>,...).") var votesFile: String?
    @Option(help: "teacher: an Earshot classifier (best.safetensors of a run) whose classes include the data's.") var model: String?
    @Option(name: .customLong("tie-margin"), help: "teacher: probability gaps up to this tie.") var tieMargin: Double = 0.05
    @Flag(help: "teacher: --model is a CLAP (a Hugging Face ClapModel folder, a LAION .pt, or an Earshot contrastive run or its clap/ export), scored zero-shot.")
    var clap = false
    @Option(help: "teacher --clap: a CSV label,keyword naming the classes in the prompts (default: the class names).") var keywords: String?
    @Option(help: "teacher --clap: a prompt template with {} or {label}; repeat for an ensemble (default LAION's).") var prompt: [String] = []
    @Option(help: "teacher --clap: tokenizer folder, as for zeroshot.") var tokenizer: String?
    @Option(name: .customLong("audio-out"), help: "snr: the folder for the mixtures.") var audioOut: String?
    @Option(help: "snr: the manifest to write (the data's clips and the mixtures).") var manifest: String?
    @Option(name: .customLong("snr-high"), help: "snr: the preferred mixture's SNR in dB.") var snrHigh: Float = 20
    @Option(name: .customLong("snr-low"), help: "snr: the other mixture's SNR in dB.") var snrLow: Float = 0
    @Option(name: .customLong("cross-pairs"), help: "snr: pairs of different clips per clip (high SNR over another's low SNR).") var crossPairs = 1
    @Option(name: .customLong("min-gap"), help: "snr: the least SNR gap in dB for a pair.") var minGap: Float = 10
    @Option(name: .customLong("max-clips"), help: "snr: mix at most this many clips (a seeded draw), all by default.") var maxClips: Int?
    @Flag(help: "Print a JSON summary.") var json = false

    func run() throws {
        let dataset = try Dataset.load(URL(fileURLWithPath: data)).labelled(by: labelField)
        let eligible = dataset.records.filter { !$0.labels.isEmpty && (excludeSplit.isEmpty || !$0.isIn(split: excludeSplit)) }
        guard !eligible.isEmpty else { throw ValidationError("\(data): no labelled clip outside split '\(excludeSplit)'") }
        guard partners >= 1 else { throw ValidationError("--partners must be at least 1") }
        if let maxClips, maxClips < 1 { throw ValidationError("--max-clips \(maxClips) must be at least 1") }
        let pairs: [PreferencePair]
        var notes: [String: Any] = [:]
        switch source {
        case .salience:
            guard ["lower", "higher"].contains(prefer) else { throw ValidationError("--prefer must be lower or higher (got \(prefer))") }
            guard let table = metadata.map({ URL(fileURLWithPath: $0) }) ?? MetadataColumn.manifest(of: URL(fileURLWithPath: data)) else {
                throw ValidationError("--from salience: \(data) has no CSV manifest; give --metadata")
            }
            let (scored, missing) = try PreferenceSources.column(eligible, metadata: table, column: column)
            guard !scored.isEmpty else { throw ValidationError("\(table.path): no clip of the data has a numeric '\(column)'") }
            notes["clips_without_value"] = missing
            pairs = PreferenceSources.pairs(scored, partnersPerClip: partners, higherWins: prefer == "higher", seed: seed)
        case .votes:
            guard let votesFile else { throw ValidationError("--from votes needs --votes") }
            let votes = try PreferenceFile.readVotes(URL(fileURLWithPath: votesFile), data: dataset)
            let (scored, missing) = PreferenceSources.votes(eligible, votes: votes, classes: dataset.classes)
            notes["clips_without_votes"] = missing
            pairs = PreferenceSources.pairs(scored, partnersPerClip: partners, tieMargin: 1e-6, seed: seed)
        case .teacher:
            guard let model else { throw ValidationError("--from teacher needs --model") }
            guard tieMargin >= 0 else { throw ValidationError("--tie-margin must not be negative") }
            let report = SkipReport()
            let subset = Dataset(records: eligible, layout: dataset.layout, classes: dataset.classes)
            let scored: [PreferenceSources.Scored]
            if clap {
                let teacher = try CLAP.load(model: URL(fileURLWithPath: model), tokenizer: tokenizer.map { URL(fileURLWithPath: $0) })
                let names = try keywords.map { try KeywordCaptioner.labelTable(from: URL(fileURLWithPath: $0), valueColumn: "keyword") } ?? [:]
                var meter = Progress(total: eligible.count, label: "teacher", onlyIfSlow: true, log: { print($0) })
                scored = try PreferenceSources.clapTeacher(subset, clap: teacher, prompts: names.compactMapValues(\.first),
                                                           templates: prompt.isEmpty ? [ZeroShotClassifier.defaultTemplate] : prompt,
                                                           report: report, progress: { done, _ in meter.update(done) })
            } else {
                let classifier = try Classifier.load(ShippedModels.resolve(model))
                scored = try PreferenceSources.teacher(subset, classifier: classifier, report: report, progress: { print($0) })
            }
            if !report.isEmpty { print(report.summary) }
            notes["clips_scored"] = scored.count
            pairs = PreferenceSources.pairs(scored, partnersPerClip: partners, tieMargin: tieMargin, seed: seed)
        case .snr:
            guard let audioOut, let manifest else { throw ValidationError("--from snr needs --audio-out (a folder) and --manifest") }
            var mixer = SNRMixer()
            (mixer.highSNR, mixer.lowSNR, mixer.crossPairs, mixer.minGap, mixer.seed) = (snrHigh, snrLow, crossPairs, minGap, seed)
            var sources = eligible
            if let maxClips, maxClips < sources.count {
                var generator = RandomGenerator(seed: seed &+ 1)
                generator.shuffle(&sources)
                sources = Array(sources.prefix(maxClips))
            }
            let report = SkipReport()
            let made = try mixer.make(sources: sources, noisePool: eligible, folder: URL(fileURLWithPath: audioOut), report: report, log: { print($0) })
            if !report.isEmpty { print(report.summary) }
            try SNRMixer.writeManifest(dataset.records + made.records, to: URL(fileURLWithPath: manifest))
            notes["mixtures"] = made.records.count
            notes["manifest"] = manifest
            pairs = made.pairs
        }
        guard !pairs.isEmpty else { throw ValidationError("no pairs: every class has fewer than two scored clips") }
        try PreferenceFile.writePairs(pairs, to: URL(fileURLWithPath: out))
        let counts = (a: pairs.filter { $0.target > 0.5 }.count, b: pairs.filter { $0.target < 0.5 }.count, tie: pairs.filter { $0.target == 0.5 }.count)
        if json {
            var summary: [String: Any] = ["from": source.rawValue, "pairs": pairs.count, "a_wins": counts.a, "b_wins": counts.b, "ties": counts.tie, "out": out]
            summary.merge(notes) { a, _ in a }
            print(String(data: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), encoding: .utf8)!)
        } else {
            print("wrote \(pairs.count) pairs (\(counts.a) a, \(counts.b) b, \(counts.tie) ties) from \(source.rawValue) -> \(out)")
        }
    }
}

struct PairsCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Check a pairs file (and a votes file) against the data, as finetune --pairs does before training.")
    @Option(help: "A manifest or dataset folder.") var data: String
    @Option var pairs: String
    @Option var votes: String?
    @Option(name: .customLong("label-field")) var labelField = "label"
    @Flag(help: "Print a JSON summary.") var json = false

    func run() throws {
        let dataset = try Dataset.load(URL(fileURLWithPath: data)).labelled(by: labelField)
        let read = try PreferenceFile.readPairs(URL(fileURLWithPath: pairs), data: dataset)
        let votesRead = try votes.map { try PreferenceFile.readVotes(URL(fileURLWithPath: $0), data: dataset) }
        // A header and no rows passed the check and then stopped fine-tuning: the check is for that.
        guard !read.isEmpty else { throw ValidationError("\(pairs): no pairs (only a header); finetune --pairs needs at least one") }
        var bySplit: [String: Int] = [:]
        let splitOf = Dictionary(dataset.records.map { ($0.path, $0.split ?? $0.fold.map { "fold \($0)" } ?? "none") }, uniquingKeysWith: { a, _ in a })
        for p in read {
            let (x, y) = (splitOf[p.a]!, splitOf[p.b]!)
            bySplit[x == y ? x : "\(x)/\(y)", default: 0] += 1
        }
        if json {
            let summary: [String: Any] = ["pairs": read.count, "by_split": bySplit, "votes": votesRead?.count ?? 0]
            print(String(data: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), encoding: .utf8)!)
        } else {
            print("\(pairs): \(read.count) valid pairs (" + bySplit.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")"
                  + (votesRead.map { "; votes for \($0.count) clips" } ?? ""))
        }
    }
}
