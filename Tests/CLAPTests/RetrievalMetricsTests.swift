import Foundation
import XCTest
import Inference

/// R@k, mAP@10 and ranks on similarity matrices worked out by hand (LAION-CLAP's definitions).
final class RetrievalMetricsTests: XCTestCase {
    /// One caption per clip (LAION's `get_metrics`). Rows are clips, columns captions.
    func testOneCaptionPerClip() throws {
        let sim: [Float] = [0.9, 0.1, 0.5,
                            0.2, 0.3, 0.8,
                            0.4, 0.6, 0.7]
        let (a2t, t2a) = try RetrievalMetrics.evaluate(similarity: sim, clips: 3, captionClips: [0, 1, 2])
        // audio → text ranks: clip 0 → 0; clip 1: 0.8 beats its 0.3 → 1; clip 2 → 0.
        XCTAssertEqual(a2t.r1, 2.0 / 3, accuracy: 1e-12); XCTAssertEqual(a2t.r5, 1)
        XCTAssertEqual(a2t.mAP10, (1 + 0.5 + 1) / 3, accuracy: 1e-12)
        XCTAssertEqual(a2t.meanRank, 1.0 / 3 + 1, accuracy: 1e-12); XCTAssertEqual(a2t.medianRank, 1)
        // text → audio ranks: caption 0 → 0; caption 1: clip 2's 0.6 beats 0.3 → 1; caption 2: clip 1's 0.8 beats 0.7 → 1.
        XCTAssertEqual(t2a.r1, 1.0 / 3, accuracy: 1e-12); XCTAssertEqual(t2a.r10, 1)
        XCTAssertEqual(t2a.mAP10, (1 + 0.5 + 0.5) / 3, accuracy: 1e-12)
        XCTAssertEqual(t2a.meanRank, 2.0 / 3 + 1, accuracy: 1e-12); XCTAssertEqual(t2a.medianRank, 2)
        XCTAssertEqual(t2a.queries, 3)
    }

    /// Clip 0 has three captions ranked 5, 2 and 11 (0-based) in its row: R@1 misses, R@5 hits (best 2),
    /// AP@10 = (1/3)(1/3 + 2/6) with the ranks sorted (2 then 5; 11 is past 10). LAION's loop, which
    /// keeps caption order, would give (1/3)(1/6 + 2/3) instead.
    func testSeveralCaptionsPerClipSortsTheRanks() throws {
        let clips = 12, captions = 14
        var owners = [0, 0, 0]
        for i in 1..<clips { owners.append(i) }
        var sim = [Float](repeating: 0, count: clips * captions)
        // Row 0: positions 0…13 by score 0.9 − 0.05·p; captions 1, 0, 2 at positions 2, 5, 11.
        var position = [Int](repeating: -1, count: captions)
        position[1] = 2; position[0] = 5; position[2] = 11
        var free = [0, 1, 3, 4, 6, 7, 8, 9, 10, 12, 13]
        for t in 3..<captions { position[t] = free.removeFirst() }
        for t in 0..<captions { sim[t] = 0.9 - 0.05 * Float(position[t]) }
        // Clip i ≥ 1 scores only its own caption (2 + i), at 1.
        for i in 1..<clips { sim[i * captions + 2 + i] = 1 }
        let (a2t, t2a) = try RetrievalMetrics.evaluate(similarity: sim, clips: clips, captionClips: owners)
        let ap0 = (1.0 / 3 + 2.0 / 6) / 3
        XCTAssertEqual(a2t.r1, 11.0 / 12, accuracy: 1e-12)
        XCTAssertEqual(a2t.r5, 1); XCTAssertEqual(a2t.r10, 1)
        XCTAssertEqual(a2t.mAP10, (ap0 + 11) / 12, accuracy: 1e-12)
        XCTAssertEqual(a2t.meanRank, 2.0 / 12 + 1, accuracy: 1e-12)
        XCTAssertEqual(a2t.queries, 12)
        // Every caption's clip is its column's maximum.
        XCTAssertEqual(t2a.r1, 1); XCTAssertEqual(t2a.mAP10, 1); XCTAssertEqual(t2a.queries, 14)
    }

    /// A rank of 10 or more counts for neither R@10 nor mAP@10; ties go to the earlier candidate.
    func testCutOffAndTies() throws {
        let n = 12
        // Caption 0's clip (0) scores 0 while 11 other clips score 1: rank 11.
        var sim = [Float](repeating: 0, count: n * n)
        for a in 0..<n { for t in 0..<n { sim[a * n + t] = a == t ? 1 : 0 } }
        for a in 1..<n { sim[a * n + 0] = 1 }
        sim[0] = 0
        let (_, t2a) = try RetrievalMetrics.evaluate(similarity: sim, clips: n, captionClips: Array(0..<n))
        XCTAssertEqual(t2a.r10, 11.0 / 12, accuracy: 1e-12)
        XCTAssertEqual(t2a.mAP10, 11.0 / 12, accuracy: 1e-12, "caption 0 at rank 11 adds nothing")
        // Two clips with equal scores for a caption: the later clip ranks 1.
        let tie: [Float] = [0.5, 0.5,
                            0.5, 0.5]
        let (a2t2, t2a2) = try RetrievalMetrics.evaluate(similarity: tie, clips: 2, captionClips: [0, 1])
        XCTAssertEqual(a2t2.r1, 0.5); XCTAssertEqual(t2a2.r1, 0.5)
        XCTAssertEqual(t2a2.mAP10, 0.75)
    }

    /// The same numbers as LAION-CLAP's own `get_metrics` and `evaluate_clotho_audiocaps` (training/train.py,
    /// run by tools/make_retrieval_fixtures.py on 24 random clips with one and with five captions each).
    func testMatchesLAIONsEvaluationCode() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/retrieval_metrics.json")
        let fx = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let clips = try XCTUnwrap(fx["clips"] as? Int), m = try XCTUnwrap(fx["captions_per_clip"] as? Int)
        func floats(_ key: String) throws -> [Float] { try XCTUnwrap(fx[key] as? [Double]).map { Float($0) } }
        func check(_ ours: (audioToText: RetrievalScores, textToAudio: RetrievalScores), _ key: String, skip: Set<String> = [],
                   line: UInt = #line) throws {
            let laion = try XCTUnwrap(fx[key] as? [String: Double])
            var compared = 0
            for (name, s) in [("audio_to_text", ours.audioToText), ("text_to_audio", ours.textToAudio)] {
                let values = ["R@1": s.r1, "R@5": s.r5, "R@10": s.r10, "mAP@10": s.mAP10, "mean_rank": s.meanRank, "median_rank": s.medianRank]
                for (metric, v) in values where !skip.contains("\(name)_\(metric)") {
                    // evaluate_clotho_audiocaps reports no audio → text mean or median rank.
                    guard let expected = laion["\(name)_\(metric)"] else { continue }
                    XCTAssertEqual(v, expected, accuracy: 1e-9, "\(key) \(name)_\(metric)", line: line)
                    compared += 1
                }
            }
            XCTAssertEqual(compared + skip.count, laion.count, "every metric LAION reports is compared", line: line)
        }
        // One caption per clip: get_metrics.
        try check(RetrievalMetrics.evaluate(similarity: floats("similarity_one_caption"), clips: clips, captionClips: Array(0..<clips)),
                  "get_metrics")
        // Five captions per clip: LAION's loop, and the sorted definition, which differs only in audio → text
        // mAP@10 and only where captions rank out of order (the fixture has such clips).
        let owners = (0..<clips).flatMap { [Int](repeating: $0, count: m) }
        let five = try floats("similarity_five_captions")
        try check(RetrievalMetrics.evaluate(similarity: five, clips: clips, captionClips: owners, apOrder: .laionCaptionOrder),
                  "evaluate_clotho_audiocaps")
        let sorted = try RetrievalMetrics.evaluate(similarity: five, clips: clips, captionClips: owners)
        try check(sorted, "evaluate_clotho_audiocaps", skip: ["audio_to_text_mAP@10"])
        XCTAssertGreaterThan(try XCTUnwrap(fx["clips_with_captions_out_of_order_in_top10"] as? Int), 0)
        let laionMAP = try XCTUnwrap((fx["evaluate_clotho_audiocaps"] as? [String: Double])?["audio_to_text_mAP@10"])
        // Out of order, LAION's loop pairs the larger precision numerators with the better ranks, so it can only score higher.
        XCTAssertLessThan(sorted.audioToText.mAP10, laionMAP - 1e-6)
    }

    /// LAION's caption order against the sorted definition, worked out by hand.
    func testLAIONCaptionOrder() throws {
        // Clip 0's captions 0, 1, 2 rank 1, 0 and 11: LAION's loop reads [1, 0] in caption order,
        // (1/3)(1/2 + 2/1); sorted [0, 1]: (1/3)(1/1 + 2/2). Clips 1…8 find their captions first (AP 1;
        // clip 1 has two, captions 3 and 11).
        let clips = 9, captions = 12
        let owners = [0, 0, 0] + Array(1..<clips) + [1]
        var sim = [Float](repeating: 0, count: clips * captions)
        sim[1] = 1; sim[0] = 0.9
        for (k, t) in (3..<captions).enumerated() { sim[t] = 0.5 - 0.01 * Float(k) }
        sim[2] = 0
        for (t, a) in owners.enumerated() where a > 0 { sim[a * captions + t] = 1 }
        let sorted = try RetrievalMetrics.evaluate(similarity: sim, clips: clips, captionClips: owners)
        let laion = try RetrievalMetrics.evaluate(similarity: sim, clips: clips, captionClips: owners, apOrder: .laionCaptionOrder)
        XCTAssertEqual(sorted.audioToText.mAP10, ((1.0 / 1 + 2.0 / 2) / 3 + 8) / 9, accuracy: 1e-12)
        XCTAssertEqual(laion.audioToText.mAP10, ((1.0 / 2 + 2.0 / 1) / 3 + 8) / 9, accuracy: 1e-12)
        XCTAssertEqual(sorted.textToAudio, laion.textToAudio, "text → audio has one clip per caption")
    }

    /// A caption relevant to several clips (label-derived captions): each clip's rank counts for AP,
    /// the best for R@k.
    func testCaptionRelevantToSeveralClips() throws {
        // 3 clips and 1 caption relevant to all three, scored 0.2, 0.9, 0.5: ranks 2, 0, 1, so AP (1/1 + 2/2 + 3/3)/3.
        let (a2t, t2a) = try RetrievalMetrics.evaluate(similarity: [0.2, 0.9, 0.5], clips: 3, captions: 1, relevant: [[0], [0], [0]])
        XCTAssertEqual(a2t.r1, 1)
        XCTAssertEqual(t2a.r1, 1); XCTAssertEqual(t2a.mAP10, (1.0 / 1 + 2.0 / 2 + 3.0 / 3) / 3, accuracy: 1e-12)
        let (_, two) = try RetrievalMetrics.evaluate(similarity: [0.2, 0.9, 0.5, 0.1, 0.0, 0.3], clips: 3, captions: 2,
                                                     relevant: [[0], [1], [0]])
        // Caption 0 scores 0.2, 0.5, 0.0 for clips 0…2 (its clips 0 and 2 rank 1 and 2): R@1 miss, AP (1/2 + 2/3)/2.
        // Caption 1 scores 0.9, 0.1, 0.3 (its clip 1 ranks 2): AP 1/3.
        XCTAssertEqual(two.r1, 0); XCTAssertEqual(two.r5, 1)
        XCTAssertEqual(two.mAP10, ((0.5 + 2.0 / 3) / 2 + 1.0 / 3) / 2, accuracy: 1e-12)
        XCTAssertThrowsError(try RetrievalMetrics.evaluate(similarity: [1, 2], clips: 1, captions: 2, relevant: [[0]])) {
            XCTAssertTrue("\($0)".contains("caption 1 belongs to no clip"), "\($0)")
        }
    }

    func testBadInputIsNamed() {
        XCTAssertThrowsError(try RetrievalMetrics.evaluate(similarity: [1, 2, 3, 4], clips: 2, captionClips: [0, 0])) {
            XCTAssertTrue("\($0)".contains("clip 1 has no caption"), "\($0)")
        }
        XCTAssertThrowsError(try RetrievalMetrics.evaluate(similarity: [1, 2, 3], clips: 2, captionClips: [0, 1])) {
            XCTAssertTrue("\($0)".contains("3 similarities"), "\($0)")
        }
        XCTAssertThrowsError(try RetrievalMetrics.evaluate(similarity: [], clips: 0, captionClips: []))
        XCTAssertThrowsError(try RetrievalMetrics.evaluate(similarity: [1, 2], clips: 1, captionClips: [0, 3]))
    }
}
