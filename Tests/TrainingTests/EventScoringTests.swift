import XCTest
@testable import Engine
@testable import Inference

final class EventScoringTests: XCTestCase {
    func testMatchingCountsMissesFalseAlarmsAndErrors() {
        let truth = [TrueEvent(label: "dog", onset: 1, offset: 2), TrueEvent(label: "rain", onset: 4, offset: 6),
                     TrueEvent(label: "dog", onset: 8, offset: 9)]
        let detected = [SoundEvent(label: "dog", onset: 1.2, offset: 2.4, peak: 0.9),
                        SoundEvent(label: "dog", onset: 2.5, offset: 2.7, peak: 0.6),      // no overlap: false alarm
                        SoundEvent(label: "rain", onset: 3.5, offset: 5.0, peak: 0.8),
                        SoundEvent(label: "crying_baby", onset: 8, offset: 9, peak: 0.7)]  // wrong class at the last dog
        let r = EventMatchReport(truth: truth, detected: detected)
        XCTAssertEqual(r.matches.map(\.truth.label), ["dog", "rain"])
        XCTAssertEqual(r.misses, [truth[2]])
        XCTAssertEqual(r.falseAlarms.map(\.onset), [2.5, 8])
        XCTAssertEqual(r.meanAbsoluteOnsetError ?? -1, (0.2 + 0.5) / 2, accuracy: 1e-9)
        XCTAssertEqual(r.meanAbsoluteOffsetError ?? -1, (0.4 + 1.0) / 2, accuracy: 1e-9)
        XCTAssertNil(EventMatchReport(truth: truth, detected: []).meanAbsoluteOnsetError)
    }

    /// The larger overlap wins when two detections of a class touch one true event.
    func testEachTrueEventTakesItsLargestOverlap() {
        let truth = [TrueEvent(label: "a", onset: 0, offset: 4)]
        let detected = [SoundEvent(label: "a", onset: 3, offset: 5, peak: 1), SoundEvent(label: "a", onset: 0.5, offset: 3, peak: 1)]
        let r = EventMatchReport(truth: truth, detected: detected)
        XCTAssertEqual(r.matches.first?.detected.onset, 0.5)
        XCTAssertEqual(r.falseAlarms.map(\.onset), [3])
    }

    func testRecordingPlacesTheActivePartsAtTheTrueTimes() {
        let rate = 1000
        // 1 s of silence, 0.5 s of tone, 1 s of silence: the active part is the tone.
        let clip = [Float](repeating: 0, count: 1000) + (0..<500).map { Float(sin(Double($0) * 0.3)) } + [Float](repeating: 0, count: 1000)
        XCTAssertEqual(EventRecording.activeRange(clip, sampleRate: rate), 1000..<1500)
        let (samples, events) = EventRecording.make(clips: [("tone", clip), ("tone2", clip), ("late", clip)], sampleRate: rate, seconds: 3,
                                                    gap: 1...1, noiseDB: -80, seed: 3)
        XCTAssertEqual(samples.count, 3000)
        XCTAssertEqual(events, [TrueEvent(label: "tone", onset: 1, offset: 1.5), TrueEvent(label: "tone2", onset: 2.5, offset: 3)])
        // The tone is there, the noise is low.
        XCTAssertEqual(samples[1000 + 10], clip[1000 + 10], accuracy: 1e-3)
        let rms = (samples[0..<1000].map { $0 * $0 }.reduce(0, +) / 1000).squareRoot()
        XCTAssertEqual(20 * log10(rms), -80, accuracy: 1)
    }
}
