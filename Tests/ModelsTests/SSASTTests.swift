import Foundation
import XCTest
import Engine
import NN
@testable import Models

final class SSASTTests: XCTestCase {
    static let fx = try? SafeTensors.read(modelFixtures.appendingPathComponent("ssast_parity.safetensors")).tensors

    func makeModel() throws -> SSAST {
        var c = ASTConfig(dim: 32, depth: 2, heads: 4, mlpHidden: 128, labelDim: 1)
        (c.inputFdim, c.inputTdim, c.fshape, c.tshape, c.fstride, c.tstride) = (32, 64, 16, 16, 16, 16)
        let model = SSAST(c)
        let state = try XCTUnwrap(Self.fx).filter { model.stateDict()[$0.key] != nil }
        try model.load(stateDict: state)
        return model
    }

    /// mpc (InfoNCE and its accuracy), mpg (MSE) and gradients against the reference formulation.
    func testPretextTasksMatchReference() throws {
        let fx = try XCTUnwrap(Self.fx)
        let model = try makeModel()
        let x = try XCTUnwrap(fx["input"])
        let mask = [[1, 3, 6], [0, 5, 7]]
        XCTAssertEqual(try model.unfoldTargets(x).toArray(), try XCTUnwrap(fx["targets"]).toArray())
        let (nce, acc) = try model.mpc(x, mask: mask)
        XCTAssertEqual(try nce.item(), try XCTUnwrap(fx["nce"]).item(), accuracy: 1e-4)
        XCTAssertEqual(acc, try XCTUnwrap(fx["acc"]).item(), accuracy: 1e-6)
        XCTAssertEqual(try model.mpg(x, mask: mask).item(), try XCTUnwrap(fx["mse"]).item(), accuracy: 1e-4)
        try nce.backward()
        for key in ["mask_embed", "v.patch_embed.proj.weight"] {
            let ours = try XCTUnwrap(model.namedParameters().first { $0.0 == key }?.1.grad)
            let ref = try XCTUnwrap(fx["grad." + key])
            XCTAssertLessThanOrEqual(maxAbs(ours, ref), 1e-5 + 1e-3 * (ref.toArray().map(abs).max() ?? 0), key)
        }
    }

    func testMasksFollowTheReferenceRules() throws {
        var g = RandomGenerator(seed: 3)
        for _ in 0..<50 {
            let m = Masking.cluster(count: 400, of: 512, rowLength: 64, generator: &g)
            XCTAssertEqual(m.count, 400)
            XCTAssertEqual(Set(m).count, 400)
            XCTAssertFalse(m.contains(0), "index 0 is never masked")
            XCTAssertTrue(m.allSatisfy { $0 > 0 && $0 < 512 })
        }
        let r = Masking.random(count: 100, of: 512, generator: &g)
        XCTAssertEqual(Set(r).count, 100)
        // Cluster masks are contiguous blobs: most masked patches have a masked horizontal neighbour.
        let m = Set(Masking.cluster(count: 100, of: 512, rowLength: 64, generator: &g))
        XCTAssertGreaterThan(Float(m.filter { m.contains($0 + 1) || m.contains($0 - 1) }.count) / 100, 0.8)
    }

    func testJointLossTrainsAndConfigsHaveReferenceShapes() throws {
        let frame = try XCTUnwrap(SSAST.config("tiny", variant: .frame, inputTdim: 1024))
        XCTAssertEqual(frame.patches, 512)
        XCTAssertEqual(frame.fGrid, 1)
        let patch = try XCTUnwrap(SSAST.config("tiny", variant: .patch, inputTdim: 1024))
        XCTAssertEqual(patch.patches, 512)
        XCTAssertEqual(Set(SSAST(patch).stateDict().keys).filter { !$0.hasPrefix("v.") }.sorted(),
                       ["cpredlayer.0.bias", "cpredlayer.0.weight", "cpredlayer.2.bias", "cpredlayer.2.weight",
                        "gpredlayer.0.bias", "gpredlayer.0.weight", "gpredlayer.2.bias", "gpredlayer.2.weight",
                        "mask_embed", "p_input_fdim", "p_input_tdim"])
        // A few AdamW steps on one batch with fixed masks lower both pretext losses (memorisation).
        Random.seed(1)
        var c = ASTConfig(dim: 32, depth: 1, heads: 2, mlpHidden: 64, labelDim: 1)
        (c.inputFdim, c.inputTdim, c.fshape, c.tshape, c.fstride, c.tstride) = (32, 64, 16, 16, 16, 16)
        let model = SSAST(c)
        let x = Tensor.randn([4, 64, 32])
        let opt = AdamW(model.trainableParameters(), lr: 3e-3)
        let mask = [[1, 2, 6], [0, 3, 7], [4, 5, 6], [1, 5, 7]]
        var first: Float = 0, last: Float = 0
        for step in 0..<40 {
            let loss = try model.mpc(x, mask: mask).nce + model.mpg(x, mask: mask) * 10
            if step == 0 { first = try loss.item() }
            last = try loss.item()
            opt.zeroGrad(); try loss.backward(); try opt.step()
        }
        XCTAssertLessThan(last, first * 0.5)
        var g = RandomGenerator(seed: 2)
        let joint = try model.jointLoss(x, maskCount: 3, generator: &g)
        XCTAssertEqual(try joint.loss.item(), joint.nce + 10 * joint.mse, accuracy: 1e-4)
        XCTAssertThrowsError(try model.maskIndices(count: 8, generator: &g))
    }

    /// The objective's knobs: nce(τ) + w·mse with the same masks as the default, w = 0 skipping the
    /// generative pass, and τ dividing the InfoNCE logits (τ = 0.5 on the same masks is the loss of
    /// predictions scaled by 2 at τ = 1).
    func testPretextWeightsAndTemperature() throws {
        Random.seed(3)
        var c = ASTConfig(dim: 32, depth: 1, heads: 2, mlpHidden: 64, labelDim: 1)
        (c.inputFdim, c.inputTdim, c.fshape, c.tshape, c.fstride, c.tstride) = (32, 64, 16, 16, 16, 16)
        let model = SSAST(c)
        let x = Tensor.randn([2, 64, 32])
        var g = RandomGenerator(seed: 4)
        let reference = try model.jointLoss(x, maskCount: 3, generator: &g)
        model.generativeWeight = 2.5
        g = RandomGenerator(seed: 4)
        let weighted = try model.jointLoss(x, maskCount: 3, generator: &g)
        XCTAssertEqual(weighted.nce, reference.nce, accuracy: 1e-5)
        XCTAssertEqual(weighted.mse, reference.mse, accuracy: 1e-5)
        XCTAssertEqual(try weighted.loss.item(), weighted.nce + 2.5 * weighted.mse, accuracy: 1e-4)
        model.generativeWeight = 0
        g = RandomGenerator(seed: 4)
        let discriminative = try model.jointLoss(x, maskCount: 3, generator: &g)
        XCTAssertEqual(try discriminative.loss.item(), reference.nce, accuracy: 1e-5)
        XCTAssertTrue(discriminative.mse.isNaN)

        let mask = [[1, 2, 6], [0, 3, 7]]
        let t = try model.maskedTargets(x, mask: mask)
        let pred = try model.cpredlayer(model.maskedHidden(x, mask: mask))
        let scaled = try Losses.infoNCE(t, pred * 2).item()
        XCTAssertNotEqual(scaled, try model.mpc(x, mask: mask).nce.item(), accuracy: 1e-3)
        model.nceTemperature = 0.5
        XCTAssertEqual(try model.mpc(x, mask: mask).nce.item(), scaled, accuracy: 1e-3 * max(1, abs(scaled)))
    }
}
