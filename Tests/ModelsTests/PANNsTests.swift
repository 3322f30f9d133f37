import Foundation
import XCTest
import Audio
import Engine
import NN
@testable import Models

final class PANNsTests: XCTestCase {
    func tiny(_ variant: PANNsConfig.Variant, dlm: Bool = false) throws -> PANNs {
        var c = PANNsConfig(variant, classes: 3, frames: 40, frontEnd: LogMelConfig(sampleRate: 8000, nFFT: 256, hop: 80, nMels: 32, fMin: 50, fMax: 4000))
        c.channels = variant == .cnn14 ? [2, 3, 3, 4, 4, 5] : [2, 3, 3, 4]
        (c.embeddingWidth, c.decisionLevelMax, c.specAugment) = (6, dlm, false)
        try c.validate()
        return PANNs(c)
    }

    /// Finite differences against backprop through every parameter kind of each variant (eval mode:
    /// BatchNorm on its running statistics, no dropout), and through the input.
    func testGradientsOfEveryVariantMatchFiniteDifferences() throws {
        Random.seed(21)
        for (variant, dlm) in [(PANNsConfig.Variant.cnn6, false), (.cnn10, false), (.cnn14, false), (.cnn14, true)] {
            let model = try tiny(variant, dlm: dlm)
            for (key, t) in model.namedTensors() where key.contains("running_var") { try t.assign(from: Tensor.uniform(t.shape, low: 0.5, high: 1.5)) }
            model.eval()
            let x = Tensor.randn([2, 40, 32]).requiringGrad()
            let r = Tensor.randn([2, 3])
            func objective() throws -> Double {
                let y = try GradMode.noGrad { try model.logits(x) }
                return zip(y.toArray(), r.toArray()).map { Double($0) * Double($1) }.reduce(0, +)
            }
            try (model.logits(x) * r).sum().backward()
            let params = Dictionary(uniqueKeysWithValues: model.namedParameters())
            let probes = ["blocks.0.conv1.weight", "blocks.1.bn1.weight", "bn0.bias", "fc1.weight", "fc_audioset.bias"].map { ($0, params[$0]!) } + [("input", x)]
            for (key, t) in probes {
                let g = try XCTUnwrap(t.grad, "\(variant) \(key)")
                for i in stride(from: 0, to: t.count, by: max(1, t.count / 5)) {
                    let saved = t.data[i], eps: Float = 1e-2
                    t.data[i] = saved + eps; let up = try objective()
                    t.data[i] = saved - eps; let down = try objective()
                    t.data[i] = saved
                    let numeric = Float((up - down) / Double(2 * eps))
                    XCTAssertEqual(g.data[i], numeric, accuracy: 2e-2 + 3e-2 * abs(numeric), "\(variant) dlm \(dlm) \(key)[\(i)]")
                }
            }
        }
    }

    func testDropStripesZeroAtMostTheirWidthsPerClip() {
        var g = RandomGenerator(seed: 3)
        let mask = PANNsEncoder.dropStripes([4, 1, 200, 64], generator: &g)
        var differs = false
        for n in 0..<4 {
            let clip = Array(mask.toArray()[(n * 200 * 64)..<((n + 1) * 200 * 64)])
            let zeroRows = (0..<200).filter { t in (0..<64).allSatisfy { clip[t * 64 + $0] == 0 } }.count
            let zeroCols = (0..<64).filter { f in (0..<200).allSatisfy { clip[$0 * 64 + f] == 0 } }.count
            XCTAssertLessThanOrEqual(zeroRows, 2 * 12, "stripes under 13 frames (64 of the recipe's 1001, scaled to 200)")
            XCTAssertLessThanOrEqual(zeroCols, 2 * 7)
            XCTAssertTrue(clip.allSatisfy { $0 == 0 || $0 == 1 })
            if n > 0 && clip != Array(mask.toArray()[0..<(200 * 64)]) { differs = true }
        }
        XCTAssertTrue(differs, "each clip draws its own stripes")
        XCTAssertLessThan(mask.toArray().reduce(0, +), Float(4 * 200 * 64), "something is dropped")
    }

    /// The recipe's time stripe width (64 frames) is for 10 s clips; shorter training inputs keep its share.
    func testTimeStripeWidthKeepsTheRecipesShareOfTheInput() {
        XCTAssertEqual(PANNsEncoder.timeDropWidth(frames: 1001), 64)
        XCTAssertEqual(PANNsEncoder.timeDropWidth(frames: 100), 6)
        XCTAssertEqual(PANNsEncoder.timeDropWidth(frames: 8), 1)
        var g = RandomGenerator(seed: 4)
        let mask = PANNsEncoder.dropStripes([64, 1, 100, 8], generator: &g).toArray()
        let zeroRows = (0..<64).map { n in (0..<100).filter { t in (0..<8).allSatisfy { mask[(n * 100 + t) * 8 + $0] == 0 } }.count }
        XCTAssertLessThanOrEqual(zeroRows.max()!, 2 * 5)
        XCTAssertGreaterThan(zeroRows.reduce(0, +), 0, "time stripes are drawn")
    }

    func testTransformerMethodsAreRefusedAndHeadOnlyMethodsWork() throws {
        let model = try tiny(.cnn10)
        XCTAssertThrowsError(try PEFTConfig(method: .adapter).apply(to: model)) { XCTAssertTrue("\($0)".contains("--peft adapter"), "\($0)") }
        XCTAssertThrowsError(try PEFTConfig(method: .lora).apply(to: model))
        let linear = try PEFTConfig(method: .linear).apply(to: model)
        XCTAssertEqual(linear.trainable, 6 * 3 + 3, "fc_audioset only")
        let bitfit = try PEFTConfig(method: .bitfit).apply(to: try tiny(.cnn10))
        XCTAssertEqual(bitfit.trainable, 32 + (2 + 2 + 3 + 3 + 3 + 3 + 4 + 4) + 6 + 3 + 6 * 3, "BN biases, fc biases and the head")
    }

    func testFrameWiseOutputSpansTheInputAndNeedsADecisionLevelModel() throws {
        let model = try tiny(.cnn10, dlm: true)
        model.eval()
        let x = Tensor.randn([1, 53, 32])
        let frames = try GradMode.noGrad { try model.framewise(x) }
        XCTAssertEqual(frames.shape, [1, 53, 3])
        // 53 frames / 16 per step = 3 steps; frames 48-52 repeat the last step.
        XCTAssertEqual(Array(frames.toArray()[(47 * 3)..<(48 * 3)]), Array(frames.toArray()[(52 * 3)..<(53 * 3)]))
        XCTAssertThrowsError(try tiny(.cnn10).framewise(x))
        XCTAssertThrowsError(try model.logits(Tensor.randn([1, 8, 32]))) { XCTAssertTrue("\($0)".contains("8 frames"), "\($0)") }
    }
}
