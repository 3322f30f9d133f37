import Foundation
import XCTest
import Audio
import Engine
@testable import Models
import NN
@testable import Training
@testable import Inference

/// The released-checkpoint loaders at full scale, against transformers: a base-size AST stand-in made by
/// tools/make_base_release.py (700 MB, so not a fixture; CI skips this). Run it with
/// `EARSHOT_BASE_RELEASE=DIR bash scripts/test.sh --filter BaseReleaseCheck`.
final class BaseReleaseCheck: XCTestCase {
    func testBaseSizeReleasesGiveTransformersLogits() throws {
        guard let path = ProcessInfo.processInfo.environment["EARSHOT_BASE_RELEASE"] else {
            throw XCTSkip("EARSHOT_BASE_RELEASE names no folder made by tools/make_base_release.py")
        }
        let dir = URL(fileURLWithPath: path)
        let reference = try SafeTensors.read(dir.appendingPathComponent("ref.safetensors")).tensors
        let expected = try XCTUnwrap(reference["logits"]), expectedFeatures = try XCTUnwrap(reference["features"])
        for release in ["hf", "audioset_10_10_0.4593.pth"] {
            let start = Date()
            let clf = try Classifier.load(dir.appendingPathComponent(release), released: .init())
            let loading = Date().timeIntervalSince(start)
            XCTAssertEqual(clf.classes.count, 527)
            XCTAssertTrue(clf.multiLabel)
            let features = try clf.pipeline.features(of: dir.appendingPathComponent("clip.wav")).unsqueeze(0)
            // The .pth's clip length is what its grid covers (1016 frames); the rest reaches no patch.
            let window = try features.slice(axis: 1, start: 0, end: clf.model.inputFrames)
            let logits = try GradMode.noGrad { try clf.model.logits(window) }
            let featureError = zip(features.toArray(), expectedFeatures.toArray()).map { abs($0 - $1) }.max() ?? .infinity
            let logitError = zip(logits.toArray(), expected.toArray()).map { abs($0 - $1) }.max() ?? .infinity
            print(String(format: "%@: loaded in %.2f s; features within %.1e, logits within %.1e of transformers",
                         release, loading, featureError, logitError))
            XCTAssertLessThanOrEqual(featureError, 1e-3)
            XCTAssertLessThanOrEqual(logitError, 1e-4)
        }
    }
}
