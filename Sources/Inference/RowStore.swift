import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The rows of an embedding index: one growable block of floats. A large block is its own mapping
/// (glibc serves big mallocs with mmap), so `realloc` grows it by remapping pages rather than copying
/// them (a Swift array's growth copies every row again). Filling 410 MB in 128 MB chunks here: 0.76–0.92 s
/// with realloc, 1.4–1.9 s appending to an array, and 2.1–5.4 s with the block advised for transparent
/// huge pages (`MADV_HUGEPAGE`: this host compacts memory for them on fault), which is therefore not used.
final class RowStore {
    private(set) var base: UnsafeMutablePointer<Float>?
    /// Floats held.
    private(set) var count = 0
    private var capacity = 0

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
