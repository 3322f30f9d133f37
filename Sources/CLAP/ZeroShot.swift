import Engine
import Foundation
import Text

/// Zero-shot classification with CLAP: each label becomes a caption through a template ("This is a
/// sound of {label}.", LAION's README prompt), captions are embedded once, and a clip's class
/// probabilities are softmax_k(exp(s_a) · a · t_k) over its unit audio embedding a and the unit
/// caption embeddings t_k (the reference's `logits_per_audio.softmax(-1)`).
///
/// With several templates, each label's text embedding is the normalised mean of its captions' unit
/// embeddings (CLIP's prompt ensembling).
public struct ZeroShotClassifier {
    public let clap: CLAP
    public let labels: [String]
    public let templates: [String]
    /// [K, P], unit length, row k for labels[k].
    public let textEmbeddings: Tensor
    /// Captions cut at the tokenizer's maxLength (for the caller to say once).
    public let truncatedCaptions: Int

    /// LAION-CLAP's README prompt.
    public static let defaultTemplate = "This is a sound of {label}."

    /// `templates` hold `{label}` (or `{}`) where the label goes.
    public init(clap: CLAP, labels: [String], templates: [String] = [ZeroShotClassifier.defaultTemplate]) throws {
        let names = labels.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard !names.isEmpty else { throw CLAPError("zero-shot: no labels given") }
        if let i = names.firstIndex(where: \.isEmpty) { throw CLAPError("zero-shot: label \(i + 1) is empty") }
        if let dup = Dictionary(grouping: names, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw CLAPError("zero-shot: label '\(dup)' is given more than once")
        }
        guard !templates.isEmpty else { throw CLAPError("zero-shot: no caption templates given") }
        for t in templates where !t.contains("{label}") && !t.contains("{}") {
            throw CLAPError("zero-shot: template '\(t)' has no {label} or {} for the label")
        }
        var sum: Tensor? = nil, truncated = 0
        for template in templates {
            let (e, cut) = try clap.embed(texts: names.map { Self.caption($0, template: template) })
            sum = try sum.map { try $0 + e } ?? e
            truncated += cut
        }
        self.clap = clap; self.labels = names; self.templates = templates
        textEmbeddings = templates.count == 1 ? sum! : try GradMode.noGrad { try sum!.l2Normalized() }
        truncatedCaptions = truncated
    }

    /// A classifier with caption embeddings computed elsewhere ([K, P], unit rows): ONNX export fixtures,
    /// whose hash must not depend on the host's arithmetic.
    init(clap: CLAP, labels: [String], templates: [String], textEmbeddings: Tensor) {
        self.clap = clap; self.labels = labels; self.templates = templates; self.textEmbeddings = textEmbeddings
        truncatedCaptions = 0
    }

    /// The caption for `label`: `{label}` (or else `{}`) in `template` replaced by it.
    public static func caption(_ label: String, template: String) -> String {
        template.contains("{label}") ? template.replacingOccurrences(of: "{label}", with: label)
            : template.replacingOccurrences(of: "{}", with: label)
    }

    /// Logits [B, K] = exp(s_a) · A Tᵀ of unit audio embeddings A [B, P].
    public func logits(audioEmbeddings a: Tensor) throws -> Tensor {
        try GradMode.noGrad { try clap.model.logits(audio: a, text: textEmbeddings).perAudio }
    }

    /// Class probabilities [B, K] (each row sums to 1) of log-mel features [B, T, mel bins].
    public func probabilities(features: Tensor) throws -> Tensor {
        try GradMode.noGrad { try logits(audioEmbeddings: clap.embed(features: features)).softmax(axis: -1) }
    }

    /// Per clip, the labels with their probabilities, most probable first (at most `top`).
    public func ranked(features: Tensor, top: Int? = nil) throws -> [[(label: String, probability: Float)]] {
        let p = try probabilities(features: features)
        let k = labels.count, values = p.toArray()
        return (0..<p.shape[0]).map { b in
            let row = (0..<k).map { (labels[$0], values[b * k + $0]) }.sorted { $0.1 > $1.1 }
            return Array(row.prefix(top ?? k)).map { (label: $0.0, probability: $0.1) }
        }
    }
}

extension ZeroShotClassifier {
    /// Logits [files read, K] of audio files, rows in the order of `paths` (the files read, each covered as
    /// `CLAPFileEmbedder` covers it); files that cannot be read are left out and named in `skipped`.
    public func logits(files: [String], progress: ((Int, Int) -> Void)? = nil)
        throws -> (paths: [String], logits: Tensor, skipped: [(path: String, reason: String)]) {
        let embedded = try CLAPFileEmbedder(clap: clap).embed(files: files, progress: progress)
        guard !embedded.paths.isEmpty else { return ([], Tensor.zeros([0, labels.count]), embedded.skipped) }
        let audio = try Tensor(embedded.embeddings, shape: [embedded.paths.count, clap.model.projectionDim])
        return (embedded.paths, try logits(audioEmbeddings: audio), embedded.skipped)
    }
}

