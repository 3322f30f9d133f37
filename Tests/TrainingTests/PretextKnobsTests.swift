import Foundation
import XCTest
import Engine
import Models
import NN
@testable import Training

/// `--generative-weight` and `--nce-temperature` reach the model, are checked, and leave older run
/// folders readable (their config.json has neither key).
final class PretextKnobsTests: XCTestCase {
    func makeModel() throws -> SSAST {
        let entry = try ModelRegistry.entry(named: "ssast-tiny-patch")
        let model = try XCTUnwrap(entry.pretrainer)(ModelShape(frames: 32, depth: 1))
        return try XCTUnwrap(model as? SSAST)
    }

    func testWeightsReachTheModel() throws {
        let model = try makeModel()
        var config = PretrainConfig()
        try applyPretextWeights(config, to: model)
        XCTAssertEqual([model.generativeWeight, model.nceTemperature], [10, 1], "SSAST's defaults when unset")
        (config.generativeWeight, config.nceTemperature) = (0, 0.2)
        try applyPretextWeights(config, to: model)
        XCTAssertEqual([model.generativeWeight, model.nceTemperature], [0, 0.2])
    }

    func testBadWeightsAreNamed() throws {
        let model = try makeModel()
        var config = PretrainConfig()
        config.generativeWeight = -1
        XCTAssertThrowsError(try applyPretextWeights(config, to: model)) { XCTAssertTrue("\($0)".contains("generative weight -1.0"), "\($0)") }
        (config.generativeWeight, config.nceTemperature) = (nil, 0)
        XCTAssertThrowsError(try applyPretextWeights(config, to: model)) { XCTAssertTrue("\($0)".contains("InfoNCE temperature 0.0"), "\($0)") }
        config.nceTemperature = .nan
        XCTAssertThrowsError(try applyPretextWeights(config, to: model))
    }

    func testConfigWithoutTheKeysStillDecodes() throws {
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(PretrainConfig())) as! [String: Any]
        json["generativeWeight"] = nil; json["nceTemperature"] = nil
        let decoded = try JSONDecoder().decode(PretrainConfig.self, from: JSONSerialization.data(withJSONObject: json))
        XCTAssertNil(decoded.generativeWeight)
        XCTAssertNil(decoded.nceTemperature)
        XCTAssertEqual(decoded.maskCount, PretrainConfig().maskCount)
    }

    /// `clipContrastWeight` turns the model's clip-level term on with its temperature; a model without
    /// such a term is refused by name.
    func testClipContrastReachesTheModel() throws {
        let model = try makeModel()
        var config = PretrainConfig()
        (config.clipContrastWeight, config.clipTemperature) = (2, 0.3)
        try applyPretextWeights(config, to: model)
        XCTAssertEqual([model.clipContrastWeight, model.clipTemperature], [2, 0.3])
        XCTAssertTrue(model.wantsTwoViews)
        config.clipTemperature = -1
        XCTAssertThrowsError(try applyPretextWeights(config, to: try makeModel())) { XCTAssertTrue("\($0)".contains("temperature -1.0"), "\($0)") }
    }

    /// Views: windows of the crop length; with no mixing each view of a clip that is one constant is
    /// that constant; mixed, every value lies between the batch's quietest and loudest clip (energies
    /// are averaged) and clip i's view moves off its own level; seeded; a batch of one is not mixed.
    func testTwoViewsAreWindowsMixedWithOtherClips() throws {
        let levels: [Float] = [-1, 0, 0.5, 2]
        let features = try Tensor.stack(levels.map { Tensor.full([40, 8], $0) })
        var g = RandomGenerator(seed: 1)
        let plain = PretextViews(cropFrames: 16, padValue: -9, mixRatio: 0)
        let (a, b) = try plain.twoViews(features, &g)
        XCTAssertEqual(a.shape, [4, 16, 8])
        XCTAssertEqual(a.toArray(), b.toArray())
        XCTAssertEqual(a.toArray(), levels.flatMap { Array(repeating: $0, count: 16 * 8) })
        let views = PretextViews(cropFrames: 16, padValue: -9, mixRatio: 0.4, scale: 3)
        var g1 = RandomGenerator(seed: 2), g2 = RandomGenerator(seed: 2)
        let (m1, m2) = try views.twoViews(features, &g1)
        XCTAssertEqual(m1.toArray(), try views.twoViews(features, &g2).0.toArray())
        XCTAssertNotEqual(m1.toArray(), m2.toArray(), "each view draws its own background and ratio")
        XCTAssertTrue(m1.toArray().allSatisfy { $0 >= -1 - 1e-5 && $0 <= 2 + 1e-5 })
        for i in 0..<4 { XCTAssertNotEqual(m1.data[i * 128], levels[i], accuracy: 1e-4, "clip \(i) mixed with another") }
        let single = try views.twoViews(try features.slice(axis: 0, start: 2, end: 3), &g1)
        XCTAssertEqual(single.0.toArray(), Array(repeating: 0.5, count: 128))
    }
}
