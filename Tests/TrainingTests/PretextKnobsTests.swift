import Foundation
import XCTest
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
}
