import Foundation
import XCTest
import Engine
import NN
@testable import CLAP

/// `zeroshot --precision bf16` on the tiny CLAP folder: both towers' linear layers converted (what the
/// command does before it embeds the captions), scores within the stated bf16 tolerance of fp32.
final class ZeroShotPrecisionTests: XCTestCase {
    func testBF16ZeroShotScoresStayWithinToleranceOfFP32() throws {
        try XCTSkipUnless(Precision.bf16.unavailability() == nil, "no bf16 kernel on this CPU")
        let features = try XCTUnwrap(clapOutputs()["input_features"])
        let labels = ["dog barking", "rain", "siren", "birds"]
        let fp32 = try CLAP.load(clapFolder), bf16 = try CLAP.load(clapFolder)
        XCTAssertEqual(bf16.model.convertLinearLayers(to: .bf16), .bf16)
        let converted = bf16.model.namedModules().filter { $0.1 is LowPrecisionLinear }.map(\.0)
        XCTAssertFalse(converted.isEmpty, "no linear layer converted")
        let zs32 = try ZeroShotClassifier(clap: fp32, labels: labels), zs16 = try ZeroShotClassifier(clap: bf16, labels: labels)
        // Cosine similarities (unit embeddings): the logits without exp(logit_scale).
        let (a32, a16) = (try fp32.embed(features: features), try bf16.embed(features: features))
        let cos32 = try a32.matmul(zs32.textEmbeddings.transpose(0, 1)), cos16 = try a16.matmul(zs16.textEmbeddings.transpose(0, 1))
        let cosDrift = zip(cos32.toArray(), cos16.toArray()).map { abs($0 - $1) }.max() ?? 0
        let (p32, p16) = (try zs32.probabilities(features: features), try zs16.probabilities(features: features))
        let pDrift = zip(p32.toArray(), p16.toArray()).map { abs($0 - $1) }.max() ?? 0
        print("zero-shot bf16 vs fp32 (tiny CLAP, \(converted.count) layers converted): max |Δ cos| \(cosDrift), max |Δ p| \(pDrift)")
        // The encoders' stated bf16 tolerance (1% of a unit-scale output, LowPrecisionLinearTests) for each
        // of the two unit embeddings a cosine multiplies: |Δ cos| ≤ 0.02.
        XCTAssertLessThanOrEqual(cosDrift, 0.02)
        XCTAssertGreaterThan(cosDrift, 0, "bf16 should not be bit-identical to fp32")
        // p = softmax(s·cos): |Δp| ≤ s·|Δcos|/2 at most (the softmax's Lipschitz bound over one logit pair).
        let scale = try fp32.model.logitScaleA.exp().item()
        XCTAssertLessThanOrEqual(pDrift, scale * cosDrift / 2 + 1e-6)
    }
}
