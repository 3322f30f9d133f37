import Audio
import CLAP
import Foundation
import Inference

/// `earshot evaluate --task retrieval`: audio→text and text→audio R@1/5/10, mAP@10, mean and median
/// rank of a CLAP on a caption manifest (CLAPRetrieval, RetrievalMetrics).
func evaluateRetrieval(model: String, tokenizer: String?, data: String, split: String?, json: Bool) throws {
    let clap = try CLAP.load(model: URL(fileURLWithPath: model), tokenizer: tokenizer.map { URL(fileURLWithPath: $0) })
    var ds = try Dataset.load(URL(fileURLWithPath: data))
    if let split { ds = ds.split(split) }
    var progress = Progress(total: Set(ds.records.map(\.path)).count, label: "embedding clips", onlyIfSlow: true, log: progressLine)
    let report = try CLAPRetrieval.evaluate(clap, on: ds) { done, _ in progress.update(done) }
    noteTruncation(report.truncatedCaptions, of: report.captions, limit: clap.tokenizer.maxLength)
    if json { try printJSONLine(["summary": report.json]); return }
    for (file, reason) in report.skipped { print("\(file): skipped (\(reason))") }
    print("\(report.clips) clips, \(report.captions) captions (\(report.skipped.count) clips skipped)")
    print("direction       R@1     R@5     R@10    mAP@10  mean rank  median rank")
    for (name, s) in [("audio -> text", report.audioToText), ("text -> audio", report.textToAudio)] {
        print(name.padding(toLength: 14, withPad: " ", startingAt: 0)
              + String(format: "  %.4f  %.4f  %.4f  %.4f  %9.2f  %11.0f", s.r1, s.r5, s.r10, s.mAP10, s.meanRank, s.medianRank))
    }
}
