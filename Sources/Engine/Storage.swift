import Foundation

/// A 64-byte aligned Float buffer. Released buffers go back to `BufferPool`, so steady-state training
/// loops reuse the same memory instead of hitting the allocator on the hot path.
package final class Storage: @unchecked Sendable {
    package let pointer: UnsafeMutablePointer<Float>
    package let count: Int
    /// Bytes of anonymous pages this storage mapped itself (`init(pagesFor:)`); 0 for the pool's buffers.
    private let mappedBytes: Int

    init(count: Int, zeroed: Bool) {
        self.count = count
        self.pointer = BufferPool.shared.take(count)
        self.mappedBytes = 0
        if zeroed { pointer.update(repeating: 0, count: count) }
    }

    /// Zeros in fresh anonymous pages of their own (mmap): resident only once written, and handed back to
    /// the system when released instead of to the pool. For the tensors of checkpoint loading: a model's
    /// weights before the checkpoint fills them, and the checkpoint's parsed tensors, dropped one by one
    /// as they are copied (`Module.load(consuming:)`). Pooled, either would keep a model's size of memory
    /// resident (zeroing touches every page; a freed buffer stays in the pool for a size never asked again).
    /// `MAP_NORESERVE`: a model built from a damaged config (a clip length with extra digits) reserves
    /// pages it never touches, so the checkpoint's own shapes can refuse it with a named error, where the
    /// kernel's overcommit heuristic would refuse the mapping and leave nothing to do but crash.
    init(pagesFor count: Int) {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), raw != MAP_FAILED else {
            fatalError("Earshot: out of memory mapping \(count) floats")
        }
        self.count = count
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.mappedBytes = bytes
        BufferPool.shared.noteMapped(bytes)
    }

    /// Below this many floats `init(pagesFor:)` is not worth a system call (and wastes most of a page).
    package static let pageBackedMinimum = 16_384

    deinit {
        if mappedBytes > 0 {
            munmap(UnsafeMutableRawPointer(pointer), mappedBytes)
            BufferPool.shared.noteMapped(-mappedBytes)
        } else {
            BufferPool.shared.give(pointer, count: count)
        }
    }
}

/// Reused buffers with a cap on the bytes kept free. Buffers of 64 KB and more come from `BufferArena` (best
/// fit with splitting and merging, so a freed buffer can serve a request of another size); smaller ones are
/// kept in free lists by exact element count, which is what training loops produce: the same shapes every step.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()
    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var pooledBytes = 0
    private let lock = NSLock()
    /// Small buffers are cheap to malloc; pooling them only adds lock traffic.
    private let minPooledCount = 1024
    /// From here (64 KB) buffers come from the arena: a page of rounding is at most 6% of them.
    static let arenaMinimumCount = 16_384
    /// Address space for the arena: twice the machine's memory (at least 16 GB), reserved, not committed.
    private let arena = BufferArena(reserving: max(16 << 30, 2 * Int(ProcessInfo.processInfo.physicalMemory)))
    /// Training steps free and re-request the same activation sizes every step; pooling them avoids
    /// the kernel zeroing fresh pages (15% of a training step when the pool was capped at 1 GiB).
    var capBytes = max(1 << 30, Int(ProcessInfo.processInfo.physicalMemory / 4))

    /// Bytes handed out and not yet returned, and the high-water mark since the last reset.
    private(set) var liveBytes = 0
    private(set) var peakLiveBytes = 0

    func resetPeak() { lock.lock(); peakLiveBytes = liveBytes; lock.unlock() }

    /// The arena's high-water mark in bytes (nil without an arena): what its buffers have ever spanned.
    var arenaTop: Int? { lock.lock(); defer { lock.unlock() }; return arena?.top }

    /// Bytes held free for later requests (the arena's free blocks, resident or not, and the free lists).
    var heldBytes: Int { lock.lock(); defer { lock.unlock() }; return pooledBytes + (arena?.freeBytes ?? 0) }

    /// Counts storages' own page mappings (`Storage(pagesFor:)`) as live, like buffers handed out.
    func noteMapped(_ bytes: Int) {
        lock.lock()
        liveBytes += bytes
        peakLiveBytes = max(peakLiveBytes, liveBytes)
        lock.unlock()
    }

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let n = max(count, 1)
        lock.lock()
        liveBytes += n * 4
        peakLiveBytes = max(peakLiveBytes, liveBytes)
        if n >= BufferPool.arenaMinimumCount, let arena, let p = arena.take(n * MemoryLayout<Float>.stride) {
            lock.unlock()
            return p.bindMemory(to: Float.self, capacity: n)
        }
        // Popped in place: binding the list to a local first copied the whole array on every take.
        if n >= minPooledCount, let p = free[n]?.popLast() {
            pooledBytes -= n * 4
            lock.unlock()
            return p
        }
        lock.unlock()
        var raw: UnsafeMutableRawPointer?
        let status = posix_memalign(&raw, 64, n * MemoryLayout<Float>.stride)
        guard status == 0, let raw else { fatalError("Earshot: out of memory allocating \(n) floats") }
        return raw.bindMemory(to: Float.self, capacity: n)
    }

    func give(_ p: UnsafeMutablePointer<Float>, count: Int) {
        let n = max(count, 1)
        lock.lock()
        liveBytes -= n * 4
        if let arena, arena.contains(UnsafeMutableRawPointer(p)) {
            // Past the cap the block's pages go back to the system, as a malloc'd buffer would.
            let release = pooledBytes + arena.freeBytes + n * 4 > capBytes
            arena.give(UnsafeMutableRawPointer(p), bytes: n * MemoryLayout<Float>.stride, release: release)
            lock.unlock()
            return
        }
        if n >= minPooledCount, pooledBytes + n * 4 <= capBytes {
            free[n, default: []].append(p)
            pooledBytes += n * 4
            lock.unlock()
            return
        }
        lock.unlock()
        free_(p)
    }

    /// Returns every pooled buffer's memory to the system (for memory measurements and long-lived processes).
    func drain() {
        lock.lock()
        for (_, list) in free { for p in list { free_(p) } }
        free.removeAll()
        pooledBytes = 0
        arena?.trim()
        lock.unlock()
    }

    @inline(always) private func free_(_ p: UnsafeMutablePointer<Float>) { Foundation.free(p) }
}

public enum Memory {
    /// Frees the buffers the engine keeps for reuse.
    public static func releaseCachedBuffers() { BufferPool.shared.drain() }

    /// Runs `body` and returns the most bytes of tensor and kernel scratch memory the engine held at
    /// once while it ran, counted above what was live when it started.
    package static func peakEngineBytes(during body: () throws -> Void) rethrows -> Int {
        let start = BufferPool.shared.liveBytes
        BufferPool.shared.resetPeak()
        try body()
        return BufferPool.shared.peakLiveBytes - start
    }

    /// The most bytes of tensors and pooled kernel scratch held at once so far (the buffer pool's count).
    package static var peakTensorBytes: Int { BufferPool.shared.peakLiveBytes }
    /// Bytes the buffer pool holds free for reuse now.
    package static var pooledBytes: Int { BufferPool.shared.heldBytes }

    /// Peak resident set size of this process in MiB (VmHWM on Linux).
    package static func peakRSSMegabytes() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let digits = line.split(separator: " ").compactMap { Double($0) }
            if let kb = digits.first { return kb / 1024 }
        }
        return 0
    }
}
