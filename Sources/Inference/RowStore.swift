import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The rows of an embedding index: one growable block of floats. A large block is its own mapping
/// (glibc serves big mallocs with mmap), so `realloc` grows it by remapping pages rather than copying,
/// and it is advised for transparent huge pages: filling 2 GB then takes ~1,000 page faults of 2 MB instead
/// of ~500,000 of 4 KB, and a streaming search misses the TLB once per 2 MB.
final class RowStore {
    private(set) var base: UnsafeMutablePointer<Float>?
    /// Floats held.
    private(set) var count = 0
    private var capacity = 0
    static let hugePage = 2 << 20

    init() {}
    deinit { free(base) }

    /// Room for `n` floats in all, growing geometrically (×1.5 at least).
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        let grown = max(n, capacity + capacity / 2, 4096)
        guard let p = realloc(base, grown * MemoryLayout<Float>.stride) else {
            fatalError("embedding index: out of memory for \(grown) floats")
        }
        base = p.assumingMemoryBound(to: Float.self)
        capacity = grown
        #if os(Linux)
        // Whole 2 MB pages inside the block; a failure (THP off) only costs the speed-up.
        let start = (Int(bitPattern: p) + Self.hugePage - 1) & ~(Self.hugePage - 1)
        let end = (Int(bitPattern: p) + grown * MemoryLayout<Float>.stride) & ~(Self.hugePage - 1)
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, Int32(MADV_HUGEPAGE)) }
        #endif
    }

    /// Appends `n` floats and says whether all were finite, in one pass: x·0 is 0 for a finite x and NaN
    /// for a NaN or an infinity, so a vector accumulator of x·0 screens the rows as they are copied.
    /// The rows are appended either way (the caller drops them with `truncate` when it refuses them).
    func append(_ src: UnsafePointer<Float>, _ n: Int) -> Bool {
        reserve(count + n)
        let dst = base! + count
        typealias V = SIMD16<Float>
        var screen = V(), i = 0
        let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
        while i + 16 <= n {
            let v = s.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            d.storeBytes(of: v, toByteOffset: i * 4, as: V.self)
            screen += v * 0
            i += 16
        }
        var tail: Float = 0
        while i < n { dst[i] = src[i]; tail += src[i] * 0; i += 1 }
        count += n
        return screen.sum() + tail == 0
    }

    /// Keeps the first `n` floats.
    func truncate(to n: Int) { count = min(count, max(n, 0)) }

    /// A copy as an array.
    var array: [Float] { base.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? [] }
}
