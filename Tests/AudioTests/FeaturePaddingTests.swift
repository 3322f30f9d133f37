import Foundation
import XCTest
import Engine
@testable import Audio

/// Padding a short clip to `targetFrames` must add what the reference recipe adds: AST zero-pads its
/// Kaldi fbank (0 in the log domain), PANNs and CLAP pad the waveform with zeros, so their log-mel pad
/// frames are the frames of silence, not 0 dB (louder than most clips).
final class FeaturePaddingTests: XCTestCase {
    private func tone(_ n: Int, rate: Int) -> [Float] {
        (0..<n).map { 0.1 * Float(sin(2 * Double.pi * 440 * Double($0) / Double(rate))) }
    }

    func testLogMelPadFramesAreTheFramesOfSilence() throws {
        let config = LogMelConfig.panns
        let clip = tone(8000, rate: config.sampleRate)                  // 0.25 s: 26 frames
        let natural = try FeaturePipeline(kind: .logMel(config)).features(clip)
        let padded = try FeaturePipeline(kind: .logMel(config), targetFrames: natural.shape[0] + 20).features(clip)
        XCTAssertEqual(padded.shape, [natural.shape[0] + 20, config.nMels])
        // A frame in the middle of an all-zero waveform: what padding the waveform would have given.
        let silent = try FeaturePipeline(kind: .logMel(config)).features([Float](repeating: 0, count: 16000))
        let silence = try silent.slice(axis: 0, start: 20, end: 21).toArray()
        let pad = try padded.slice(axis: 0, start: natural.shape[0]).toArray()
        for (i, v) in pad.enumerated() { XCTAssertEqual(v, silence[i % config.nMels], accuracy: 1e-4) }
        XCTAssertEqual(try padded.slice(axis: 0, start: 0, end: natural.shape[0]).toArray(), natural.toArray())
        XCTAssertLessThan(pad.max()!, -99)
    }

    func testLogMelWithTopDBPadsAtTheClipsFloor() throws {
        var config = LogMelConfig.panns
        config.topDB = 80
        let pipeline = FeaturePipeline(kind: .logMel(config))
        let x = try pipeline.features(tone(8000, rate: config.sampleRate))
        let peak = try x.max().item()
        XCTAssertEqual(pipeline.paddingValue(for: x), peak - 80, accuracy: 1e-4)
        XCTAssertEqual(try pipeline.padOrCut(x, to: x.shape[0] + 3).slice(axis: 0, start: x.shape[0]).toArray().min()!,
                       peak - 80, accuracy: 1e-4)
    }

    func testKaldiFbankIsZeroPaddedAsASTsRecipe() throws {
        let pipeline = FeaturePipeline(kind: .kaldiFbank(KaldiFbankConfig()), targetFrames: 60)
        let x = try pipeline.features(tone(4000, rate: 16000))          // 0.25 s: 23 frames
        XCTAssertEqual(x.shape, [60, 128])
        XCTAssertEqual(Set(try x.slice(axis: 0, start: 30).toArray()), [0])
    }

    func testCacheKeysOfPaddedLogMelDifferFromTheirOldOnes() throws {
        // Features cached before log-mel padding changed must not be reused: the key names the padding.
        let padded = FeaturePipeline(kind: .logMel(.panns), targetFrames: 100)
        XCTAssertTrue(padded.cacheKey.hasSuffix("pad=silence"))
        XCTAssertFalse(FeaturePipeline(kind: .kaldiFbank(KaldiFbankConfig()), targetFrames: 100).cacheKey.contains("pad="))
    }
}
