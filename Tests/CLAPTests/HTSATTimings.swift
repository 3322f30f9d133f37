import Foundation
import XCTest
import Engine
import NN
@testable import Models

/// The real HTSAT-tiny size (28M parameters, 1001 x 64 features): shapes always, timings where
/// EARSHOT_CLAP_TIMING is set (it takes seconds, too slow for the suite on a small machine).
final class HTSATTimings: XCTestCase {
    func testHTSATTinyShapesAndTiming() throws {
        let config = HTSATConfig.tiny
        XCTAssertEqual(config.grid.rows, 64)
        XCTAssertEqual(config.specWidth, 1024)
        let model = Random.withoutInitialisation { HTSAT(config) }
        XCTAssertEqual(model.tokenCount, 64, "an 8 x 8 grid after three mergings")
        XCTAssertEqual(model.layers.map { $0.blocks.map(\.shift) }, [[0, 4], [0, 4], [0, 4, 0, 4, 0, 4], [0, 0]])
        let params = model.parameterCount()
        XCTAssertGreaterThan(params, 27_000_000)
        XCTAssertLessThan(params, 29_000_000)
        guard ProcessInfo.processInfo.environment["EARSHOT_CLAP_TIMING"] != nil else { return }
        model.eval()
        for batch in [1, 4] {
            let x = Tensor.randn([batch, 1001, 64])
            _ = try GradMode.noGrad { try model.embedding(x) }   // warm the buffer pool
            let start = Date()
            let e = try GradMode.noGrad { try model.embedding(x) }
            let s = Date().timeIntervalSince(start)
            XCTAssertEqual(e.shape, [batch, 768])
            print(String(format: "HTSAT-tiny forward, batch %d: %.3f s (%.3f s per clip), %d parameters", batch, s, s / Double(batch), params))
        }
    }
}
