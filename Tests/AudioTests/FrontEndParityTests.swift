import Foundation
import XCTest
import Engine
import NN
@testable import Audio

let audioFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
/// ../shared/data beside the repository (tests may read it; CI has it). Tests reach it through
/// `requireSharedData` (SharedData.swift), which skips where a fresh clone has none.
let sharedData = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data")

func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "shapes \(a.shape) vs \(b.shape)")
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a.data[i] - b.data[i])) }
    return m
}

/// The same float64 formula as tools/make_audio_fixtures.py, rounded to float32.
func synth(_ n: Int, _ sr: Int) -> [Float] {
    (0..<n).map { i in
        let x = Double(i)
        return Float(0.5 * sin(2 * Double.pi * 440 * x / Double(sr)) + 0.25 * sin(2 * Double.pi * 3000.5 * x / Double(sr) + 0.3))
    }
}

final class FrontEndParityTests: XCTestCase {
    static let fixtures = try? SafeTensors.read(audioFixtures.appendingPathComponent("frontend.safetensors")).tensors

    func fx(_ key: String) throws -> Tensor { try XCTUnwrap(Self.fixtures?[key], "fixture \(key)") }

    func fbank(_ samples: [Float], rate: Int) throws -> Tensor {
        var c = KaldiFbankConfig.ast
        c.sampleRate = rate
        return try KaldiFbank(c)(samples)
    }

    /// Kaldi fbank on identical input: max abs error at most 1e-3 (the bar) against torchaudio.
    func testKaldiFbankMatchesTorchaudio() throws {
        XCTAssertLessThanOrEqual(maxAbsDiff(try fbank(synth(16000, 16000), rate: 16000), try fx("fbank.synth")), 1e-3)
        XCTAssertLessThanOrEqual(maxAbsDiff(try fbank([Float](repeating: 0, count: 8000), rate: 16000), try fx("fbank.silence")), 1e-3)
        let square = (0..<12000).map { i -> Float in sin(2 * Double.pi * 200 * Double(i) / 16000) >= 0 ? 1 : -1 }
        XCTAssertLessThanOrEqual(maxAbsDiff(try fbank(square, rate: 16000), try fx("fbank.square")), 1e-3)
    }

    func testKaldiFbankOnRealRecording() throws {
        let sharedData = try requireSharedData("fsdd")
        let wav = try AudioFile.read(sharedData.appendingPathComponent("fsdd/recordings/0_george_0.wav"))
        XCTAssertEqual(wav.sampleRate, 8000)
        XCTAssertLessThanOrEqual(maxAbsDiff(try fbank(wav.mono, rate: 8000), try fx("fbank.fsdd_8k")), 1e-3)
    }

    /// Through libsoxr (ours: Debian's build; the fixture: python-soxr's) the waveforms differ at the
    /// 1e-6 level, which Kaldi's log floor turns into at most a few thousandths.
    func testResampledPipelinesMatch() throws {
        let sharedData = try requireSharedData("fsdd", "esc10")
        let wav = try AudioFile.read(sharedData.appendingPathComponent("fsdd/recordings/0_george_0.wav"))
        let up = try Resampler.resample(wav.mono, from: 8000, to: 16000)
        let e1 = maxAbsDiff(try fbank(up, rate: 16000), try fx("fbank.fsdd_16k"))
        let ogg = try AudioFile.read(sharedData.appendingPathComponent("esc10/audio/dog/1-100032-A.ogg"))
        XCTAssertEqual(ogg.sampleRate, 44100)
        let down = try Resampler.resample(ogg.mono, from: 44100, to: 16000)
        let e2 = maxAbsDiff(try fbank(down, rate: 16000), try fx("fbank.esc_16k"))
        print("resampled fbank max abs error: fsdd \(e1), esc \(e2)")
        XCTAssertLessThanOrEqual(e1, 5e-3)
        XCTAssertLessThanOrEqual(e2, 5e-3)
    }

    func testResamplerMatchesPythonSoxr() throws {
        let input = try fx("resample.chirp_in").toArray()
        let ours = try Resampler.resample(input, from: 44100, to: 16000)
        let ref = try fx("resample.chirp_16k")
        XCTAssertEqual(ours.count, ref.count)
        XCTAssertLessThanOrEqual(maxAbsDiff(Tensor(ours), ref), 1e-5)
    }

    /// Max dB error over bins within `range` dB of the reference's peak, and over the deeper bins.
    /// Below ~100 dB under the peak a bin holds 1e-10 of the peak power, where even two float64 FFTs
    /// disagree (round-off ~1e-12 of the peak): those bins get 1e-2 dB, the rest the 1e-3 dB bar.
    func dbErrors(_ ours: Tensor, _ ref: Tensor, range: Float = 100) -> (near: Float, deep: Float) {
        let peak = ref.toArray().max() ?? 0
        var near: Float = 0, deep: Float = 0
        for i in 0..<ref.count {
            let e = abs(ours.data[i] - ref.data[i])
            if ref.data[i] >= peak - range { near = max(near, e) } else { deep = max(deep, e) }
        }
        return (near, deep)
    }

    func testLogMelMatchesLibrosaAndTorchaudio() throws {
        let panns = try LogMel(.panns)
        let fusion = try LogMel(.clapFusion)
        func check(_ cases: [(String, Tensor, Tensor)]) {
            for (name, ours, ref) in cases {
                XCTAssertEqual(ours.shape, ref.shape, name)
                let (near, deep) = dbErrors(ours, ref)
                print("log-mel \(name): max error \(near) dB within 100 dB of the peak, \(deep) dB below")
                XCTAssertLessThanOrEqual(near, 1e-3, name)
                XCTAssertLessThanOrEqual(deep, 1e-2, name)
            }
        }
        // The synthetic case needs no shared data; the recorded ones skip without it.
        check([("synthetic tones, PANNs", try panns(synth(32000, 32000)), try fx("logmel.panns_synth"))])
        let sharedData = try requireSharedData("esc10")
        let ogg = try AudioFile.read(sharedData.appendingPathComponent("esc10/audio/dog/1-100032-A.ogg")).mono
        check([
            ("ESC-10 dog, PANNs", try panns(Resampler.resample(ogg, from: 44100, to: 32000)), try fx("logmel.panns_esc")),
            ("ESC-10 dog, CLAP fusion (HTK)", try fusion(Resampler.resample(ogg, from: 44100, to: 48000)), try fx("logmel.clap_fusion_esc")),
        ])
    }
}
