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

    /// A tiny model in eval mode whose batch norms have random running statistics and affine terms, so
    /// every layer shifts and scales as a trained one does.
    /// Wider than `tiny` (8-16 channels) so that a change to the input survives Cnn14's six blocks of
    /// ReLUs; biases mostly positive for the same reason.
    func trained(_ variant: PANNsConfig.Variant, dlm: Bool = false) throws -> PANNs {
        var c = try tiny(variant, dlm: dlm).config
        c.channels = variant == .cnn14 ? [8, 8, 16, 16, 16, 16] : [8, 8, 16, 16]
        try c.validate()
        let model = PANNs(c)
        for (key, t) in model.namedTensors() where key.contains("bn") && !key.contains("num_batches") {
            let value: Tensor
            if key.contains("running_var") { value = Tensor.uniform(t.shape, low: 0.5, high: 1.5) }
            else if key.hasSuffix("weight") { value = Tensor.uniform(t.shape, low: 0.5, high: 1.5) }
            else { value = Tensor.uniform(t.shape, low: -0.1, high: 0.5) }
            try t.assign(from: value)
        }
        model.eval()
        return model
    }

    /// A long input run through the trunk in chunks gives what one whole pass gives: the time map, the
    /// clip logits and embedding of every variant, the decision-level model's frame-wise output, with an
    /// input whose length is not a whole number of chunks or of output steps.
    func testChunkedInferenceOfALongInputIsTheWholePass() throws {
        Random.seed(5)
        for (variant, dlm) in [(PANNsConfig.Variant.cnn6, false), (.cnn10, false), (.cnn14, false), (.cnn14, true)] {
            let model = try trained(variant, dlm: dlm)
            let x = Tensor.randn([2, 1237, 32])
            model.trunk.chunkFrames = 1 << 20
            let whole = try GradMode.noGrad { (try model.trunk.timeMap(x), try model.logits(x), try model.embedding(x)) }
            model.trunk.chunkFrames = 100    // 96 frames kept a chunk, context either side: a dozen chunks
            let chunked = try GradMode.noGrad { (try model.trunk.timeMap(x), try model.logits(x), try model.embedding(x)) }
            XCTAssertEqual(whole.0.shape, [2, model.config.channels.last!, 1237 / model.config.timeRatio])
            for (a, b, what) in [(whole.0, chunked.0, "time map"), (whole.1, chunked.1, "logits"), (whole.2, chunked.2, "embedding")] {
                XCTAssertEqual(a.shape, b.shape, "\(variant) \(what)")
                let scale = a.toArray().map(abs).max()!
                XCTAssertGreaterThan(scale, 0)
                XCTAssertLessThan(zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max()!, 1e-4 * scale, "\(variant) dlm \(dlm) \(what)")
            }
        }
    }

    /// The context each chunk computes is what makes it exact: with one output step less than the
    /// receptive radius rounded up, the steps at the edges of the kept spans differ from a whole pass.
    func testTooLittleContextChangesTheStepsAtChunkEdges() throws {
        Random.seed(6)
        let trunk = try trained(.cnn14).trunk
        let x = try trunk.bn0(Tensor.randn([1, 1000, 32]).transpose(1, 2)).transpose(1, 2).unsqueeze(1)
        let stages = try trunk.blocks.flatMap { try $0.inferenceStages() }
        func run(keep: Int, context: Int) throws -> [Float] {
            try GradMode.noGrad {
                try PANNsEncoder.chunkedOverTime(x, keep: keep, context: context, step: 32) { try $0.convChainInference(stages).mean(axis: 3) }.toArray()
            }
        }
        XCTAssertEqual(trunk.chunkContext, 128)
        let whole = try run(keep: 4096, context: 128)
        let exact = try run(keep: 128, context: 128), short = try run(keep: 128, context: 96)
        let scale = whole.map(abs).max()!
        let exactError = zip(whole, exact).map { abs($0 - $1) }.max()!, shortError = zip(whole, short).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(exactError, 1e-5 * scale)
        XCTAssertGreaterThan(shortError, 1e-4 * scale)
    }

    /// `receptiveRadius` measured: a change to one input frame reaches only the output steps whose span
    /// widened by the radius holds that frame, and (for some frame) every one of them.
    func testReceptiveRadiusIsTheFarthestAFrameReaches() throws {
        Random.seed(7)
        for variant in PANNsConfig.Variant.allCases {
            let model = try trained(variant)
            let (radius, step, frames) = (model.trunk.receptiveRadius, model.config.timeRatio, 640)
            model.trunk.chunkFrames = 1 << 20
            let x = Tensor.randn([1, frames, 32])
            let base = try GradMode.noGrad { try model.trunk.timeMap(x) }.toArray()
            let channels = model.config.channels.last!, steps = frames / step
            var tight = false
            for frame in [300, 301, 317, 320, 331] {
                let y = x.toArray()
                var z = y
                for m in 0..<32 { z[frame * 32 + m] += 3 }
                let moved = try GradMode.noGrad { try model.trunk.timeMap(Tensor(z, shape: [1, frames, 32])) }.toArray()
                var reached = Set<Int>()
                for c in 0..<channels { for j in 0..<steps where abs(moved[c * steps + j] - base[c * steps + j]) > 1e-6 { reached.insert(j) } }
                let within = Set((0..<steps).filter { j in j * step - radius <= frame && frame <= (j + 1) * step - 1 + radius })
                XCTAssertTrue(reached.isSubset(of: within), "\(variant) frame \(frame): reached \(reached.sorted()), radius allows \(within.sorted())")
                if reached == within { tight = true }
            }
            XCTAssertTrue(tight, "\(variant): no frame reached every step the radius \(radius) allows")
        }
    }
}
