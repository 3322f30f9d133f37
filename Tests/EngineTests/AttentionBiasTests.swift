import Foundation
import XCTest
@testable import Engine

/// Attention with an additive bias and key lengths: finite-difference gradients, PyTorch parity
/// (fixtures from tools/make_attention_fixtures.py) and rows left without any key.
final class AttentionBiasTests: XCTestCase {
    func sdpa(_ t: [Tensor], bias: Tensor? = nil, keyLengths: [Int]? = nil) throws -> Tensor {
        try Tensor.scaledDotProductAttention(t[0], t[1], t[2], bias: bias, keyLengths: keyLengths)
    }

    func testBiasGradientsForEveryBroadcastShape() throws {
        let qkv = [rnd([2, 2, 5, 3], seed: 60), rnd([2, 2, 7, 3], seed: 61), rnd([2, 2, 7, 4], seed: 62)]
        for shape in [[5, 7], [2, 5, 7], [1, 5, 7], [2, 1, 5, 7], [1, 2, 5, 7], [2, 2, 5, 7], [2, 1, 1, 7]] {
            try gradCheck(qkv + [rnd(shape, seed: 63)]) { try sdpa($0, bias: $0[3]) }
        }
    }

    func testKeyLengthsAndBothGradients() throws {
        let qkv = [rnd([2, 2, 5, 3], seed: 64), rnd([2, 2, 7, 3], seed: 65), rnd([2, 2, 7, 4], seed: 66)]
        try gradCheck(qkv) { try sdpa($0, keyLengths: [4, 7]) }
        try gradCheck(qkv + [rnd([2, 5, 7], seed: 67)]) { try sdpa($0, bias: $0[3], keyLengths: [7, 2]) }
        let packed = rnd([2, 6, 3 * 2 * 4], seed: 68)
        try gradCheck([packed, rnd([2, 6, 6], seed: 69)]) { try $0[0].packedSelfAttention(heads: 2, bias: $0[1]) }
        try gradCheck([packed, rnd([2, 1, 6, 6], seed: 70)]) {
            try $0[0].packedSelfAttention(heads: 2, bias: $0[1], keyLengths: [3, 6])
        }
    }

    func testMultiBlockPaths() throws {
        // Key blocks round up to the micro-kernel width, so 2·cols + 6 keys make three (the last ragged);
        // lengths end inside the second. Queries come in blocks of 2.
        let nk = 2 * MicroKernel.cols + 6, inSecond = MicroKernel.cols + 5
        try withAttentionBlocks(query: 2, key: 3) {
            let qkv = [rnd([2, 2, 5, 3], seed: 71), rnd([2, 2, nk, 3], seed: 72), rnd([2, 2, nk, 2], seed: 73)]
            try gradCheck(qkv + [rnd([2, 5, nk], seed: 74)]) { try sdpa($0, bias: $0[3]) }
            try gradCheck(qkv) { try sdpa($0, keyLengths: [inSecond, nk]) }
            try gradCheck(qkv + [rnd([2, 1, 5, nk], seed: 75)]) { try sdpa($0, bias: $0[3], keyLengths: [nk, inSecond]) }
            try gradCheck([rnd([2, nk, 3 * 2 * 2], seed: 76), rnd([2, nk, nk], seed: 77)]) {
                try $0[0].packedSelfAttention(heads: 2, bias: $0[1], keyLengths: [nk, inSecond])
            }
        }
        // Head dim 32: the register-tiled kernels, with a bias and a length inside the second key block.
        try withAttentionBlocks(query: 5, key: 16) {
            try gradCheck([rnd([1, 2, 11, 32], seed: 78), rnd([1, 2, nk, 32], seed: 79), rnd([1, 2, nk, 32], seed: 80),
                           rnd([2, 11, nk], seed: 81)], eps: 5e-3) { try sdpa($0, bias: $0[3], keyLengths: [inSecond]) }
        }
    }

    /// A row whose keys are all masked, by a length of 0 or by a bias of -inf, outputs zeros and passes
    /// zero gradients, never NaN; -inf entries elsewhere just drop their key (to the exponentials' floor,
    /// ~1e-38: see `VMath.exp2`), also when they fill a whole key block before any finite score.
    func testRowsWithoutKeysGiveZeros() throws {
        let nk = MicroKernel.cols + 8, bias = rnd([2, 1, 4, nk], seed: 82)
        for j in 0..<nk { bias.data[2 * nk + j] = -.infinity }                 // item 0, row 2: every key
        for j in 0..<MicroKernel.cols { bias.data[nk + j] = -.infinity }       // item 0, row 1: the first block
        bias.data[3] = -.infinity                                              // item 0, row 0: one key
        try withAttentionBlocks(query: 2, key: 2) {
            let qkv = [rnd([2, 2, 4, 3], seed: 83), rnd([2, 2, nk, 3], seed: 84), rnd([2, 2, nk, 3], seed: 85)]
            try gradCheck(qkv + [bias]) { try sdpa($0, bias: $0[3], keyLengths: [nk, 0]) }
            let leaves = qkv.map { $0.copy().requiringGrad() }
            let b = bias.copy().requiringGrad()
            let y = try sdpa(leaves, bias: b, keyLengths: [nk, 0])
            try y.backward(y.copy())
            for head in 0..<2 {
                for c in 0..<3 { XCTAssertEqual(y.data[(head * 4 + 2) * 3 + c], 0) }  // item 0, row 2
            }
            for i in 24..<48 { XCTAssertEqual(y.data[i], 0) }                        // item 1, every row
            XCTAssertEqual(b.grad!.data[3], 0, accuracy: 1e-30)
            for t in leaves + [b] { XCTAssertFalse(t.grad!.hasNonFinite) }
        }
    }

    /// A bias shared across heads and batch is summed from per-worker copies; one worker writes directly.
    func testSharedBiasGradientIsIndependentOfThreads() throws {
        let q = rnd([3, 2, 6, 4], seed: 86), k = rnd([3, 2, 9, 4], seed: 87), v = rnd([3, 2, 9, 4], seed: 88)
        func dBias(threads: Int) throws -> Tensor {
            let saved = Threading.threads
            Threading.threads = threads
            defer { Threading.threads = saved }
            let bias = rnd([6, 9], seed: 89).requiringGrad()
            try Tensor.scaledDotProductAttention(q, k, v, bias: bias).sum().backward()
            return bias.grad!
        }
        let one = try dBias(threads: 1)
        assertClose(try dBias(threads: 3), one, atol: 1e-5)
        assertClose(try dBias(threads: 8), one, atol: 1e-5)
    }

    func testShapeChecks() throws {
        let q = rnd([2, 2, 5, 3], seed: 90), k = rnd([2, 2, 7, 3], seed: 91)
        XCTAssertThrowsError(try sdpa([q, k, k], bias: rnd([5, 6], seed: 92)))
        XCTAssertThrowsError(try sdpa([q, k, k], bias: rnd([3, 5, 7], seed: 92)))
        XCTAssertThrowsError(try sdpa([q, k, k], bias: rnd([7], seed: 92)))
        XCTAssertThrowsError(try sdpa([q, k, k], keyLengths: [7]))
        XCTAssertThrowsError(try sdpa([q, k, k], keyLengths: [8, 1]))
    }

    // MARK: PyTorch parity

    /// Fixture tensors; JSON has no infinities, so null stands for -inf (masked bias entries).
    static let fixtures: [String: Tensor] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/attention.json")
        guard let data = try? Data(contentsOf: url),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else { return [:] }
        return json.compactMapValues { v in
            let shape = (v["shape"] as? [NSNumber] ?? []).map(\.intValue)
            let values = (v["data"] as? [Any] ?? []).map { ($0 as? NSNumber)?.floatValue ?? -.infinity }
            return try? Tensor(values, shape: shape)
        }
    }()

    func fx(_ key: String) throws -> Tensor { try XCTUnwrap(Self.fixtures[key], "fixture \(key) missing") }

    func testMatchesTorch() throws {
        for name in ["bias", "mask", "both"] {
            let bias = Self.fixtures["\(name).bias"]
            let lengths = Self.fixtures["\(name).lengths"].map { t in (0..<t.count).map { Int(t.data[$0]) } }
            func check() throws {
                let leaves = try ["q", "k", "v"].map { try fx($0).copy().requiringGrad() }
                let b = bias?.copy().requiringGrad()
                let y = try sdpa(leaves, bias: b, keyLengths: lengths)
                try y.backward(y.copy())  // loss ½‖O‖²
                assertClose(y, try fx("\(name).output"), atol: 1e-5)
                for (part, t) in zip(["dq", "dk", "dv"], leaves) { assertClose(t.grad!, try fx("\(name).\(part)"), atol: 2e-5) }
                if let b { assertClose(b.grad!, try fx("\(name).dbias"), atol: 2e-5) }
            }
            // Default blocks (one per head here), then blocks small enough for the online rescaling.
            try check()
            try withAttentionBlocks(query: 2, key: 2) { try check() }
        }
    }
}
