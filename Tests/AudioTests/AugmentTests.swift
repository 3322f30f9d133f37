import Foundation
import XCTest
import Engine
@testable import Audio

final class AugmentTests: XCTestCase {
    func testSpecAugmentMasksOneContiguousBandAndIsSeeded() throws {
        let x = Tensor.full([50, 20], 1)
        var g1 = RandomGenerator(seed: 4), g2 = RandomGenerator(seed: 4)
        let a = try Augment.frequencyMask(x, param: 10, generator: &g1)
        let b = try Augment.frequencyMask(x, param: 10, generator: &g2)
        XCTAssertEqual(a.toArray(), b.toArray())
        let zeroBins = (0..<20).filter { a.data[$0] == 0 }
        XCTAssertLessThan(zeroBins.count, 10)
        if let first = zeroBins.first { XCTAssertEqual(zeroBins, Array(first..<(first + zeroBins.count))) }
        for t in 0..<50 { for bin in 0..<20 { XCTAssertEqual(a.data[t * 20 + bin], a.data[bin]) } }  // same bins every frame
        var g3 = RandomGenerator(seed: 9)
        var masked = 0
        for _ in 0..<200 {
            let m = try Augment.timeMask(x, param: 30, generator: &g3)
            masked += (0..<50).filter { m.data[$0 * 20] == 0 }.count
        }
        XCTAssertEqual(Float(masked) / 200, 14.5, accuracy: 2.5, "mean width ≈ (param − 1) / 2")
    }

    /// A mask parameter wider than the axis (AST's timem 96 on 64-frame crops) masks only inside it:
    /// torchaudio's start may be negative and its comparison with arange(size) cuts the band. Memory
    /// around the features stays untouched (this wrote before the buffer once).
    func testMaskWiderThanTheAxisStaysInside() throws {
        var g = RandomGenerator(seed: 2)
        var sawCut = false
        for _ in 0..<300 {
            let x = Tensor.full([6, 4], 1)
            let m = try Augment.timeMask(x, param: 40, generator: &g)
            let zeroFrames = (0..<6).filter { m.data[$0 * 4] == 0 }
            if let first = zeroFrames.first { XCTAssertEqual(zeroFrames, Array(first..<(first + zeroFrames.count))) }
            if zeroFrames.first == 0 && zeroFrames.count < 6 { sawCut = true }
            for t in 0..<6 { for b in 0..<4 { XCTAssertEqual(m.data[t * 4 + b], m.data[t * 4]) } }
            XCTAssertEqual(x.toArray(), [Float](repeating: 1, count: 24), "the input is not written")
        }
        XCTAssertTrue(sawCut, "bands that start before frame 0 are cut at it")
    }

    /// Crops start anywhere a window still ends inside the real frames, never inside the padding,
    /// cover every such start, and fall back to the start for clips no longer than the window.
    func testRandomCropStaysInsideTheRealFrames() throws {
        let pad: Float = -0.5, bins = 4
        // 30 real frames (frame t holds t in every bin; one frame equal to the pad value in one bin
        // only, which must not count as padding), then 20 padded frames.
        var values: [Float] = []
        for t in 0..<50 { for b in 0..<bins { values.append(t < 30 ? (t == 29 && b == 0 ? pad : Float(t)) : pad) } }
        let x = try Tensor(values, shape: [50, bins])
        XCTAssertEqual(Augment.validFrames(x, padValue: pad), 30)
        var g = RandomGenerator(seed: 2)
        var starts = Set<Int>()
        for _ in 0..<400 {
            let c = try Augment.randomCrop(x, frames: 8, padValue: pad, generator: &g)
            XCTAssertEqual(c.shape, [8, bins])
            let start = Int(c.data[1])
            XCTAssertLessThanOrEqual(start + 8, 30, "window [\(start), \(start + 8)) runs into the padding")
            starts.insert(start)
        }
        XCTAssertEqual(starts, Set(0...22), "every start that fits is drawn")
        // A clip shorter than the window: the window starts at 0 and keeps some padding.
        let short = try Tensor((0..<(50 * bins)).map { $0 < 5 * bins ? 1 : pad }, shape: [50, bins])
        XCTAssertEqual(Augment.validFrames(short, padValue: pad), 5)
        for _ in 0..<20 { XCTAssertEqual(try Augment.randomCrop(short, frames: 16, padValue: pad, generator: &g).toArray()[0], 1) }
        XCTAssertThrowsError(try Augment.randomCrop(x, frames: 51, padValue: pad, generator: &g))
    }

    func testBetaMeanAndMixup() throws {
        var g = RandomGenerator(seed: 1)
        let samples = (0..<4000).map { _ in Augment.beta(10, generator: &g) }
        let mean = samples.reduce(0, +) / Float(samples.count)
        XCTAssertEqual(mean, 0.5, accuracy: 0.01)
        let variance = samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(samples.count)
        XCTAssertEqual(variance, 0.25 / 21, accuracy: 0.002)   // Beta(a, a): 1 / (4 (2a + 1))
        let (w, l) = try Augment.mixup([1, 1, 1], [0, 0], labelsA: [1, 0], labelsB: [0, 1], lambda: 0.7)
        XCTAssertEqual(w, [0.7, 0.7, 0.7])
        XCTAssertEqual(l[0], 0.7, accuracy: 1e-6); XCTAssertEqual(l[1], 0.3, accuracy: 1e-6)
    }

    func testShiftsGainAndNoise() throws {
        XCTAssertEqual(Augment.roll([1, 2, 3, 4], by: 1), [4, 1, 2, 3])
        XCTAssertEqual(Augment.roll([1, 2, 3, 4], by: -1), [2, 3, 4, 1])
        XCTAssertEqual(Augment.shift([1, 2, 3, 4], by: 2), [0, 0, 1, 2])
        XCTAssertEqual(Augment.gain([1, -0.5], decibels: 20 * log10(2)).map { ($0 * 1000).rounded() / 1000 }, [2, -1])
        let rolled = try Augment.rollFrames(try Tensor([1, 1, 2, 2, 3, 3], shape: [3, 2]), by: 1)
        XCTAssertEqual(rolled.toArray(), [3, 3, 1, 1, 2, 2])
        var g = RandomGenerator(seed: 2)
        let tone = (0..<16000).map { Float(sin(Double($0) * 0.03)) }
        let noisy = Augment.addNoise(tone, snrDB: 10, generator: &g)
        let noise = zip(noisy, tone).map { $0 - $1 }
        let snr = 10 * log10(tone.reduce(0) { $0 + $1 * $1 } / noise.reduce(0) { $0 + $1 * $1 })
        XCTAssertEqual(snr, 10, accuracy: 0.01)
        XCTAssertEqual(Augment.addNoise([0, 0], snrDB: 10, generator: &g), [0, 0])
    }

    /// AST's noise recipe: every value rises by less than 0.1 (one scale per clip, so the largest rise
    /// varies between clips), then the frames roll by −10…9 (both directions, never 10); seeded.
    func testASTNoiseAddsSmallUniformNoiseThenRollsTime() throws {
        let frames = 40, bins = 8
        // Frame t holds 10·t in every bin, so the roll is read off the first output frame.
        let x = Tensor.empty([frames, bins])
        for t in 0..<frames { for b in 0..<bins { x.data[t * bins + b] = Float(10 * t) } }
        var shifts = Set<Int>(), largestRises: [Float] = []
        var g = RandomGenerator(seed: 3)
        for _ in 0..<400 {
            let y = try Augment.astNoise(x, generator: &g)
            XCTAssertEqual(y.shape, [frames, bins])
            let source = Int((y.data[0] / 10).rounded(.down))          // the input frame now at frame 0
            let shift = ((frames - source) % frames + frames) % frames  // roll by +s moves frame 0 to s
            let signed = shift >= frames / 2 ? shift - frames : shift
            XCTAssertTrue((-10...9).contains(signed), "roll \(signed) outside −10…9")
            shifts.insert(signed)
            var largest: Float = 0
            for t in 0..<frames {
                let from = ((t - signed) % frames + frames) % frames
                for b in 0..<bins {
                    let rise = y.data[t * bins + b] - x.data[from * bins + b]
                    XCTAssertGreaterThanOrEqual(rise, 0); XCTAssertLessThan(rise, 0.1)
                    largest = max(largest, rise)
                }
            }
            largestRises.append(largest)
        }
        XCTAssertEqual(shifts, Set(-10...9), "every roll from −10 to 9 occurs")
        XCTAssertLessThan(largestRises.min()!, 0.02); XCTAssertGreaterThan(largestRises.max()!, 0.09)
        var g1 = RandomGenerator(seed: 5), g2 = RandomGenerator(seed: 5)
        XCTAssertEqual(try Augment.astNoise(x, generator: &g1).toArray(), try Augment.astNoise(x, generator: &g2).toArray())
        XCTAssertThrowsError(try Augment.astNoise(Tensor.empty([2, 3, 4]), generator: &g1))
    }

    /// Mixing in the energy domain: (log((1 − λ)e^{x·s} + λe^{b·s}))/s element by element (the
    /// normalisation's mean cancels), λ = 0 the clip itself, a loud background dominating, and shapes
    /// and ratios checked.
    func testMixEnergiesAddsEnergiesNotLogs() throws {
        var g = RandomGenerator(seed: 8)
        let x = Tensor.randn([6, 4], generator: &g), b = Tensor.randn([6, 4], generator: &g)
        let scale: Float = 11.2, lambda: Float = 0.3
        let y = try Augment.mixEnergies(x, b, ratio: lambda, scale: scale)
        for i in 0..<x.count {
            let e = (1 - Double(lambda)) * Foundation.exp(Double(x.data[i] * scale)) + Double(lambda) * Foundation.exp(Double(b.data[i] * scale))
            XCTAssertEqual(Double(y.data[i]), Foundation.log(e) / Double(scale), accuracy: 1e-4)
        }
        XCTAssertEqual(try Augment.mixEnergies(x, b, ratio: 0, scale: scale).toArray(), x.toArray())
        // A background 100 log units louder (overflowing exp in Float) gives about its own level plus log λ.
        let loud = try Augment.mixEnergies(Tensor.zeros([1, 2]), Tensor.full([1, 2], 100), ratio: 0.5, scale: 1)
        XCTAssertEqual(loud.data[0], 100 + Foundation.log(Float(0.5)), accuracy: 1e-3)
        XCTAssertThrowsError(try Augment.mixEnergies(x, Tensor.zeros([5, 4]), ratio: 0.1, scale: 1))
        XCTAssertThrowsError(try Augment.mixEnergies(x, b, ratio: 1, scale: 1))
        XCTAssertThrowsError(try Augment.mixEnergies(x, b, ratio: 0.1, scale: 0))
    }
}
