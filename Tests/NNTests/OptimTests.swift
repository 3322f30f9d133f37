import Foundation
import XCTest
import Engine
@testable import NN

/// Three optimizer steps with fixed gradients against torch.optim (fixtures in EngineTests).
final class OptimTests: XCTestCase {
    static let ops: [String: [Float]] = {
        let url = fixturesDir.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("EngineTests/Fixtures/ops.json")
        guard let data = try? Data(contentsOf: url),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else { return [:] }
        return json.mapValues { ($0["data"] as? [NSNumber] ?? []).map(\.floatValue) }
    }()

    func run(_ make: ([Tensor]) -> any Optimizer) throws -> [Float] {
        let p = Tensor(try XCTUnwrap(Self.ops["optim.p0"])).requiringGrad()
        let opt = make([p])
        for i in 0..<3 {
            p.grad = Tensor(try XCTUnwrap(Self.ops["optim.grad\(i)"]))
            try opt.step()
        }
        return p.toArray()
    }

    func check(_ got: [Float], _ key: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let want = try XCTUnwrap(Self.ops[key])
        for (a, b) in zip(got, want) { XCTAssertEqual(a, b, accuracy: 2e-6, key, file: file, line: line) }
    }

    func testOptimizersMatchTorch() throws {
        try check(run { SGD($0, lr: 0.1, momentum: 0.9, weightDecay: 0.01) }, "optim.sgd")
        try check(run { SGD($0, lr: 0.1, momentum: 0.9, nesterov: true) }, "optim.sgd_nesterov")
        try check(run { Adam($0, lr: 0.01, betas: (0.95, 0.999), weightDecay: 0.1) }, "optim.adam")
        try check(run { AdamW($0, lr: 0.01, weightDecay: 0.1) }, "optim.adamw")
        try check(run { AdamW($0, lr: 0.01, weightDecay: 0.1, amsgrad: true) }, "optim.adamw_amsgrad")
    }

    func testOptimizerStateRoundTripsForResume() throws {
        let p0 = Tensor.randn([5])
        let grads = (0..<4).map { _ in Tensor.randn([5]) }
        let a = p0.copy().requiringGrad(), b = p0.copy().requiringGrad()
        let optA = AdamW([a], lr: 0.01)
        for g in grads { a.grad = g; try optA.step() }
        let optB = AdamW([b], lr: 0.01)
        for g in grads.prefix(2) { b.grad = g; try optB.step() }
        let saved = optB.stateTensors().mapValues { $0.copy() }
        let optC = AdamW([b], lr: 0.01)
        try optC.loadState(saved)
        for g in grads.suffix(2) { b.grad = g; try optC.step() }
        XCTAssertEqual(a.toArray(), b.toArray())
    }

    func testParameterGroupsUseTheirOwnRates() throws {
        let p = Tensor([1]).requiringGrad(), q = Tensor([1]).requiringGrad()
        let opt = SGD([ParameterGroup([p], lr: 0.1), ParameterGroup([q], lr: 1)])
        p.grad = Tensor([1]); q.grad = Tensor([1])
        try opt.step()
        XCTAssertEqual(p.data[0], 0.9, accuracy: 1e-7)
        XCTAssertEqual(q.data[0], 0, accuracy: 1e-7)
    }

    func testNaNGradientIsAnError() {
        let p = Tensor([1, 2]).requiringGrad()
        p.grad = Tensor([.nan, 0])
        XCTAssertThrowsError(try AdamW([p]).step()) { XCTAssertTrue("\($0)".contains("NaN")) }
    }

    func testSchedules() {
        let warm = WarmupSchedule(warmupSteps: 4, then: CosineSchedule(totalSteps: 10, minLR: 0.1))
        XCTAssertEqual(warm.lr(step: 0, base: 1), 0.25, accuracy: 1e-6)
        XCTAssertEqual(warm.lr(step: 3, base: 1), 1, accuracy: 1e-6)
        XCTAssertEqual(warm.lr(step: 4, base: 1), 1, accuracy: 1e-6)
        XCTAssertEqual(warm.lr(step: 9, base: 1), 0.55, accuracy: 1e-6)
        XCTAssertEqual(warm.lr(step: 14, base: 1), 0.1, accuracy: 1e-6)
        let ms = MultiStepSchedule(milestones: [2, 4], gamma: 0.5)
        XCTAssertEqual([0, 2, 3, 4, 9].map { ms.lr(step: $0, base: 1) }, [1, 0.5, 0.5, 0.25, 0.25])
        var plateau = ReduceOnPlateau(mode: .max, factor: 0.5, patience: 1)
        XCTAssertEqual(plateau.observe(0.5, base: 1), 1)
        XCTAssertEqual(plateau.observe(0.4, base: 1), 1)
        XCTAssertEqual(plateau.observe(0.4, base: 1), 0.5)
        XCTAssertEqual(plateau.observe(0.6, base: 1), 0.5)
    }

    func testClipGradNorm() {
        let p = Tensor([0, 0]).requiringGrad()
        p.grad = Tensor([3, 4])
        XCTAssertEqual(clipGradNorm([p], maxNorm: 1), 5, accuracy: 1e-5)
        XCTAssertEqual(p.grad!.data[0], 0.6, accuracy: 1e-5)
        XCTAssertEqual(p.grad!.data[1], 0.8, accuracy: 1e-5)
    }

    func testInfoNCE() throws {
        // Perfectly aligned, well-separated pairs give a loss near zero and accuracy 1.
        let e = try Tensor([10, 0, 0, 0, 10, 0, 0, 0, 10], shape: [3, 3])
        XCTAssertLessThan(try Losses.infoNCE(e, e).item(), 1e-3)
        XCTAssertEqual(try Losses.infoNCEAccuracy(e, e), 1)
        let shuffled = try e.indexSelect(axis: 0, indices: [1, 2, 0])
        XCTAssertGreaterThan(try Losses.infoNCE(e, shuffled).item(), 5)
    }
}
