import Foundation
import XCTest
import Engine
import NN
@testable import Models
import Text

let clapFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
let clapFolder = clapFixtures.appendingPathComponent("clap_tiny")

func maxAbs(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "shapes \(a.shape) and \(b.shape)")
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a.data[i] - b.data[i])) }
    return m
}

func clapOutputs() throws -> [String: Tensor] {
    try SafeTensors.read(clapFixtures.appendingPathComponent("clap_outputs.safetensors")).tensors
}

/// The HTSAT audio tower against transformers' `ClapAudioModel` (tools/make_clap_fixtures.py: a tiny
/// random ClapModel, spec 128 / 32 mel bins / window 4, so stage 1 has 8 x 8 windows with shifted
/// blocks and stage 4 is a single window where the shift is turned off).
final class HTSATTests: XCTestCase {
    func testTinyHTSATMatchesTransformersPooledOutput() throws {
        let fx = try clapOutputs()
        let model = try HTSATCheckpoint.loadHuggingFace(clapFolder)
        XCTAssertEqual(model.config.melBins, 32)
        XCTAssertEqual(model.config.freqRatio, 4)
        XCTAssertEqual(model.config.specWidth, 512)
        XCTAssertEqual(model.config.width, 64)
        XCTAssertEqual(model.layers.map { $0.blocks.map(\.shift) }, [[0, 2], [0, 2], [0, 2], [0, 0]],
                       "odd blocks shifted by w/2, except where the grid is one window")
        let features = try XCTUnwrap(fx["input_features"])
        XCTAssertEqual(features.shape, [2, 101, 32], "101 frames, stretched to 512 inside")
        let pooled = try GradMode.noGrad { try model.embedding(features) }
        let expected = try XCTUnwrap(fx["audio_pooled"])
        XCTAssertEqual(pooled.shape, [2, 64])
        let err = maxAbs(pooled, expected)
        print("HTSAT pooled output: max error \(err)")
        XCTAssertLessThanOrEqual(err, 1e-4)
        XCTAssertGreaterThan(maxAbs(try pooled.slice(axis: 0, start: 0, end: 1), try pooled.slice(axis: 0, start: 1, end: 2)), 1e-2,
                             "the two clips give different embeddings")
        // A batch of one gives the same numbers (the shifted-window mask is per item, not per batch).
        let single = try GradMode.noGrad { try model.embedding(features.slice(axis: 0, start: 1, end: 2)) }
        XCTAssertLessThanOrEqual(maxAbs(single, try expected.slice(axis: 0, start: 1, end: 2)), 1e-4)
    }

    /// LAION's SpecAugment after bn0: in training, stripes of exactly zero in the normalised image (the
    /// same for a fused clip's four views); none in eval mode or with `specAugment` off.
    func testSpecAugmentStripesOnlyInTraining() throws {
        Random.seed(12)
        let model = try HTSATCheckpoint.loadHuggingFace(clapFolder)
        var g = RandomGenerator(seed: 5)
        let x = Tensor.randn([3, 512, 32], mean: -30, std: 10, generator: &g)
        func zeros(_ t: Tensor) -> Int { t.toArray().filter { $0 == 0 }.count }
        XCTAssertEqual(zeros(try GradMode.noGrad { try model.image(x) }), 0)
        model.train()
        let masked = try GradMode.noGrad { try model.image(x) }
        XCTAssertGreaterThan(zeros(masked), 0)
        XCTAssertLessThan(zeros(masked), masked.count / 2)
        var off = model.config
        off.specAugment = false
        let plain = Random.withoutInitialisation { HTSAT(off) }
        var state = model.stateDict()
        try plain.load(consuming: &state)
        plain.train()
        XCTAssertEqual(zeros(try GradMode.noGrad { try plain.image(x) }), 0)
        // Fused: [B, 4, T, F], one set of stripes per clip across its views.
        var fusedConfig = model.config
        fusedConfig.fusion = true
        let fused = HTSAT(fusedConfig)
        fused.train()
        let views = try GradMode.noGrad { try fused.image(Tensor.randn([2, 4, 512, 32], mean: -30, std: 10, generator: &g)) }   // [2, 4, 128, 128]
        let v = views.toArray(), plane = 128 * 128
        for clip in 0..<2 {
            let first = (0..<plane).map { v[(clip * 4) * plane + $0] == 0 }
            XCTAssertTrue(first.contains(true))
            for view in 1..<4 { XCTAssertEqual((0..<plane).map { v[(clip * 4 + view) * plane + $0] == 0 }, first, "clip \(clip) view \(view)") }
        }
    }

    /// The gather that replaces roll + window partition, against both done literally on a small grid.
    func testWindowOrderIsRollThenPartition() {
        let (rows, cols, w, s) = (8, 12, 4, 2)
        let (order, inverse) = SwinLayer.windowOrder(rows: rows, cols: cols, window: w, shift: s)
        // torch.roll(x, (-s, -s)): rolled[r][c] = x[(r + s) % rows][(c + s) % cols]; then windows row-major.
        var literal: [Int] = []
        for a in 0..<(rows / w) { for b in 0..<(cols / w) { for i in 0..<w { for j in 0..<w {
            let (r, c) = (a * w + i, b * w + j)
            literal.append(((r + s) % rows) * cols + (c + s) % cols)
        } } } }
        XCTAssertEqual(order, literal)
        XCTAssertEqual(Set(order).count, rows * cols, "a permutation")
        for (k, p) in order.enumerated() { XCTAssertEqual(inverse[p], k) }
        XCTAssertEqual(SwinLayer.windowOrder(rows: 4, cols: 4, window: 2, shift: 0).0, [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15])
    }

    /// The -100 mask: the top-left window of the rolled grid is one region (no mask); the bottom-right one
    /// holds four regions of s x s tokens, each attending only to its own four.
    func testShiftMaskRegions() {
        let mask = SwinLayer.shiftMask(rows: 8, cols: 8, window: 4, shift: 2)
        XCTAssertEqual(mask.shape, [4, 1, 16, 16])
        let n = 16
        func masked(_ window: Int, _ i: Int) -> Int { (0..<n).filter { mask.data[(window * n + i) * n + $0] == -100 }.count }
        XCTAssertEqual((0..<n).map { masked(0, $0) }, Array(repeating: 0, count: n))
        XCTAssertEqual((0..<n).map { masked(3, $0) }, Array(repeating: 12, count: n))
        XCTAssertEqual((0..<n).map { masked(1, $0) }, Array(repeating: 8, count: n), "top-right: two column regions")
        XCTAssertEqual(Set(mask.toArray()), [0, -100])
    }

    func testRelativePositionIndexIsSwinTable() {
        // torch: coords of a 2 x 2 window → relative_position_index.
        XCTAssertEqual(SwinSelfAttention.relativePositionIndex(window: 2), [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4])
        XCTAssertEqual(Set(SwinSelfAttention.relativePositionIndex(window: 8)).count, 225)
    }

    /// With T = spec·r frames nothing is interpolated: image[c·F + f][t] = bn(x)[c·spec + t][f].
    func testChunkToFrequencyFold() throws {
        var c = HTSATConfig()
        c.melBins = 4; c.specSize = 8; c.patchDim = 4; c.depths = [1]; c.heads = [1]; c.window = 2; c.frames = 16
        try c.validate()
        XCTAssertEqual(c.freqRatio, 2)
        let model = HTSAT(c)
        model.eval()
        let x = try Tensor((0..<64).map(Float.init), shape: [1, 16, 4])
        let image = try GradMode.noGrad { try model.image(x) }
        XCTAssertEqual(image.shape, [1, 1, 8, 8])
        let scale = 1 / (1 + Float(1e-5)).squareRoot()   // a fresh bn0: (x − 0) / √(1 + eps)
        let (im, xs) = (image.toArray(), x.toArray())
        for chunk in 0..<2 { for f in 0..<4 { for t in 0..<8 {
            XCTAssertEqual(im[(chunk * 4 + f) * 8 + t], xs[(chunk * 8 + t) * 4 + f] * scale, accuracy: 1e-4)
        } } }
        XCTAssertThrowsError(try model.image(Tensor.zeros([1, 17, 4]))) { XCTAssertTrue("\($0)".contains("T ≤ 16"), "\($0)") }
        XCTAssertThrowsError(try model.image(Tensor.zeros([1, 16, 5])))
    }

    /// Training: every parameter, the relative-position tables included, gets a finite gradient
    /// through shifted windows, the merging and the bicubic stretch.
    func testGradientsReachEveryParameter() throws {
        var c = HTSATConfig()
        c.melBins = 8; c.specSize = 32; c.patchDim = 4; c.depths = [2, 2]; c.heads = [1, 2]; c.window = 4; c.frames = 50
        c.dropPath = 0.1
        try c.validate()
        let model = HTSAT(c)
        model.train()
        let x = Tensor.randn([2, 50, 8])
        let loss = try model.embedding(x).square().sum()
        try loss.backward()
        for (key, p) in model.namedParameters() {
            let g = try XCTUnwrap(p.grad, key)
            XCTAssertTrue(g.toArray().allSatisfy(\.isFinite), key)
            XCTAssertGreaterThan(g.toArray().map(abs).max() ?? 0, 0, "\(key) has a zero gradient")
        }
    }

    func testConfigRefusesWhatItCannotRun() throws {
        var c = HTSATConfig.tiny
        XCTAssertNoThrow(try c.validate())
        XCTAssertEqual(c.width, 768)
        XCTAssertEqual(HTSATConfig.base.width, 1024)
        c.window = 16   // stage 4 is 8 x 8: smaller than the window and its relative-position table
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("windows"), "\($0)") }
        c = .tiny; c.heads = [4, 8, 16, 30]
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("heads"), "\($0)") }
        c = .tiny; c.depths = [2, 2, 1 << 40, 2]
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("the blocks of 1099511627782 x 12 x 768 x 768 is beyond"), "\($0)") }
        var text = BertConfig(vocabSize: 100, hiddenSize: 16, layers: 2, heads: 2, intermediateSize: 32)
        XCTAssertNoThrow(try text.validate())
        text.vocabSize = 1 << 40
        XCTAssertThrowsError(try text.validate()) { XCTAssertTrue("\($0)".contains("the token embedding of 1099511627776 x 16 is beyond"), "\($0)") }
        XCTAssertThrowsError(try HTSATConfig.fromHuggingFace(["enable_fusion": true, "fusion_type": "channel_map"])) { XCTAssertTrue("\($0)".contains("fusion"), "\($0)") }
        XCTAssertTrue(try HTSATConfig.fromHuggingFace(["enable_fusion": true]).fusion)
        XCTAssertThrowsError(try HTSATConfig.fromHuggingFace(["hidden_size": 512])) { XCTAssertTrue("\($0)".contains("768"), "\($0)") }
        XCTAssertEqual(try HTSATConfig.fromHuggingFace(["hidden_size": 768]), .tiny)
    }

    func testALoadedIndexForAnotherWindowIsRefused() throws {
        let file = clapFolder.appendingPathComponent("model.safetensors")
        var state = try SafeTensors.read(file).tensors
        let key = "audio_model.audio_encoder.layers.0.blocks.1.attention.self.relative_position_index"
        let index = try XCTUnwrap(state[key])
        state[key] = index.copy()
        state[key]!.data[0] += 1
        let config = try HTSATCheckpoint.config(clapFolder.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try HTSATCheckpoint.load(state, config: config)) { XCTAssertTrue("\($0)".contains(key), "\($0)") }
        state[key] = index
        state.removeValue(forKey: "audio_model.audio_encoder.norm.weight")
        XCTAssertThrowsError(try HTSATCheckpoint.load(state, config: config)) { XCTAssertTrue("\($0)".contains("norm.weight"), "\($0)") }
    }
}
