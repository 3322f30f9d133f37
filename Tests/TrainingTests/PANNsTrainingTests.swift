import Foundation
import XCTest
import Audio
import Engine
import NN
@testable import Models
@testable import Training

/// PANNs trained from scratch through fine-tuning's augmentation (docs/PANNS.md, "Training from scratch"):
/// Cnn6 stayed at chance on FSDD digits while AST's SpecAugment ran on top of PANNs' own drop stripes and
/// those kept the recipe's 64-frame width on 100-frame inputs.
final class PANNsTrainingTests: XCTestCase {
    /// A Cnn6 with small widths on [B, frames, 16] features.
    func tinyCnn6(classes: Int, frames: Int) throws -> PANNs {
        var c = PANNsConfig(.cnn6, classes: classes, frames: frames,
                            frontEnd: LogMelConfig(sampleRate: 8000, nFFT: 256, hop: 80, nMels: 16, fMin: 50, fMax: 4000))
        (c.channels, c.embeddingWidth) = ([8, 16, 16, 32], 32)
        try c.validate()
        return PANNs(c)
    }

    func testFineTuningAddsNoSecondSpecAugmentToPANNs() throws {
        Random.seed(1)
        XCTAssertEqual(defaultMasks(for: try tinyCnn6(classes: 3, frames: 100), frames: 100).freqm, 0)
        XCTAssertEqual(defaultMasks(for: try tinyCnn6(classes: 3, frames: 100), frames: 100).timem, 0)
        var c = try tinyCnn6(classes: 3, frames: 100).config
        c.specAugment = false
        let masks = defaultMasks(for: PANNs(c), frames: 96)
        XCTAssertEqual(masks.freqm, 24, "without its own stripes a PANNs gets AST's masks, as other models")
        XCTAssertEqual(masks.timem, 9, "96 frames per 1024 of the window")
    }

    /// A short burst in one of three bands, at a random time of a 64-frame input, names the class; Cnn6
    /// in training mode (its drop stripes and dropout on, masks as fine-tuning sets them) must fit the
    /// 48 clips. Each stripe of the old fixed 64-frame width blanked half of such an input on average.
    func testCnn6FitsShortEventsWithItsOwnAugmentationOn() throws {
        Random.seed(7)
        var g = RandomGenerator(seed: 8)
        let (classes, frames, bins, clips) = (3, 64, 16, 48)
        let model = try tinyCnn6(classes: classes, frames: frames)
        let masks = defaultMasks(for: model, frames: frames)
        var augmentation = ClassificationAugmentation()
        (augmentation.freqm, augmentation.timem) = (masks.freqm, masks.timem)
        let x = Tensor.randn([clips, frames, bins])
        let labels = (0..<clips).map { $0 % classes }
        for (n, k) in labels.enumerated() {
            let start = Int(g.next() % UInt64(frames - 8))
            for t in start..<(start + 8) { for f in (5 * k)..<(5 * k + 5) { x.data[(n * frames + t) * bins + f] += 3 } }
        }
        let optimizer = Adam([ParameterGroup(model.trainableParameters(), lr: 3e-3, weightDecay: 0)])
        model.train()
        var losses: [Float] = []
        for step in 0..<60 {
            let rows = Array(((step % 3) * 16)..<((step % 3) * 16 + 16))
            let features = try augmentation.perClip(x.indexSelect(axis: 0, indices: rows), generator: &g)
            optimizer.zeroGrad()
            let loss = try model.logits(features).crossEntropy(targets: rows.map { labels[$0] }, labelSmoothing: 0)
            try loss.backward()
            try optimizer.step()
            losses.append(try loss.item())
        }
        let late = losses.suffix(9).reduce(0, +) / 9
        XCTAssertLessThan(late, 0.5 * log(Float(classes)), "training loss of the last 3 epochs (chance: ln 3 = 1.10); all: \(losses)")
    }
}
