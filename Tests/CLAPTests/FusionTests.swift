import Foundation
import XCTest
import Audio
import Engine
import NN
@testable import Models
@testable import CLAP

/// Fused CLAP (feature fusion for long audio) against transformers' fused `ClapModel` and
/// `ClapFeatureExtractor(truncation="fusion")` (tools/make_clap_fusion_fixtures.py).
final class FusionTests: XCTestCase {
    let folder = clapFixtures.appendingPathComponent("clap_fused_tiny")

    func outputs() throws -> [String: Tensor] {
        try SafeTensors.read(clapFixtures.appendingPathComponent("clap_fused_outputs.safetensors")).tensors
    }

    /// The fixture script's clips: two tones and a chirp in Double, rounded to Float16.
    static func clip(seconds: Double, f0: Double) -> [Float] {
        let sr = 48000.0
        return (0..<Int((seconds * sr).rounded())).map { n in
            let t = Double(n) / sr
            let x = 0.3 * sin(2 * Double.pi * f0 * t) + 0.2 * sin(2 * Double.pi * (300 + 400 * t) * t)
                + 0.1 * sin(2 * Double.pi * 3 * f0 * t) * sin(2 * Double.pi * 0.25 * t)
            return Float(Float16(x))   // straight from Double, as numpy (through Float would round twice)
        }
    }

    /// Both clips through our front end, the long one cropped where the extractor drew: [2, 4, 1001, 64].
    func features(_ fx: [String: Tensor]) throws -> (Tensor, [Bool]) {
        let starts = try XCTUnwrap(fx["crop_starts"]).toArray().map { Int($0) }
        let short = try CLAPAudio.fusedFeatures(Self.clip(seconds: 2.5, f0: 440))
        let long = try CLAPAudio.fusedFeatures(Self.clip(seconds: 13.7, f0: 1250), cropStarts: starts)
        return (try Tensor.stack([short.features, long.features]), [short.longer, long.longer])
    }

    func testFusedFeaturesMatchTheExtractor() throws {
        let fx = try outputs()
        let (feats, longer) = try features(fx)
        XCTAssertEqual(feats.shape, [2, 4, 1001, 64])
        XCTAssertEqual(longer, [false, true])
        XCTAssertEqual(longer, try XCTUnwrap(fx["is_longer"]).toArray().map { $0 != 0 })
        let every40th = try feats.slice(axis: 2, start: 0, end: 1001, step: 40)
        let reference = try XCTUnwrap(fx["features_every_40th_frame"])
        let e = maxAbs(every40th, reference)
        let (ours, theirs) = (every40th.toArray(), reference.toArray())
        let worst = (0..<ours.count).max { abs(ours[$0] - theirs[$0]) < abs(ours[$1] - theirs[$1]) }!
        // [clip, view, row, bin] of the largest error, for a failure to say where.
        let at = [worst / (4 * 26 * 64), worst / (26 * 64) % 4, worst / 64 % 26, worst % 64]
        print("fused log-mel (global view, three crops; short clip four times): max abs error \(e) dB at \(at): \(ours[worst]) vs \(theirs[worst])")
        // Bins 100+ dB below the peak differ by a few 1e-3 dB (our float32 STFT, the reference's float64).
        XCTAssertLessThanOrEqual(e, 1e-2)
        XCTAssertEqual(HTSAT.longerClips(feats), [false, true], "the features say which clip was longer")
    }

    /// A fused model's features of a file come from its streamed log-mel: the same views as the whole
    /// waveform's, for a long 48 kHz file, a long 44.1 kHz one (resampled as it streams) and a short one.
    func testFusedFeaturesOfAFileStreamAsTheWholeWaveform() throws {
        let clap = try CLAP.load(folder)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-fused-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (seconds, rate) in [(13.7, 48000), (31.0, 44100), (4.2, 48000)] {
            let wave = Self.clip(seconds: seconds, f0: 700).enumerated().filter { rate == 48000 || $0.offset % 160 < 147 }.map(\.element)
            let file = dir.appendingPathComponent("clip\(rate)-\(seconds).wav")
            try AudioFile.writeWAV(wave, sampleRate: rate, to: file, float: true)
            let expected = try clap.features(waveform: Resampler.resample(AudioFile.read(file).mono, from: rate, to: 48000))
            let got = try clap.features(ofFile: file)
            XCTAssertEqual(got.shape, [4, 1001, 64])
            XCTAssertLessThan(maxAbs(got, expected), 1e-4, "\(seconds) s at \(rate) Hz")
            XCTAssertEqual(HTSAT.longerClips(try got.unsqueeze(0)), [seconds > 10], "\(seconds) s")
        }
    }

    func testFusedEmbeddingsMatchTransformers() throws {
        let fx = try outputs()
        let clap = try CLAP.load(folder)
        XCTAssertTrue(clap.isFused)
        let htsat = try XCTUnwrap(clap.model.audioTower as? HTSAT)
        XCTAssertTrue(htsat.config.fusion)
        let (feats, longer) = try features(fx)
        let (pooled, embeds, globalOnly) = try GradMode.noGrad {
            (try htsat.embedding(feats, longer: longer), try clap.embed(features: feats),
             try clap.model.audioProjection(htsat.embedding(feats, longer: [false, false])).l2Normalized())
        }
        let errors = [("pooled", maxAbs(pooled, try XCTUnwrap(fx["audio_pooled"]))),
                      ("audio_embeds", maxAbs(embeds, try XCTUnwrap(fx["audio_embeds"]))),
                      ("global view only", maxAbs(globalOnly, try XCTUnwrap(fx["audio_embeds_global_only"])))]
        print("fused CLAP parity: " + errors.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        for (name, e) in errors { XCTAssertLessThanOrEqual(e, 1e-4, name) }
        // The fusion matters: the long clip moves when its crops are ignored, the short one does not.
        let (a, g) = (embeds.toArray(), globalOnly.toArray())
        XCTAssertGreaterThan((16..<32).map { abs(a[$0] - g[$0]) }.max()!, 1e-2)
        XCTAssertEqual(Array(a[0..<16]), Array(g[0..<16]))
    }

    func testCropRangesAreNumpysArraySplit() throws {
        // np.array_split(range(0, 371), 3): sizes 124, 124, 123.
        XCTAssertEqual(CLAPAudio.fusionCropRanges(totalFrames: 1371, chunkFrames: 1001), [0..<124, 124..<248, 248..<371])
        // Two valid starts: the last third is empty and offers 0 (the reference's "use the first chunk").
        XCTAssertEqual(CLAPAudio.fusionCropRanges(totalFrames: 1002, chunkFrames: 1001), [0..<1, 1..<2, 0..<1])
        let config = LogMelConfig.clapFusion
        // A clip shorter than the chunk is its mel four times; out-of-range starts are named.
        let short = try CLAPAudio.fusedFeatures([Float](repeating: 0.1, count: 1000), config: config, clipSamples: 4800)
        XCTAssertFalse(short.longer)
        XCTAssertEqual(short.features.shape, [4, 11, 64])
        let long = Self.clip(seconds: 0.2, f0: 300)   // 9600 samples: 21 frames against a chunk of 11
        XCTAssertThrowsError(try CLAPAudio.fusedFeatures(long, config: config, clipSamples: 4800, cropStarts: [0, 0, 10])) {
            XCTAssertTrue("\($0)".contains("middle"), "\($0)")
        }
        var g = RandomGenerator(seed: 3)
        let starts = CLAPAudio.randomCropStarts(samples: long.count, config: config, clipSamples: 4800, generator: &g)
        XCTAssertTrue(zip(starts, CLAPAudio.fusionCropRanges(totalFrames: 21, chunkFrames: 11)).allSatisfy { $1.contains($0) })
        XCTAssertTrue(try CLAPAudio.fusedFeatures(long, config: config, clipSamples: 4800, cropStarts: starts).longer)
    }

    /// Finite differences through AFF (both inputs and its convolutions, BatchNorm in training mode).
    func testAttentionalFeatureFusionGradients() throws {
        Random.seed(7)
        let aff = AttentionalFeatureFusion(channels: 4, ratio: 2)
        var g = RandomGenerator(seed: 2)
        let x = Tensor.randn([3, 4, 4, 4], generator: &g).requiringGrad(), y = Tensor.randn([3, 4, 4, 4], generator: &g).requiringGrad()
        let r = Tensor.randn([3, 4, 4, 4], generator: &g)
        for training in [true, false] {
            aff.train(training)
            func value() throws -> Float { try (aff(x, residual: y) * r).sum().item() }
            aff.zeroGrad(); x.grad = nil; y.grad = nil
            try (aff(x, residual: y) * r).sum().backward()
            let probes: [(String, Tensor)] = [("x", x), ("y", y), ("local conv", aff.localConv1.weight), ("global conv", aff.globalConv2.weight),
                                              ("local norm", aff.localNorm1.weight)]
            try assertGradientsMatchFiniteDifferences(probes, samples: 5, relative: 2e-2, "training \(training)", value: value)
        }
    }
}
