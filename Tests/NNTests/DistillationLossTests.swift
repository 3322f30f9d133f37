import Foundation
import XCTest
import Engine
@testable import NN

/// Knowledge distillation's loss: its value is T² times the KL divergence written out by hand (softmax or
/// per-class binary), zero where the student agrees with the teacher, and its gradient is the finite
/// differences'.
final class DistillationLossTests: XCTestCase {
    let student: [Float] = [1.2, -0.4, 0.3, 0.05, 2.1, -1.3]       // [2, 3]
    let teacher: [Float] = [0.2, 1.5, -0.7, -2.0, 0.9, 0.4]

    func kl(_ p: [Double], _ q: [Double]) -> Double { zip(p, q).reduce(0) { $0 + ($1.0 > 0 ? $1.0 * log($1.0 / $1.1) : 0) } }
    func softmax(_ x: ArraySlice<Float>, _ t: Float) -> [Double] {
        let e = x.map { exp(Double($0 / t)) }, s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    func testSingleLabelValueIsTemperatureSquaredKL() throws {
        for t: Float in [1, 2, 4] {
            let p = try Losses.softenedTeacher(Tensor(teacher, shape: [2, 3]), temperature: t, multiLabel: false)
            let loss = try Losses.distillation(student: Tensor(student, shape: [2, 3]), teacher: p, temperature: t, multiLabel: false).item()
            let rows = (0..<2).map { kl(softmax(teacher[($0 * 3)..<($0 * 3 + 3)], t), softmax(student[($0 * 3)..<($0 * 3 + 3)], t)) }
            XCTAssertEqual(Double(loss), Double(t * t) * rows.reduce(0, +) / 2, accuracy: 1e-5, "T = \(t)")
            let same = try Losses.distillation(student: Tensor(teacher, shape: [2, 3]), teacher: p, temperature: t, multiLabel: false).item()
            XCTAssertEqual(same, 0, accuracy: 1e-5, "the student agreeing with the teacher")
        }
    }

    func testMultiLabelValueIsPerClassBinaryKL() throws {
        let t: Float = 2
        let p = try Losses.softenedTeacher(Tensor(teacher, shape: [2, 3]), temperature: t, multiLabel: true)
        let loss = try Losses.distillation(student: Tensor(student, shape: [2, 3]), teacher: p, temperature: t, multiLabel: true).item()
        func sigmoid(_ x: Float) -> Double { 1 / (1 + exp(-Double(x / t))) }
        let expected = zip(teacher, student).map { kl([sigmoid($0), 1 - sigmoid($0)], [sigmoid($1), 1 - sigmoid($1)]) }.reduce(0, +) / 6
        XCTAssertEqual(Double(loss), Double(t * t) * expected, accuracy: 1e-5)
    }

    func testGradientMatchesFiniteDifferences() throws {
        for multiLabel in [false, true] {
            let p = try Losses.softenedTeacher(Tensor(teacher, shape: [2, 3]), temperature: 3, multiLabel: multiLabel)
            let leaf = try Tensor(student, shape: [2, 3]).requiringGrad()
            try Losses.distillation(student: leaf, teacher: p, temperature: 3, multiLabel: multiLabel).backward()
            let grad = try XCTUnwrap(leaf.grad).toArray()
            for i in student.indices {
                func value(_ d: Float) throws -> Float {
                    var x = student
                    x[i] += d
                    return try Losses.distillation(student: Tensor(x, shape: [2, 3]), teacher: p, temperature: 3, multiLabel: multiLabel).item()
                }
                let numeric = (try value(1e-2) - value(-1e-2)) / 2e-2
                XCTAssertEqual(grad[i], numeric, accuracy: 2e-3 + 0.02 * abs(numeric), "\(multiLabel ? "multi" : "single")-label, element \(i)")
            }
        }
        XCTAssertThrowsError(try Losses.distillation(student: Tensor.zeros([2, 3]), teacher: Tensor.zeros([2, 2]), temperature: 1, multiLabel: false))
        XCTAssertThrowsError(try Losses.softenedTeacher(Tensor.zeros([2, 3]), temperature: 0, multiLabel: false))
    }
}
