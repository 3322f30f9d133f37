import XCTest
@testable import Engine

/// The fused training-mode batch norm (BatchNormTraining.swift): finite-difference gradients on a
/// 4-d input, and its output and running statistics against the formulas written out.
final class BatchNormTrainingTests: XCTestCase {
    func testGradients() throws {
        try gradCheck([rnd([3, 4, 5, 2], seed: 70), rnd([4], seed: 71), rnd([4], seed: 72)]) {
            try $0[0].batchNorm(runningMean: nil, runningVar: nil, weight: $0[1], bias: $0[2], training: true)
        }
        try gradCheck([rnd([2, 3, 7], seed: 73)]) {
            try $0[0].batchNorm(runningMean: nil, runningVar: nil, weight: nil, bias: nil, training: true)
        }
    }

    func testOutputAndRunningStatistics() throws {
        let x = rnd([2, 2, 3], seed: 74), w = rnd([2], seed: 75), b = rnd([2], seed: 76)
        let rm = Tensor.zeros([2]), rv = Tensor.ones([2])
        let y = try x.batchNorm(runningMean: rm, runningVar: rv, weight: w, bias: b, training: true, momentum: 0.25)
        for c in 0..<2 {
            var v: [Float] = []
            for n in 0..<2 { for j in 0..<3 { v.append(x.data[(n * 2 + c) * 3 + j]) } }
            let mu = v.reduce(0, +) / 6, variance = v.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 6
            XCTAssertEqual(rm.data[c], 0.25 * mu, accuracy: 1e-5)
            XCTAssertEqual(rv.data[c], 0.75 + 0.25 * variance * 6 / 5, accuracy: 1e-5)
            for n in 0..<2 { for j in 0..<3 {
                let i = (n * 2 + c) * 3 + j
                XCTAssertEqual(y.data[i], (x.data[i] - mu) / (variance + 1e-5).squareRoot() * w.data[c] + b.data[c], accuracy: 1e-4)
            } }
        }
    }
}
