import Foundation

/// Large tensor buffers carved from one reserved range of address space: best fit, splitting a larger free
/// block and merging a freed block with its free neighbours (boundary tags kept in two dictionaries).
///
/// Why: pooling freed buffers by exact size (what `BufferPool` does for small ones) keeps a buffer of every
/// size a step ever used, even while other sizes are live. A PANNs Cnn14 training step (batch 8 x 10 s) holds
/// at most 2491 MB of tensors at once, but requests some 30 sizes in a different order forward and backward,
/// so exact-size pooling needed 3203 MB of buffers; this allocator, replaying the same requests, 2643 MB, and
/// no new pages after the second step (so no page faults, which cost more than a convolution on this VM).
/// Replays of transformer steps (AST-tiny, the encoder bench, fine-tuning) came out 1-4% below exact-size
/// pooling too; first fit was better on Cnn14 alone and 14% worse on the encoder, so best fit.
///
/// Memory: the range is reserved `PROT_NONE` (no commit charge) and made read-write in 64 MB steps as the
/// high-water mark `top` grows; pages become resident only when written. Free blocks stay resident for
/// reuse until `trim` (or the pool's cap) hands their pages back with `MADV_DONTNEED`.
/// Not thread-safe: `BufferPool` calls it under its lock.
final class BufferArena {
    /// Blocks are whole pages: page-aligned buffers, and `MADV_DONTNEED` can return any free block.
    static let granule = 4096
    private static let commitStep = 64 << 20

    private let base: UnsafeMutableRawPointer
    private let reserved: Int
    private var committed = 0
    /// Bytes from `base` handed out at least once: every block lies below it.
    private(set) var top = 0
    private(set) var freeBytes = 0

    /// A free block: its size and start (bytes from `base`), ordered by size then address.
    private struct Free: Comparable {
        let size: Int, start: Int
        static func < (a: Free, b: Free) -> Bool { a.size != b.size ? a.size < b.size : a.start < b.start }
    }
    private var bySize: [Free] = []
    private var sizeAtStart: [Int: Int] = [:]
    private var startAtEnd: [Int: Int] = [:]

    /// Reserves `bytes` of address space; nil where the system refuses (then the pool falls back to malloc).
    init?(reserving bytes: Int) {
        let size = BufferArena.rounded(bytes, to: BufferArena.commitStep)
        guard let raw = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), raw != MAP_FAILED else {
            return nil
        }
        base = raw
        reserved = size
    }

    static func rounded(_ bytes: Int, to step: Int) -> Int { (bytes + step - 1) / step * step }

    func contains(_ p: UnsafeMutableRawPointer) -> Bool { p >= base && p < base + reserved }

    /// A block of at least `bytes`, or nil when the reserved range is used up.
    func take(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let size = BufferArena.rounded(max(bytes, 1), to: BufferArena.granule)
        let i = lowerBound(Free(size: size, start: 0))
        if i < bySize.count {
            let block = bySize[i]
            removeFree(at: i)
            if block.size > size { insertFree(Free(size: block.size - size, start: block.start + size)) }
            return base + block.start
        }
        // Nothing fits: grow the free block that ends at the top, if any, else start a new one there.
        var start = top
        if let last = startAtEnd[top], let k = index(of: Free(size: top - last, start: last)) {
            guard commit(upTo: last + size) else { return nil }
            removeFree(at: k)
            start = last
        } else {
            guard commit(upTo: top + size) else { return nil }
        }
        top = start + size
        return base + start
    }

    /// Returns a block `take(bytes)` gave, merging it with the free blocks on either side. With `release`
    /// its pages go back to the system (zero-filled if used again).
    func give(_ p: UnsafeMutableRawPointer, bytes: Int, release: Bool = false) {
        var start = p - base, end = start + BufferArena.rounded(max(bytes, 1), to: BufferArena.granule)
        if let before = startAtEnd[start], let k = index(of: Free(size: start - before, start: before)) {
            removeFree(at: k)
            start = before
        }
        if let after = sizeAtStart[end], let k = index(of: Free(size: after, start: end)) {
            removeFree(at: k)
            end += after
        }
        insertFree(Free(size: end - start, start: start))
        if release { madvise(base + start, end - start, MADV_DONTNEED) }
    }

    /// Hands every free block's pages back to the system; the blocks stay free for later requests.
    func trim() {
        for block in bySize { madvise(base + block.start, block.size, MADV_DONTNEED) }
    }

    private func commit(upTo end: Int) -> Bool {
        guard end <= reserved else { return false }
        if end <= committed { return true }
        let target = min(BufferArena.rounded(end, to: BufferArena.commitStep), reserved)
        guard mprotect(base + committed, target - committed, PROT_READ | PROT_WRITE) == 0 else { return false }
        committed = target
        return true
    }

    private func lowerBound(_ key: Free) -> Int {
        var lo = 0, hi = bySize.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if bySize[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private func index(of block: Free) -> Int? {
        let i = lowerBound(block)
        return i < bySize.count && bySize[i] == block ? i : nil
    }

    private func insertFree(_ block: Free) {
        bySize.insert(block, at: lowerBound(block))
        sizeAtStart[block.start] = block.size
        startAtEnd[block.start + block.size] = block.start
        freeBytes += block.size
    }

    private func removeFree(at i: Int) {
        let block = bySize.remove(at: i)
        sizeAtStart[block.start] = nil
        startAtEnd[block.start + block.size] = nil
        freeBytes -= block.size
    }
}
