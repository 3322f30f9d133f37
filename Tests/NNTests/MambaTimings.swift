import Foundation
import XCTest
@testable import Engine
@testable import NN

/// SSAMBA-tiny's mixer (dim 192, 513 tokens, batch 2): inference, one scan alone, and a training
/// step's forward and backward. Runs only with EARSHOT_SCAN_BENCH=1 (medians of 7).
final class MambaTimings: XCTestCase {
    func testMixerTiming() throws {
        guard ProcessInfo.processInfo.environment["EARSHOT_SCAN_BENCH"] == "1" else { throw XCTSkip("opt-in") }
        let m = MambaMixer(MambaConfig(dim: 192), layers: 24)
        let u = Tensor.randn([2, 513, 192])
        let g = Tensor.randn([2, 513, 192])
        func med(_ f: () throws -> Void) rethrows -> Double {
            var t: [Double] = []
            for _ in 0..<7 { let s = DispatchTime.now().uptimeNanoseconds; try f(); t.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e6) }
            return t.sorted()[3]
        }
        let inf = try med { _ = try GradMode.noGrad { try m(u) } }
        let train = try med { try m(u.copy().requiringGrad()).backward(g) }
        var scanOnly = 0.0
        do {
            let x = Tensor.randn([2, 513, 384]), z = Tensor.randn([2, 513, 384])
            let d = Tensor.randn([2, 513, 384]), b = Tensor.randn([2, 513, 16]), c = Tensor.randn([2, 513, 16])
            let a = m.aLog.exp() * -1
            scanOnly = try med { _ = try GradMode.noGrad { try Tensor.selectiveScan(x, delta: d, a: a, b: b, c: c, d: m.d, z: z, deltaBias: m.dtProj.bias) } }
        }
        print(String(format: "mixer tiny B=2 L=513: inference %.2f ms (one scan %.2f ms), forward+backward %.2f ms", inf, scanOnly, train))
    }
}
