import Foundation

/// Audio–text retrieval metrics as LAION-CLAP reports them (`training/train.py`: `get_metrics` for one
/// caption per clip, `evaluate_clotho_audiocaps` for several), generalised to any number of captions
/// per clip. Ranks are 0-based: rank(q, j) = how many candidates score above j for query q, plus how
/// many earlier candidates tie with it (a stable descending sort; the reference's `argsort` leaves
/// ties in an unspecified order).
///
/// - text → audio: each caption queries the clips; its one relevant clip has rank r.
///   R@k = mean over captions of [r < k]; mAP@10 = mean of (r < 10 ? 1/(r+1) : 0) (with one relevant
///   item AP@10 is the reciprocal rank). With m captions for every clip this equals the reference's
///   mean over its m passes.
/// - audio → text: each clip queries the captions; its m relevant captions have ranks r₁ < … < r_m.
///   R@k = mean over clips of [r₁ < k] (the best of its captions); AP@10 = (1/m) Σ_{j: r_j < 10} j / (r_j + 1)
///   (precision at each relevant caption found in the top 10, over m), mAP@10 its mean: the definition
///   of XinhaoMei's audio-text_retrieval (`a2t`) that LAION's docstring adopts. (LAION's loop takes the
///   ranks in caption order without sorting them, which gives another number when a clip's captions
///   rank out of order; here they are sorted, as the docstring says.) With m = 1 it is `get_metrics`.
/// Mean rank is mean(r) + 1 and median rank ⌊median(r)⌋ + 1 (over the best rank for audio → text).
public struct RetrievalScores: Equatable, Sendable {
    public var r1: Double, r5: Double, r10: Double, mAP10: Double
    public var meanRank: Double, medianRank: Double
    /// Queries scored (captions for text → audio, clips for audio → text).
    public var queries: Int

    public var json: [String: Any] {
        ["R@1": r1, "R@5": r5, "R@10": r10, "mAP@10": mAP10, "mean_rank": meanRank, "median_rank": medianRank, "queries": queries]
    }
}

/// A retrieval evaluation that cannot be scored; the message says why.
public struct RetrievalError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum RetrievalMetrics {
    /// Both directions from similarities [clips, captions] (row-major; any monotone scale such as the
    /// logit scale leaves the ranks as they are) and the clip of each caption.
    public static func evaluate(similarity: [Float], clips: Int, captionClips: [Int]) throws
        -> (audioToText: RetrievalScores, textToAudio: RetrievalScores) {
        let captions = captionClips.count
        guard clips > 0, captions > 0 else { throw RetrievalError("retrieval: no clips or no captions to score") }
        guard similarity.count == clips * captions else {
            throw RetrievalError("retrieval: \(similarity.count) similarities for \(clips) clips × \(captions) captions")
        }
        if let bad = captionClips.first(where: { !(0..<clips).contains($0) }) {
            throw RetrievalError("retrieval: caption clip index \(bad) is outside 0..<\(clips)")
        }
        var captionsOf = [[Int]](repeating: [], count: clips)
        for (t, a) in captionClips.enumerated() { captionsOf[a].append(t) }
        if let empty = captionsOf.firstIndex(where: \.isEmpty) { throw RetrievalError("retrieval: clip \(empty) has no caption") }

        // text → audio: column t of the matrix, the relevant clip captionClips[t].
        var t2a: [Int] = []
        t2a.reserveCapacity(captions)
        for t in 0..<captions {
            let a = captionClips[t], s = similarity[a * captions + t]
            var r = 0
            for b in 0..<clips {
                let v = similarity[b * captions + t]
                if v > s || (v == s && b < a) { r += 1 }
            }
            t2a.append(r)
        }
        // audio → text: row a, the relevant captions captionsOf[a].
        var best: [Int] = [], ap: [Double] = []
        for a in 0..<clips {
            let row = similarity[(a * captions)..<((a + 1) * captions)]
            let ranks = captionsOf[a].map { t -> Int in
                let s = row[row.startIndex + t]
                var r = 0
                for (u, v) in row.enumerated() where v > s || (v == s && u < t) { r += 1 }
                return r
            }.sorted()
            best.append(ranks[0])
            let found = ranks.filter { $0 < 10 }
            ap.append(found.enumerated().reduce(0.0) { $0 + Double($1.offset + 1) / Double($1.element + 1) } / Double(ranks.count))
        }
        let t2aAP = t2a.map { $0 < 10 ? 1 / Double($0 + 1) : 0 }
        return (scores(best, ap: ap), scores(t2a, ap: t2aAP))
    }

    static func scores(_ ranks: [Int], ap: [Double]) -> RetrievalScores {
        let n = Double(ranks.count)
        func recall(_ k: Int) -> Double { Double(ranks.filter { $0 < k }.count) / n }
        let sorted = ranks.sorted()
        let mid = sorted.count / 2
        let median = sorted.count % 2 == 1 ? Double(sorted[mid]) : Double(sorted[mid - 1] + sorted[mid]) / 2
        return RetrievalScores(r1: recall(1), r5: recall(5), r10: recall(10), mAP10: ap.reduce(0, +) / n,
                               meanRank: Double(ranks.reduce(0, +)) / n + 1, medianRank: median.rounded(.down) + 1,
                               queries: ranks.count)
    }
}
