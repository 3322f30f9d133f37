import Foundation
import XCTest
@testable import Engine
@testable import NN

/// A bad tensor in a mixer is named with its branch's keys: a NaN `A_b_log` (a corrupt checkpoint)
/// reaches the backward branch's scan as a NaN A, and the error says which branch and tensor.
final class MambaBadInputTests: XCTestCase {
    func testNonFiniteParameterNamesTheBranch() throws {
        Random.global = RandomGenerator(seed: 3)
        let m = MambaMixer(MambaConfig(dim: 16, stateSize: 4))
        var g = RandomGenerator(seed: 4)
        let u = Tensor.randn([1, 9, 16], generator: &g)
        XCTAssertNoThrow(try GradMode.noGrad { try m(u) })
        m.aBLog!.data[5] = .nan
        for flipped in [false, true] {
            XCTAssertThrowsError(try GradMode.noGrad { try m(u, flipped: flipped) }) {
                let s = "\($0)"
                XCTAssertTrue(s.hasPrefix("MambaMixer backward branch (conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b): selectiveScan: input A"), s)
            }
        }
        m.aBLog!.data[5] = 0
        m.dtProj.bias!.data[2] = .infinity
        XCTAssertThrowsError(try GradMode.noGrad { try m(u) }) {
            XCTAssertTrue("\($0)".hasPrefix("MambaMixer forward branch (conv1d, x_proj, dt_proj, A_log, D): selectiveScan: input deltaBias"), "\($0)")
        }
    }
}
