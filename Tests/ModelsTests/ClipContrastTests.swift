import Foundation
import XCTest
import Engine
import NN
@testable import Models

/// The clip-level contrastive term SSAST pretraining can add (`setClipContrast`): its formula, its
/// gradient, how it joins the joint objective, and that it is off (and absent from checkpoints) by default.
final class ClipContrastTests: XCTestCase {
    func makeModel(seed: UInt64 = 3) -> SSAST {
        Random.seed(seed)
        var c = ASTConfig(dim: 16, depth: 1, heads: 2, mlpHidden: 32, labelDim: 1)
        (c.inputFdim, c.inputTdim, c.fshape, c.tshape, c.fstride, c.tstride) = (32, 16, 32, 2, 32, 2)
        return SSAST(c)
    }

    /// loss = ½[CE(z₁z₂ᵀ/τ, diag) + CE(z₂z₁ᵀ/τ, diag)] with z = P(x)/‖P(x)‖, computed here in Double from
    /// the head's own outputs; accuracy = share of rows of z₁z₂ᵀ whose largest entry is the diagonal.
    func testClipContrastIsTheSymmetricInfoNCEOfUnitProjections() throws {
        let model = makeModel()
        try model.setClipContrast(weight: 1, temperature: 0.2, projection: 8)
        var g = RandomGenerator(seed: 5)
        let a = Tensor.randn([4, 16], generator: &g), b = Tensor.randn([4, 16], generator: &g)
        let r = try model.clipContrast(a, b)
        let head = try XCTUnwrap(model.clipProjection)
        func unit(_ x: Tensor) throws -> [[Double]] {
            let z = try head(x)
            return (0..<4).map { i in
                let row = (0..<8).map { Double(z.data[i * 8 + $0]) }
                let norm = row.map { $0 * $0 }.reduce(0, +).squareRoot()
                return row.map { $0 / norm }
            }
        }
        let (za, zb) = (try unit(a), try unit(b))
        let logits = (0..<4).map { i in (0..<4).map { j in zip(za[i], zb[j]).map(*).reduce(0, +) / 0.2 } }
        func ce(_ m: [[Double]]) -> Double {
            (0..<4).map { i in -(m[i][i] - Foundation.log(m[i].map(Foundation.exp).reduce(0, +))) }.reduce(0, +) / 4
        }
        let transposed = (0..<4).map { i in (0..<4).map { j in logits[j][i] } }
        XCTAssertEqual(Double(try r.loss.item()), (ce(logits) + ce(transposed)) / 2, accuracy: 1e-4)
        let hits = (0..<4).filter { i in logits[i].indices.max { logits[i][$0] < logits[i][$1] } == i }.count
        XCTAssertEqual(r.accuracy, Float(hits) / 4)
        // Two identical views of well-separated clips: each finds itself.
        XCTAssertEqual(try model.clipContrast(a, a).accuracy, 1)
        XCTAssertThrowsError(try model.clipContrast(a, Tensor.zeros([3, 16])))
    }

    /// Reverse-mode gradients of the term with respect to both views' pooled inputs against central
    /// finite differences.
    func testClipContrastGradientMatchesFiniteDifferences() throws {
        let model = makeModel()
        try model.setClipContrast(weight: 1, temperature: 0.5, projection: 6)
        var g = RandomGenerator(seed: 6)
        let a = Tensor.randn([3, 16], generator: &g).requiringGrad(), b = Tensor.randn([3, 16], generator: &g).requiringGrad()
        try model.clipContrast(a, b).loss.backward()
        let eps: Float = 2e-3   // small: the head's ReLU has kinks a wider stencil can straddle
        for (k, t) in [a, b].enumerated() {
            let analytic = try XCTUnwrap(t.grad)
            for i in 0..<t.count {
                let saved = t.data[i]
                t.data[i] = saved + eps
                let up = try GradMode.noGrad { try model.clipContrast(a, b).loss.item() }
                t.data[i] = saved - eps
                let down = try GradMode.noGrad { try model.clipContrast(a, b).loss.item() }
                t.data[i] = saved
                let numeric = (up - down) / (2 * eps)
                XCTAssertEqual(analytic.data[i], numeric, accuracy: 1e-3 + 2e-2 * abs(numeric), "view \(k) element \(i)")
            }
        }
    }

    /// Off by default: the joint loss is SSAST's, no clip accuracy, no `clip_projection` keys. On: the
    /// second view feeds the generative pass (same masks as without the term), the loss adds c times the
    /// term, and the head's keys appear.
    func testJointLossAddsTheWeightedTermOnlyWhenOn() throws {
        let model = makeModel()
        var g = RandomGenerator(seed: 7)
        let x = Tensor.randn([3, 16, 32], generator: &g), y = Tensor.randn([3, 16, 32], generator: &g)
        XCTAssertFalse(model.wantsTwoViews)
        var masks = RandomGenerator(seed: 9)
        let off = try model.jointLoss(x, maskCount: 3, generator: &masks)
        XCTAssertTrue(off.clip.isNaN)
        XCTAssertFalse(model.stateDict().keys.contains { $0.hasPrefix("clip_projection") })

        try model.setClipContrast(weight: 0.5)
        XCTAssertTrue(model.wantsTwoViews)
        XCTAssertEqual(Set(model.stateDict().keys.filter { $0.hasPrefix("clip_projection") }),
                       ["clip_projection.0.weight", "clip_projection.0.bias", "clip_projection.2.weight", "clip_projection.2.bias"])
        masks = RandomGenerator(seed: 9)
        let same = try model.jointLoss(x, secondView: nil, maskCount: 3, generator: &masks)
        XCTAssertEqual(same.nce, off.nce, accuracy: 1e-6, "same masks, same first pass")
        XCTAssertEqual(same.mse, off.mse, accuracy: 1e-6, "no second view: the generative pass sees x")
        masks = RandomGenerator(seed: 9)
        let on = try model.jointLoss(x, secondView: y, maskCount: 3, generator: &masks)
        XCTAssertEqual(on.nce, off.nce, accuracy: 1e-6)
        XCTAssertNotEqual(on.mse, off.mse, accuracy: 1e-6, "the generative pass sees the second view")
        // The term itself, recomputed from the two passes with the same masks.
        masks = RandomGenerator(seed: 9)
        let m1 = try (0..<3).map { _ in try model.maskIndices(count: 3, generator: &masks) }
        let m2 = try (0..<3).map { _ in try model.maskIndices(count: 3, generator: &masks) }
        let term = try model.clipContrast(model.tokenMean(model.maskedPass(x, mask: m1).hidden),
                                            model.tokenMean(model.maskedPass(y, mask: m2).hidden))
        XCTAssertEqual(try on.loss.item(), on.nce + 10 * on.mse + 0.5 * (try term.loss.item()), accuracy: 1e-4)
        XCTAssertEqual(on.clip, term.accuracy)
        let viaProtocol = try model.pretextLoss(x, secondView: y, maskCount: 3, generator: &masks)
        XCTAssertNotNil(viaProtocol.metrics["clip_accuracy"])
        XCTAssertThrowsError(try model.jointLoss(x, secondView: Tensor.zeros([3, 16, 31]), maskCount: 3, generator: &masks))
        XCTAssertThrowsError(try model.setClipContrast(weight: -1))
        XCTAssertThrowsError(try model.setClipContrast(weight: 1, temperature: 0))
    }

    /// A few optimizer steps on two noisy views of the same random "clips" make the views find each
    /// other: the term can be learned, not only computed.
    func testClipContrastTrainsViewsTogether() throws {
        let model = makeModel(seed: 11)
        try model.setClipContrast(weight: 1)
        var g = RandomGenerator(seed: 12)
        let clips = Tensor.randn([6, 16, 32], generator: &g)
        let opt = AdamW(model.trainableParameters(), lr: 3e-3)
        var first = Float.nan, last = Float.nan
        for step in 0..<30 {
            let a = try clips + Tensor.randn([6, 16, 32], generator: &g) * 0.5
            let b = try clips + Tensor.randn([6, 16, 32], generator: &g) * 0.5
            let m = try (0..<6).map { _ in try model.maskIndices(count: 3, generator: &g) }
            let r = try model.clipContrast(model.tokenMean(model.maskedPass(a, mask: m).hidden),
                                           model.tokenMean(model.maskedPass(b, mask: m).hidden))
            if step == 0 { first = try r.loss.item() }
            last = try r.loss.item()
            opt.zeroGrad(); try r.loss.backward(); try opt.step()
        }
        XCTAssertLessThan(last, first * 0.5, "the term fell from \(first) to \(last)")
    }
}
