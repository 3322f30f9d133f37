import Foundation

/// Audio–text retrieval metrics as LAION-CLAP reports them (`training/train.py`: `get_metrics` for one
/// caption per clip, `evaluate_clotho_audiocaps` for several; parity with both in `RetrievalMetricsTests`),
/// generalised to relevance sets: a clip may have several captions and a caption several clips (the
/// same label-derived caption "the sound of rain" for every rain clip). Ranks are 0-based: rank(q, j) =
/// how many candidates score above j for query q, plus how many earlier candidates tie with it (a stable
/// descending sort; the reference's `argsort` leaves ties in an unspecified order).
///
/// For a query whose m relevant items rank r₁ < … < r_m:
/// - R@k = mean over queries of [r₁ < k] (the best of its relevant items);
/// - AP@10 = (1/m) Σ_{j: r_j < 10} j / (r_j + 1) (precision at each relevant item found in the top 10,
///   over m), mAP@10 its mean. With one relevant item this is the reciprocal rank 1/(r+1) of `get_metrics`;
///   audio → text with m captions is XinhaoMei's `a2t` that LAION's docstring adopts. LAION's loop takes
///   a clip's caption ranks in caption order without sorting them (`APOrder.laionCaptionOrder`), which
///   gives another number when the captions rank out of order; `.sorted` (the default) follows the docstring.
/// - text → audio with one clip per caption: each caption is a query, so with m captions for every clip
///   this equals the reference's mean over its m passes;
/// - mean rank mean(r₁) + 1 and median rank ⌊median(r₁)⌋ + 1.
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
    /// How audio → text AP@10 orders a clip's caption ranks: sorted (the definition) or in caption order
    /// (what LAION-CLAP's `evaluate_clotho_audiocaps` loop computes, to reproduce its numbers).
    public enum APOrder: Sendable { case sorted, laionCaptionOrder }

    /// Both directions from similarities [clips, captions] (row-major; any monotone scale such as the
    /// logit scale leaves the ranks as they are) and the clip of each caption.
    public static func evaluate(similarity: [Float], clips: Int, captionClips: [Int], apOrder: APOrder = .sorted) throws
        -> (audioToText: RetrievalScores, textToAudio: RetrievalScores) {
        if let bad = captionClips.first(where: { !(0..<clips).contains($0) }) {
            throw RetrievalError("retrieval: caption clip index \(bad) is outside 0..<\(max(clips, 0))")
        }
        var captionsOf = [[Int]](repeating: [], count: max(clips, 0))
        for (t, a) in captionClips.enumerated() { captionsOf[a].append(t) }
        return try evaluate(similarity: similarity, clips: clips, captions: captionClips.count, relevant: captionsOf, apOrder: apOrder)
    }

    /// Both directions from similarities [clips, captions] and each clip's relevant captions
    /// (`relevant[a]`, in caption order; every clip needs one, and every caption a clip).
    public static func evaluate(similarity: [Float], clips: Int, captions: Int, relevant: [[Int]], apOrder: APOrder = .sorted) throws
        -> (audioToText: RetrievalScores, textToAudio: RetrievalScores) {
        guard clips > 0, captions > 0 else { throw RetrievalError("retrieval: no clips or no captions to score") }
        guard similarity.count == clips * captions else {
            throw RetrievalError("retrieval: \(similarity.count) similarities for \(clips) clips × \(captions) captions")
        }
        guard relevant.count == clips else { throw RetrievalError("retrieval: \(relevant.count) relevance lists for \(clips) clips") }
        var clipsOf = [[Int]](repeating: [], count: captions)
        for (a, ts) in relevant.enumerated() {
            guard !ts.isEmpty else { throw RetrievalError("retrieval: clip \(a) has no caption") }
            for t in ts {
                guard (0..<captions).contains(t) else { throw RetrievalError("retrieval: clip \(a)'s caption index \(t) is outside 0..<\(captions)") }
                clipsOf[t].append(a)
            }
        }
        if let lone = clipsOf.firstIndex(where: \.isEmpty) { throw RetrievalError("retrieval: caption \(lone) belongs to no clip") }

        // audio → text: row a of the matrix; text → audio: column t.
        let a2t = (0..<clips).map { a in
            ranks(of: relevant[a], count: captions) { similarity[a * captions + $0] }
        }
        let t2a = (0..<captions).map { t in
            ranks(of: clipsOf[t], count: clips) { similarity[$0 * captions + t] }
        }
        return (scores(a2t, inCaptionOrder: apOrder == .laionCaptionOrder), scores(t2a, inCaptionOrder: false))
    }

    /// The 0-based ranks of `items` among `count` candidates scored by `score`, in the order given.
    static func ranks(of items: [Int], count: Int, score: (Int) -> Float) -> [Int] {
        items.map { j in
            let s = score(j)
            var r = 0
            for u in 0..<count {
                let v = score(u)
                if v > s || (v == s && u < j) { r += 1 }
            }
            return r
        }
    }

    /// Scores of queries given each query's relevant-item ranks (AP over them sorted, or as given).
    static func scores(_ queryRanks: [[Int]], inCaptionOrder: Bool) -> RetrievalScores {
        let best = queryRanks.map { $0.min()! }
        let ap = queryRanks.map { r -> Double in
            let found = (inCaptionOrder ? r : r.sorted()).filter { $0 < 10 }
            return found.enumerated().reduce(0.0) { $0 + Double($1.offset + 1) / Double($1.element + 1) } / Double(r.count)
        }
        let n = Double(best.count)
        func recall(_ k: Int) -> Double { Double(best.filter { $0 < k }.count) / n }
        let sorted = best.sorted()
        let mid = sorted.count / 2
        let median = sorted.count % 2 == 1 ? Double(sorted[mid]) : Double(sorted[mid - 1] + sorted[mid]) / 2
        return RetrievalScores(r1: recall(1), r5: recall(5), r10: recall(10), mAP10: ap.reduce(0, +) / n,
                               meanRank: Double(best.reduce(0, +)) / n + 1, medianRank: median.rounded(.down) + 1,
                               queries: best.count)
    }
}
