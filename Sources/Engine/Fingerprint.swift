/// A 64-bit fingerprint of a buffer's bytes, to notice that weights kept in a transformed layout no longer
/// match the ones they came from (`WinogradWeights` in ConvChainStep.swift). Not cryptographic: it guards against stale caches, not
/// against crafted collisions. Eight FNV-1a-style lanes over 64-byte blocks (xor, then multiply by the
/// 64-bit FNV prime), folded and finished with SplitMix64's mixer so every input bit reaches every output bit;
/// memory-bound (about 1 ms for 9 MB on the Zen 4 host).
enum Fingerprint {
    private static let prime: UInt64 = 0x0000_0100_0000_01b3

    static func of(_ p: UnsafeRawPointer, bytes: Int, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var lanes = SIMD8<UInt64>(repeating: seed) &+ SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7)
        let blocks = bytes / 64
        for i in 0..<blocks {
            lanes = (lanes ^ p.loadUnaligned(fromByteOffset: i * 64, as: SIMD8<UInt64>.self)) &* prime
        }
        var h = seed ^ UInt64(bytes)
        for i in 0..<8 { h = (h ^ lanes[i]) &* prime }
        for i in (blocks * 64)..<bytes { h = (h ^ UInt64(p.load(fromByteOffset: i, as: UInt8.self))) &* prime }
        // SplitMix64's finaliser.
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        return h ^ (h >> 31)
    }
}
