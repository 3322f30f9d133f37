import Foundation
import XCTest
@testable import Engine

/// Attention's two ways of running its block products: the micro-kernel (FMA builds) and OpenBLAS (baseline
/// builds, `AttentionKernel.onMicroKernel` false). Both paths in one build: gradients by finite differences on
/// the OpenBLAS path, and the two paths' outputs and gradients against each other (fp32 rounding apart).
final class AttentionPathTests: XCTestCase {
    func onBLASPath(_ body: () throws -> Void) rethrows {
        let saved = AttentionKernel.onMicroKernel
        AttentionKernel.onMicroKernel = false
        defer { AttentionKernel.onMicroKernel = saved }
        try body()
    }

    func testGradientsOnTheOpenBLASPath() throws {
        let nk = 2 * MicroKernel.cols + 6, inSecond = MicroKernel.cols + 5
        try onBLASPath {
            try withAttentionBlocks(query: 2, key: 3) {
                let qkv = [rnd([2, 2, 5, 3], seed: 171), rnd([2, 2, nk, 3], seed: 172), rnd([2, 2, nk, 2], seed: 173)]
                try gradCheck(qkv + [rnd([2, 1, 5, nk], seed: 175)]) {
                    try Tensor.scaledDotProductAttention($0[0], $0[1], $0[2], bias: $0[3], keyLengths: [nk, inSecond])
                }
            }
        }
    }

    func testOpenBLASPathMatchesTheMicroKernelPath() throws {
        for (d, nq, nk) in [(64, 37, 150), (32, 11, 2 * MicroKernel.cols + 6)] {
            let inputs = [rnd([2, 3, nq, d], seed: 180), rnd([2, 3, nk, d], seed: 181), rnd([2, 3, nk, d], seed: 182), rnd([2, 1, nq, nk], seed: 183)]
            func run() throws -> [Tensor] {
                let leaves = inputs.map { t -> Tensor in let c = t.detach(); c.requiresGrad = true; return c }
                let out = try Tensor.scaledDotProductAttention(leaves[0], leaves[1], leaves[2], bias: leaves[3], keyLengths: [nk, nk - 7])
                try out.square().sum().backward()
                return [out] + leaves.map { $0.grad! }
            }
            var micro: [Tensor] = [], blas: [Tensor] = []
            try withAttentionBlocks(query: 5, key: 40) { micro = try run() }
            try onBLASPath { try withAttentionBlocks(query: 5, key: 40) { blas = try run() } }
            for (a, b) in zip(blas, micro) { assertClose(a, b, atol: 1e-5, rtol: 1e-4) }
        }
    }
}
