import Foundation
import XCTest
import Audio
import Engine
@testable import Models
import NN
@testable import Inference

/// Score drift of reduced precision (`--precision bf16|int8`) on the release parity fixtures
/// (tools/make_ast_fixtures.py, tools/make_ssamba_fixtures.py): the same clip's logits in fp32 and
/// reduced precision, max |Δ| against fp32 and against the reference implementation's logits, printed
/// (docs/PRECISION.md quotes these lines) and held to the stated bounds. fp32 itself must still meet
/// the parity tests' 1e-4 after a conversion to fp32 (a no-op). Skips a precision this CPU cannot run.
final class PrecisionDriftTests: XCTestCase {
    static let fixtures = ReleasedCheckpointTests.fixtures
    /// Stated bounds on max |Δ logit| against fp32, relative to the largest |logit| of the clip.
    static let bound: [Precision: Float] = [.fp32: 0, .bf16: 0.02, .int8: 0.06]

    func maxAbs(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        return a.shape == b.shape ? (0..<a.count).map { abs(a.data[$0] - b.data[$0]) }.max() ?? 0 : .infinity
    }

    /// (name, a fresh fp32 model, its input, the reference's logits).
    func releases() throws -> [(String, () throws -> any AudioClassifierModel, Tensor, Tensor)] {
        let ast = try SafeTensors.read(Self.fixtures.appendingPathComponent("ast_release.safetensors")).tensors
        var o = ReleasedCheckpointOptions()
        (o.shape.heads, o.shape.melBins, o.mean, o.std) = (4, 40, -5.5, 3.25)
        let hfClassifier = { try Classifier.load(Self.fixtures.appendingPathComponent("hf_ast_release"), released: .init()) }
        let features = try hfClassifier().pipeline.features(try XCTUnwrap(ast["wave"]).toArray()).unsqueeze(0)
        let hf = { try hfClassifier().model }
        let pth = { try Classifier.load(Self.fixtures.appendingPathComponent("tiny_12_12_0.5000.pth"), released: o).model }
        let parity = try SafeTensors.read(Self.fixtures.appendingPathComponent("ast_parity.safetensors")).tensors
        let hfTiny = { () throws -> any AudioClassifierModel in try ASTCheckpoint.loadHuggingFace(Self.fixtures.appendingPathComponent("hf_ast_tiny")) }
        return [("hf_ast_release", hf, features, try XCTUnwrap(ast["logits"])),
                ("tiny_12_12_0.5000.pth", pth, features, try XCTUnwrap(ast["reference_logits"])),
                ("hf_ast_tiny", hfTiny, try XCTUnwrap(parity["input"]), try XCTUnwrap(parity["logits"]))]
    }

    func testReleaseLogitsDriftWithinTheStatedBounds() throws {
        var ran = 0
        for (name, load, input, reference) in try releases() {
            let fp32 = try GradMode.noGrad { try load().logits(input) }
            let peak = (0..<fp32.count).map { abs(fp32.data[$0]) }.max() ?? 1
            for precision in Precision.allCases where precision.unavailability() == nil {
                let model = try load()
                XCTAssertEqual(Classifier(model: model, classes: [], pipeline: FeaturePipeline(kind: .kaldiFbank(.ast)), multiLabel: false).use(precision), precision)
                let logits = try GradMode.noGrad { try model.logits(input) }
                let drift = maxAbs(logits, fp32), toReference = maxAbs(logits, reference)
                print(String(format: "precision drift %@ %@: max |dlogit| vs fp32 %.2e (%.2f%% of max |logit| %.3f), vs reference %.2e",
                             name, precision.rawValue, drift, 100 * drift / peak, peak, toReference))
                XCTAssertLessThanOrEqual(drift, Self.bound[precision]! * peak, "\(name) \(precision)")
                if precision == .fp32 { XCTAssertLessThanOrEqual(toReference, 1e-4, "\(name): fp32 parity") }
                ran += 1
            }
        }
        XCTAssertGreaterThanOrEqual(ran, 3, "fp32 at least, on each fixture")
        try XCTSkipUnless(Precision.bf16.unavailability() == nil && Precision.int8.unavailability() == nil,
                          "bf16 or int8 cannot run on this CPU: only the precisions that can were measured")
    }
}
