import Foundation

/// xoshiro256** seeded through splitmix64: same seed, same numbers, on every machine.
public struct RandomGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    public mutating func nextUniform() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Shuffles `items` in place (Fisher-Yates). Ours rather than the standard library's `shuffle`, whose
    /// draws may change between Swift releases: the same seed gives the same order on every toolchain.
    public mutating func shuffle<T>(_ items: inout [T]) {
        for i in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(i, Int(next() % UInt64(i + 1))) }
    }

    /// Standard normal via Box-Muller.
    public mutating func nextNormal() -> Float {
        var u1 = nextUniform()
        while u1 <= 1e-12 { u1 = nextUniform() }
        let u2 = nextUniform()
        return Float((-2 * log(Double(u1))).squareRoot() * cos(2 * Double.pi * Double(u2)))
    }
}

/// The process-wide generator used by initialisers, dropout and masking unless one is passed.
public enum Random {
    nonisolated(unsafe) public static var global = RandomGenerator(seed: 0)
    public static func seed(_ seed: UInt64) { global = RandomGenerator(seed: seed) }

    /// True inside `withoutInitialisation`: the initialisers on the global generator (`Tensor.randn`,
    /// `uniform`, `truncatedNormal`) then return zeros and draw nothing, in pages that are resident only
    /// once the checkpoint writes them (`Tensor.pageBacked`).
    @TaskLocal public static var initialisationSkipped = false

    /// Builds a model whose every weight a checkpoint is about to overwrite without drawing its random
    /// initial values (a base AST spent 2 of its 5 s of loading on 86M Box-Muller draws). The global
    /// generator is left as it was.
    public static func withoutInitialisation<T>(_ body: () throws -> T) rethrows -> T {
        try $initialisationSkipped.withValue(true, operation: body)
    }
}
