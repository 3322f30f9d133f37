import ArgumentParser
import Audio
import CLAP
import Foundation
import Inference

/// Where a CLAP comes from, shared by zeroshot, index, search and evaluate --task retrieval.
struct CLAPModelArguments: ParsableArguments {
    @Option(help: "A CLAP: a Hugging Face ClapModel folder (config.json, model.safetensors, tokenizer files) or a LAION-CLAP .pt.")
    var model: String
    @Option(help: "Tokenizer folder (tokenizer.json, or vocab.json + merges.txt); default: the model folder, or the .pt's folder.")
    var tokenizer: String?
    @Option(name: .customLong("text-heads"), help: "Attention heads of a .pt's RoBERTa (default width / 64).") var textHeads: Int?

    func load() throws -> CLAP {
        try CLAP.load(model: URL(fileURLWithPath: model), tokenizer: tokenizer.map { URL(fileURLWithPath: $0) }, textHeads: textHeads)
    }

    /// What an index records to load this model again.
    var indexOptions: [String: String] {
        var o: [String: String] = [:]
        if let tokenizer { o["tokenizer"] = URL(fileURLWithPath: tokenizer).standardizedFileURL.path }
        if let textHeads { o["text_heads"] = String(textHeads) }
        return o
    }
}

/// The CLAP of an existing index: the model it was built with unless --model names it (the index
/// checks that it is the same model by hash).
struct IndexModelArguments: ParsableArguments {
    @Option(help: "The index's CLAP (default: the model it was built with).") var model: String?
    @Option(help: "Tokenizer folder, as for index build.") var tokenizer: String?
    @Option(name: .customLong("text-heads"), help: "Attention heads of a .pt's RoBERTa (default width / 64).") var textHeads: Int?

    /// --model, else the index's model with the tokenizer and heads it was built with.
    func load(for index: EmbeddingIndex) throws -> CLAP {
        let own = model == nil ? index.modelOptions : [:]
        let tok = tokenizer ?? own["tokenizer"], heads = textHeads ?? own["text_heads"].flatMap { Int($0) }
        return try CLAP.load(model: URL(fileURLWithPath: model ?? index.model), tokenizer: tok.map { URL(fileURLWithPath: $0) }, textHeads: heads)
    }
}

/// Says once how many texts were cut at the tokenizer's limit (the reference cuts them silently).
func noteTruncation(_ count: Int, of total: Int, limit: Int) {
    guard count > 0 else { return }
    progressLine("note: \(count) of \(total) texts were longer than \(limit) tokens and were cut to \(limit), as the reference cuts them")
}

/// `earshot zeroshot`: classify clips into labels nobody trained on, with a CLAP.
struct ZeroShot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zeroshot",
        abstract: "Zero-shot classification of audio clips into any labels with a CLAP.",
        discussion: """
        Each label becomes a caption through --prompt ({} or {label} marks where it goes; default LAION's \
        "This is a sound of {label}."); with several --prompt templates each label's text embedding is the \
        renormalised mean of its captions' (a template ensemble). A clip's probabilities are the softmax of \
        exp(logit_scale_a) times the cosine similarities. Clips are read at 48 kHz; a clip longer than the \
        model's 10 s is cut into 10 s windows half a window apart whose embeddings are averaged.
        """)
    @Argument(help: "Audio files, folders or manifests.") var files: [String]
    @OptionGroup var clap: CLAPModelArguments
    @Option(help: "Comma-separated labels, e.g. \"dog,rain,siren\".") var labels: String?
    @Option(name: .customLong("labels-file"), help: "A file of labels, one per line.") var labelsFile: String?
    @Option(help: "A caption template with {} or {label}; repeat for an ensemble.") var prompt: [String] = []
    @Option(help: "Labels shown per clip.") var top = 5
    @Flag(help: "One JSON object per clip (file, labels, probabilities), then a summary line.") var json = false
    @OptionGroup var precision: PrecisionArguments

    func validate() throws {
        guard (labels == nil) != (labelsFile == nil) else { throw ValidationError("give the labels with --labels or --labels-file (one of them)") }
        guard top > 0 else { throw ValidationError("--top \(top) must be positive") }
    }

    func run() throws {
        let names = try labelsFile.map { try ZeroShotClassifier.labels(file: URL(fileURLWithPath: $0)) } ?? ZeroShotClassifier.labels(list: labels ?? "")
        if names.isEmpty { throw CLAPError("--labels: the label list is empty") }
        let paths = try audioFiles(files)
        let model = try clap.load()
        precision.apply(to: model.model)
        let classifier = try ZeroShotClassifier(clap: model, labels: names, templates: prompt.isEmpty ? [ZeroShotClassifier.defaultTemplate] : prompt)
        noteTruncation(classifier.truncatedCaptions, of: names.count * classifier.templates.count, limit: model.tokenizer.maxLength)
        var progress = Progress(total: paths.count, label: "zeroshot", onlyIfSlow: true, log: progressLine)
        let embedded = try CLAPFileEmbedder(clap: model).embed(files: paths) { done, _ in progress.update(done) }
        let ranked = try classifier.ranked(audioEmbeddings: embedded.embeddings, top: top)
        for (path, row) in zip(embedded.paths, ranked) {
            if json {
                try printJSONLine(["file": path, "labels": row.map(\.label), "probabilities": row.map { Double($0.probability) }])
            } else {
                print(path + ": " + row.map { String(format: "%@ %.3f", $0.label, $0.probability) }.joined(separator: ", "))
            }
        }
        if json {
            try printJSONLine(["summary": ["clips": embedded.paths.count, "labels": names.count, "templates": classifier.templates,
                                           "skipped": embedded.skipped.map { ["file": $0.path, "reason": $0.reason] }]])
        } else {
            for (file, reason) in embedded.skipped { print("\(file): skipped (\(reason))") }
            if !embedded.skipped.isEmpty { print("\(embedded.skipped.count) of \(paths.count) clips skipped") }
        }
        if embedded.paths.isEmpty && !paths.isEmpty { throw AudioError(noClipReadMessage(embedded.skipped, total: paths.count)) }
    }
}
