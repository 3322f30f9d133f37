import Audio
import Engine
import Foundation
import Inference

/// Audio–text retrieval evaluation of a CLAP on captioned clips (a caption CSV: file, caption; a clip
/// may have several rows, one per caption): every clip and caption embedded, similarities a·t, then
/// `RetrievalMetrics` in both directions.
public enum CLAPRetrieval {
    public struct Report {
        public var audioToText: RetrievalScores
        public var textToAudio: RetrievalScores
        public var clips: Int, captions: Int
        /// Clips that could not be read (their captions are left out too), with the reason.
        public var skipped: [(path: String, reason: String)]
        /// Captions cut at the tokenizer's limit.
        public var truncatedCaptions: Int

        public var json: [String: Any] {
            ["audio_to_text": audioToText.json, "text_to_audio": textToAudio.json, "clips": clips, "captions": captions,
             "skipped": skipped.map { ["file": $0.path, "reason": $0.reason] }, "truncated_captions": truncatedCaptions]
        }
    }

    /// The clips in first-appearance order and, per caption row, its text and clip index. Rows without
    /// a caption are an error naming the file (a retrieval set is all captions).
    public static func captionedClips(_ data: Dataset) throws -> (clips: [String], captions: [String], captionClips: [Int]) {
        var clips: [String] = [], index: [String: Int] = [:], captions: [String] = [], owners: [Int] = []
        for r in data.records {
            guard let caption = r.caption?.trimmingCharacters(in: .whitespacesAndNewlines), !caption.isEmpty else {
                throw CLAPError("\(r.path): no caption (a retrieval manifest has a caption column, one row per caption)")
            }
            let i = index[r.path] ?? { clips.append(r.path); index[r.path] = clips.count - 1; return clips.count - 1 }()
            captions.append(caption); owners.append(i)
        }
        guard !clips.isEmpty else { throw CLAPError("no captioned clips to evaluate") }
        return (clips, captions, owners)
    }

    public static func evaluate(_ clap: CLAP, on data: Dataset, textBatch: Int = 64,
                                progress: ((Int, Int) -> Void)? = nil) throws -> Report {
        let (clips, captions, owners) = try captionedClips(data)
        let embedded = try CLAPFileEmbedder(clap: clap).embed(files: clips, progress: progress)
        guard !embedded.paths.isEmpty else { throw CLAPError(noClipReadMessage(embedded.skipped, total: clips.count)) }
        // Keep the captions of the clips that were read, re-indexed to the embedded clips.
        let row = Dictionary(uniqueKeysWithValues: embedded.paths.enumerated().map { ($1, $0) })
        var kept: [String] = [], keptOwners: [Int] = []
        for (c, o) in zip(captions, owners) { if let r = row[clips[o]] { kept.append(c); keptOwners.append(r) } }
        var textRows: [Tensor] = [], truncated = 0
        for start in stride(from: 0, to: kept.count, by: textBatch) {
            let (e, cut) = try clap.embed(texts: Array(kept[start..<min(kept.count, start + textBatch)]))
            textRows.append(e); truncated += cut
        }
        let p = clap.model.projectionDim
        let a = try Tensor(embedded.embeddings, shape: [embedded.paths.count, p])
        let sim = try GradMode.noGrad { try a.matmul(Tensor.concat(textRows, axis: 0).transpose(0, 1)) }
        let (a2t, t2a) = try RetrievalMetrics.evaluate(similarity: sim.toArray(), clips: embedded.paths.count, captionClips: keptOwners)
        return Report(audioToText: a2t, textToAudio: t2a, clips: embedded.paths.count, captions: kept.count,
                      skipped: embedded.skipped, truncatedCaptions: truncated)
    }
}
