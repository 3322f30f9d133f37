import Foundation

/// Thread count for the engine's own (non-BLAS) kernels. Defaults to the machine's cores.
public enum Threading {
    nonisolated(unsafe) public static var threads = max(1, ProcessInfo.processInfo.activeProcessorCount)
}

/// A Sendable box so raw pointers can cross into `concurrentPerform`'s @Sendable closure.
struct UnsafeSendable<T>: @unchecked Sendable { let value: T }

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
