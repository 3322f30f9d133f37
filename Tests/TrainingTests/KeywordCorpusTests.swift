import Foundation
import XCTest
import Audio
@testable import Training
@testable import Inference

final class KeywordCorpusTests: XCTestCase {
    func testGeneratesLabelledClipsWithVoiceDisjointSplits() throws {
        var corpus = KeywordCorpus()
        (corpus.words, corpus.trainVoices, corpus.testVoices, corpus.speeds, corpus.pitches) = (["yes", "no"], ["en+m1"], ["en+f4"], [160], [50, 60])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-kw-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let manifest = try corpus.generate(in: dir, log: { _ in })
        let data = try Dataset.load(manifest)
        XCTAssertEqual(data.records.count, 8)
        XCTAssertEqual(data.classes, ["no", "yes"])
        XCTAssertEqual(Set(data.split("test").records.compactMap(\.speaker)), ["en+f4"])
        let clip = try AudioFile.read(URL(fileURLWithPath: data.records[0].path))
        XCTAssertEqual(clip.sampleRate, 16000)
        XCTAssertEqual(clip.frameCount, 15360)
        let rms = (clip.mono.reduce(0) { $0 + $1 * $1 } / Float(clip.frameCount)).squareRoot()
        XCTAssertGreaterThan(rms, 0.01, "speech is audible")
        XCTAssertLessThanOrEqual(clip.mono.map(abs).max()!, 1)
        // A second call reuses the complete corpus.
        let again = try corpus.generate(in: dir, log: { _ in XCTFail("regenerated") })
        XCTAssertEqual(again, manifest)
    }
}
