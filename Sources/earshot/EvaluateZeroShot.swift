import ArgumentParser
import Audio
import CLAP
import Engine
import Foundation
import Inference

/// `earshot evaluate --task zeroshot`: a CLAP classifies a labelled dataset into its own class names, with
/// no training (the CLAP paper's ESC-50 / UrbanSound8K numbers): accuracy, macro F1, mAP, the confusion
/// matrix, as `evaluate` reports a classifier's. Class names are captioned as given, underscores read as
/// spaces (`chirping_birds` → "This is a sound of chirping birds."), as LAION's evaluation lists them.
func evaluateZeroShot(model: String, tokenizer: String?, textHeads: Int?, prompts: [String], data: String, split: String?,
                      labelField: String, json: Bool) throws {
    let clap = try CLAP.load(model: URL(fileURLWithPath: model), tokenizer: tokenizer.map { URL(fileURLWithPath: $0) }, textHeads: textHeads)
    var ds = try Dataset.load(URL(fileURLWithPath: data)).labelled(by: labelField)
    if let split { ds = ds.split(split) }
    let classes = ds.classes
    guard classes.count >= 2 else { throw ValidationError("\(data): \(classes.count) class(es); zero-shot classification needs at least 2 labels") }
    let labels = classes.map { $0.replacingOccurrences(of: "_", with: " ") }
    let zs = try ZeroShotClassifier(clap: clap, labels: labels, templates: prompts.isEmpty ? [ZeroShotClassifier.defaultTemplate] : prompts)
    noteTruncation(zs.truncatedCaptions, of: labels.count * zs.templates.count, limit: clap.tokenizer.maxLength)
    let records = ds.records.filter { !$0.labels.isEmpty }
    var progress = Progress(total: records.count, label: "embedding clips", onlyIfSlow: true, log: progressLine)
    let embedded = try CLAPFileEmbedder(clap: clap).embed(files: records.map(\.path)) { done, _ in progress.update(done) }
    let width = clap.model.projectionDim
    let probabilities = try GradMode.noGrad {
        try zs.logits(audioEmbeddings: Tensor(embedded.embeddings, shape: [embedded.paths.count, width])).softmax(axis: -1)
    }.toArray()
    let byPath = Dictionary(records.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    var scores: [[Float]] = [], predicted: [Int] = [], target: [Int] = [], truth: [[Bool]] = []
    for (i, path) in embedded.paths.enumerated() {
        let row = Array(probabilities[(i * classes.count)..<((i + 1) * classes.count)])
        let clipLabels = byPath[path]!.labels, true_ = clipLabels.compactMap(classes.firstIndex(of:))
        let top = row.allSatisfy(\.isFinite) ? row.indices.max { row[$0] < row[$1] } ?? -1 : -1
        scores.append(row); predicted.append(top); target.append(true_.first ?? -1)
        truth.append((0..<classes.count).map(true_.contains))
        if json {
            try printJSONLine(["file": path, "labels": clipLabels, "predicted": top >= 0 ? classes[top] : "",
                               "scores": Dictionary(uniqueKeysWithValues: zip(classes, row.map(Double.init)))])
        }
    }
    guard !scores.isEmpty else { throw AudioError(noClipReadMessage(embedded.skipped, total: records.count)) }
    let r = EvaluationResult(scores: scores, predicted: predicted, target: target, truth: truth)
    var summary = jsonSafe(r.json)
    summary["task"] = "zeroshot"
    summary["classes"] = classes
    summary["captions"] = zs.templates.map { t in labels.map { ZeroShotClassifier.caption($0, template: t) } }
    summary["skipped"] = embedded.skipped.map { "\($0.path): \($0.reason)" }
    if json { try printJSONLine(["summary": summary]); return }
    try printJSONLine(summary)
    printConfusion(r.confusion, classes: classes)
}
