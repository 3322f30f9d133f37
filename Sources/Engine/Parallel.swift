import Foundation

/// Thread count for the engine's own (non-BLAS) kernels. Defaults to the machine's cores.
public enum Threading {
    nonisolated(unsafe) public static var threads = max(1, ProcessInfo.processInfo.activeProcessorCount)
}

/// A Sendable box so raw pointers can cross into `concurrentPerform`'s @Sendable closure.
package struct UnsafeSendable<T>: @unchecked Sendable {
    package let value: T
    package init(value: T) { self.value = value }
}

/// Splits `0..<count` into contiguous chunks, one per thread, and runs `body` on each.
/// Runs inline when the work (count * costPerItem) is too small to pay for a thread hop.
func parallelFor(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
    let threads = Threading.threads
    if threads <= 1 || count <= 1 || count * costPerItem < 32_768 {
        body(0..<count)
        return
    }
    let chunks = min(threads, count)
    withoutActuallyEscaping(body) { escapable in
        let box = UnsafeSendable(value: escapable)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            if lo < hi { box.value(lo..<hi) }
        }
    }
}

/// A shared counter handing out task indices for dynamic scheduling across threads.
package final class TaskCounter: @unchecked Sendable {
    private var next = 0
    private let lock = NSLock()
    package init() {}
    package func take(below total: Int) -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard next < total else { return nil }
        next += 1
        return next - 1
    }
}

/// Maps `f` over `items` on the engine's threads, keeping order; the first error is rethrown.
package func parallelMap<T: Sendable, R>(_ items: [T], _ f: @Sendable (T) throws -> R) throws -> [R] {
    var results = [Result<R, Error>?](repeating: nil, count: items.count)
    let next = TaskCounter()
    results.withUnsafeMutableBufferPointer { buf in
        let out = UnsafeSendable(value: buf.baseAddress!)
        DispatchQueue.concurrentPerform(iterations: max(1, min(Threading.threads, items.count))) { _ in
            while let i = next.take(below: items.count) { out.value[i] = Result { try f(items[i]) } }
        }
    }
    return try results.map { try $0!.get() }
}
