import XCTest
@testable import Engine

/// Antialiased bilinear resizing (`F.interpolate(..., antialias=True)`, torchvision's tensor `Resize`):
/// weights worked out by hand, equal to plain bilinear when enlarging, and its gradient. Parity with
/// LAION's torchvision path on a real log-mel is in Tests/CLAPTests (LAIONFusionTests).
final class AntialiasInterpolationTests: XCTestCase {
    func testDownsamplingWeightsByHand() throws {
        // 6 → 3: scale 2, support 2, triangle of half-width 2 around centres 1, 3, 5 (in input pixels,
        // measured to pixel centres j + ½), normalised: [¾, ¾, ¼]/1.75, [¼, ¾, ¾, ¼]/2, [¼, ¾, ¾]/1.75.
        let x = try Tensor((0..<6).map { Float($0 * $0) }, shape: [1, 1, 6, 1])
        let y = try x.interpolate(size: (3, 1), mode: .bilinear, antialias: true).toArray()
        let expected: [Float] = [(0.75 * 0 + 0.75 * 1 + 0.25 * 4) / 1.75,
                                 (0.25 * 1 + 0.75 * 4 + 0.75 * 9 + 0.25 * 16) / 2,
                                 (0.25 * 9 + 0.75 * 16 + 0.75 * 25) / 1.75]
        for (a, b) in zip(y, expected) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        // Plain bilinear samples two inputs per output instead (0.5, 4.5, 12.5 between squares).
        XCTAssertNotEqual(try x.interpolate(size: (3, 1), mode: .bilinear).toArray()[1], y[1], accuracy: 1e-2)
    }

    func testEnlargingIsPlainBilinearAndSameSizeIsIdentity() throws {
        var g = RandomGenerator(seed: 4)
        let x = Tensor.randn([2, 3, 5, 7], generator: &g)
        let aa = try x.interpolate(size: (9, 7), mode: .bilinear, antialias: true)
        let plain = try x.interpolate(size: (9, 7), mode: .bilinear)
        XCTAssertEqual(aa.shape, [2, 3, 9, 7])
        for (a, b) in zip(aa.toArray(), plain.toArray()) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        XCTAssertThrowsError(try x.interpolate(size: (3, 3), mode: .bicubic, antialias: true)) {
            XCTAssertTrue("\($0)".contains("antialias"), "\($0)")
        }
    }

    func testGradient() throws {
        var g = RandomGenerator(seed: 5)
        let x = Tensor.randn([1, 2, 11, 4], generator: &g)
        try gradCheck([x]) { try $0[0].interpolate(size: (4, 3), mode: .bilinear, antialias: true) }
    }

    /// Outside a graph, resizing reads each output's band of inputs instead of multiplying by dense
    /// matrices: the same result for every mode, corner rule, up- and downsampling and edge clamping.
    func testBandedResizeIsTheDenseMatrixProduct() throws {
        var g = RandomGenerator(seed: 6)
        let x = Tensor.randn([2, 3, 37, 11], generator: &g)
        for (mode, align, antialias) in [(InterpolationMode.bilinear, false, false), (.bilinear, true, false), (.bilinear, false, true),
                                         (.bicubic, false, false), (.bicubic, true, false)] {
            for size in [(5, 4), (37, 11), (64, 30), (1, 1), (100, 3)] {
                let banded = try GradMode.noGrad { try x.interpolate(size: size, mode: mode, alignCorners: align, antialias: antialias) }
                let dense = try x.requiringGrad().interpolate(size: size, mode: mode, alignCorners: align, antialias: antialias)
                XCTAssertEqual(banded.shape, dense.shape)
                let err = zip(banded.toArray(), dense.toArray()).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(err, 1e-5, "\(mode) align \(align) antialias \(antialias) \(size)")
            }
        }
    }
}
