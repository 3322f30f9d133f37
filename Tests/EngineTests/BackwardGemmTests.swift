import XCTest
@testable import Engine

/// A linear layer's backward products (BackwardGemm.swift) on both routes against sums in Double: rows
/// that are not multiples of the 96-row blocks or 6-row tiles, reductions longer than one k-block (768 for
/// the input gradient, 256 for the weight gradient), and out-feature counts not a multiple of the 48-row blocks.
final class BackwardGemmTests: XCTestCase {
    func check(rows: Int, outF: Int, inF: Int, route: BackwardGemm.Route, file: StaticString = #filePath, line: UInt = #line) {
        let g = Tensor.randn([rows, outF]), w = Tensor.randn([outF, inF]), x = Tensor.randn([rows, inF])
        let gx = Tensor.empty([rows, inF]), gw = Tensor.empty([outF, inF])
        BackwardGemm.inputGradient(rows: rows, outFeatures: outF, inFeatures: inF, g: g.data, weight: w.data, into: gx.data, route: route)
        BackwardGemm.weightGradient(rows: rows, outFeatures: outF, inFeatures: inF, g: g.data, x: x.data, into: gw.data, route: route)
        var worst: Double = 0
        for r in 0..<rows { for i in 0..<inF {
            var s = 0.0
            for o in 0..<outF { s += Double(g.data[r * outF + o]) * Double(w.data[o * inF + i]) }
            worst = max(worst, abs(s - Double(gx.data[r * inF + i])) / sqrt(Double(outF)))
        } }
        for o in 0..<outF { for i in 0..<inF {
            var s = 0.0
            for r in 0..<rows { s += Double(g.data[r * outF + o]) * Double(x.data[r * inF + i]) }
            worst = max(worst, abs(s - Double(gw.data[o * inF + i])) / sqrt(Double(rows)))
        } }
        // fp32 sums of unit-variance products: error ~ 1e-7 * sqrt(k) per entry; scaled by sqrt(k) above.
        XCTAssertLessThan(worst, 1e-4, "\(route) rows \(rows) out \(outF) in \(inF)", file: file, line: line)
    }

    func testMicroKernelRouteMatchesDoubleSums() throws {
        guard PackedWeight.isUsable(outFeatures: MicroKernel.cols) else { throw XCTSkip("the micro-kernel needs an FMA build") }
        Random.seed(7)
        let c = MicroKernel.cols
        check(rows: 203, outF: 3 * c, inF: 2 * c, route: .microKernel)
        check(rows: 611, outF: 50, inF: c, route: .microKernel)           // k-blocks of the TN product: 256 + 256 + 99
        check(rows: 97, outF: 800, inF: c, route: .microKernel)           // NN reduction 800 > 768: two k-blocks
    }

    func testBLASRouteMatchesDoubleSums() {
        Random.seed(8)
        check(rows: 203, outF: 96, inF: 64, route: .blas)
        check(rows: 611, outF: 50, inF: 37, route: .blas)
    }

    /// The routes differ only in summation order: a linear layer's gradients through `Tensor.linear` equal
    /// the BLAS route's to fp32 rounding whichever route the table picks.
    func testLinearBackwardIsRouteIndependent() throws {
        guard PackedWeight.isUsable(outFeatures: MicroKernel.cols) else { throw XCTSkip("the micro-kernel needs an FMA build") }
        Random.seed(9)
        let c = MicroKernel.cols
        let x = Tensor.randn([300, 2 * c]), w = Tensor.randn([3 * c, 2 * c]), b = Tensor.randn([3 * c])
        x.requiresGrad = true; w.requiresGrad = true; b.requiresGrad = true
        func grads() throws -> [[Float]] {
            x.grad = nil; w.grad = nil; b.grad = nil
            try x.linear(weight: w, bias: b).square().sum().backward()
            return [x, w, b].map { Array(UnsafeBufferPointer(start: $0.grad!.data, count: $0.count)) }
        }
        let saved = BackwardGemm.routeTable
        defer { BackwardGemm.routeTable = saved }
        BackwardGemm.routeTable = [.inputGradient: .blas, .weightGradient: .blas]
        let viaBLAS = try grads()
        BackwardGemm.routeTable = [.inputGradient: .microKernel, .weightGradient: .microKernel]
        let viaMicro = try grads()
        for (a, m) in zip(viaBLAS, viaMicro) {
            let scale = a.map(abs).max()!
            let diff = zip(a, m).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(diff / scale, 1e-5)
        }
    }
}
