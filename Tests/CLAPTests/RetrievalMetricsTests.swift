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
