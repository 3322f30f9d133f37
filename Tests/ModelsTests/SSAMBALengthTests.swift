import Foundation
import XCTest
@testable import Engine
@testable import NN
@testable import Models

/// SSAMBA on clips of other lengths than it was built for (positions interpolated, refused while
/// training or where only patch tokens are given), and checkpoints whose mixer keys are missing,
/// extra or mis-shaped (named in the error).
final class SSAMBALengthTests: XCTestCase {
    /// Width 16, 4 states, one layer pair, 32 bins x 48 frames: a 2 x 3 patch grid.
    func model() -> AMBA {
        Random.global = RandomGenerator(seed: 21)
        var c = AMBAConfig(dim: 16, depth: 2, labelDim: 3)
        (c.stateSize, c.inputFdim, c.inputTdim) = (4, 32, 48)
        let m = AMBA(c)
        var g = RandomGenerator(seed: 22)
        for i in 0..<m.v.posEmbed.count { m.v.posEmbed.data[i] = g.nextNormal() }
        m.eval()
        return m
    }

    func features(_ frames: Int, seed: UInt64 = 23) -> Tensor {
        var g = RandomGenerator(seed: seed)
        return Tensor.randn([1, frames, 32], generator: &g)
    }

    func testLongerClipsInterpolatePositionsAlongTime() throws {
        let m = model(), v = m.v
        XCTAssertTrue(m.takesAnyLength)
        // 100 frames: (100 − 16)/16 + 1 = 6 patch columns against the trained 3.
        XCTAssertEqual(v.timeGrid(frames: 100), 6)
        let pos = try v.positions(frames: 100)
        XCTAssertEqual(pos.shape, [1, 1 + 2 * 6, 16])
        // cls position kept; 2x bilinear with half-pixel centres (PyTorch's align_corners=False): new
        // column j samples old column (j + ½)/2 − ½, clamped, so 0 → 0, 1 → 0.25, 5 → 2.
        let p = v.posEmbed
        func old(_ f: Int, _ t: Int, _ k: Int) -> Float { p.data[(1 + f * 3 + t) * 16 + k] }
        func new(_ f: Int, _ t: Int, _ k: Int) -> Float { pos.data[(1 + f * 6 + t) * 16 + k] }
        for k in 0..<16 {
            XCTAssertEqual(pos.data[k], p.data[k])
            for f in 0..<2 {
                XCTAssertEqual(new(f, 0, k), old(f, 0, k), accuracy: 1e-6)
                XCTAssertEqual(new(f, 5, k), old(f, 2, k), accuracy: 1e-6)
                XCTAssertEqual(new(f, 1, k), 0.75 * old(f, 0, k) + 0.25 * old(f, 1, k), accuracy: 1e-5)
            }
        }
        let x = features(100)
        let tokens = try GradMode.noGrad { try v.tokens(x) }
        XCTAssertEqual(tokens.shape, [1, 13, 16])
        let expected = try GradMode.noGrad { try v.transform(v.patchTokens(x), positions: pos) }
        XCTAssertEqual(tokens.toArray(), expected.toArray())
        // The trained length takes the trained positions as before; the classifier pools any length.
        XCTAssertTrue(try v.positions(frames: 48) === v.posEmbed)
        XCTAssertEqual(try GradMode.noGrad { try m.logits(x) }.shape, [1, 3])
        XCTAssertEqual(try GradMode.noGrad { try m.logits(self.features(33)) }.shape, [1, 3], "a shorter clip: middle columns")
    }

    /// Without autograd the blocks share each pair's residual and drop old tensors early: the same
    /// numbers as the recorded path, which forms both residuals.
    func testInferenceBlocksEqualTheRecordedPath() throws {
        Random.global = RandomGenerator(seed: 24)
        var c = AMBAConfig(dim: 16, depth: 4, labelDim: 3)
        c.stateSize = 4
        let v = AMBAEncoder(c)
        v.eval()
        var g = RandomGenerator(seed: 25)
        let x = Tensor.randn([2, 13, 16], generator: &g)
        let recorded = try v.blocks(x).toArray()
        let fast = try GradMode.noGrad { try v.blocks(x) }.toArray()
        for (a, b) in zip(recorded, fast) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }

    func testOtherLengthsAreRefusedWhereTheyCannotWork() throws {
        let m = model(), v = m.v
        // Patch tokens beyond what pos_embed covers: refused, with the limit named.
        let patches = Tensor.zeros([1, 9, 16])
        XCTAssertThrowsError(try GradMode.noGrad { try v.transform(patches) }) {
            XCTAssertTrue("\($0)".contains("9 patch tokens") && "\($0)".contains("pos_embed covers 6 patches, a 2 x 3 grid of 48 frames"), "\($0)")
        }
        // Training on another length would give pos_embed no gradient: refused.
        m.train()
        XCTAssertThrowsError(try v.tokens(features(100))) {
            XCTAssertTrue("\($0)".contains("100 frames while training") && "\($0)".contains("trains on 48"), "\($0)")
        }
        XCTAssertNoThrow(try v.tokens(features(48)))
        // Shorter than one patch, or another bin count.
        XCTAssertThrowsError(try GradMode.noGrad { try v.tokens(self.features(15)) }) { XCTAssertTrue("\($0)".contains("T ≥ 16"), "\($0)") }
        XCTAssertThrowsError(try GradMode.noGrad { try v.tokens(Tensor.zeros([1, 48, 31])) })
    }

    /// An Earshot checkpoint whose mixer tensors are missing, extra or of another shape: the load
    /// names the key (what `Classifier.load` and the release readers call).
    func testMixerKeyProblemsNameTheKey() throws {
        let good = model().stateDict()
        func loadError(_ state: [String: Tensor]) -> String {
            do { _ = try model().load(stateDict: state); return "" } catch { return "\(error)" }
        }
        XCTAssertEqual(loadError(good), "")
        var missing = good
        missing["v.layers.1.mixer.A_b_log"] = nil
        XCTAssertTrue(loadError(missing).contains("v.layers.1.mixer.A_b_log"), loadError(missing))
        var extra = good
        extra["v.layers.0.mixer.conv1d_c.weight"] = Tensor.zeros([32, 1, 4])
        XCTAssertTrue(loadError(extra).contains("v.layers.0.mixer.conv1d_c.weight"), loadError(extra))
        var shaped = good
        shaped["v.layers.0.mixer.x_proj_b.weight"] = Tensor.zeros([10, 32])
        let m = loadError(shaped)
        XCTAssertTrue(m.contains("v.layers.0.mixer.x_proj_b.weight") && m.contains("[9, 32]") && m.contains("[10, 32]"), m)
    }
}
