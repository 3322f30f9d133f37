import XCTest
import Engine

/// Central differences of `value` at every `samples`-th element of each probed tensor against the
/// gradient a backward pass left in it, within 1e-2 + `relative`·|numeric|. A step of 1e-3: ReLU kinks
/// lie close to some of the positions a weight moves.
func assertGradientsMatchFiniteDifferences(_ probes: [(String, Tensor)], samples: Int, relative: Float, _ what: String = "",
                                           value: () throws -> Float, file: StaticString = #filePath, line: UInt = #line) throws {
    for (name, t) in probes {
        let grad = try XCTUnwrap(t.grad, "\(name) got no gradient", file: file, line: line)
        for i in stride(from: 0, to: t.count, by: max(1, t.count / samples)) {
            let saved = t.data[i], eps: Float = 1e-3
            t.data[i] = saved + eps; let up = try GradMode.noGrad { try value() }
            t.data[i] = saved - eps; let down = try GradMode.noGrad { try value() }
            t.data[i] = saved
            let numeric = (up - down) / (2 * eps)
            XCTAssertEqual(grad.data[i], numeric, accuracy: 1e-2 + relative * abs(numeric), "\(name)[\(i)] \(what)", file: file, line: line)
        }
    }
}
