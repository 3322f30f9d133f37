import Foundation

/// Progress lines with an ETA for long loops, at most one every `interval`, and one at the end (with
/// `onlyIfSlow`, only for a loop that already printed: a quick job stays silent).
public struct Progress {
    let total: Int, label: String
    let start = ContinuousClock.now
    var lastPrint = ContinuousClock.now
    let log: (String) -> Void
    let onlyIfSlow: Bool
    let interval: Duration
    var printed = false

    public init(total: Int, label: String, onlyIfSlow: Bool = false, interval: Duration = .seconds(10), log: @escaping (String) -> Void) {
        self.total = total; self.label = label; self.onlyIfSlow = onlyIfSlow; self.interval = interval; self.log = log
    }

    public mutating func update(_ done: Int, _ detail: String = "") {
        let now = ContinuousClock.now
        let due = lastPrint.duration(to: now) > interval
        guard due || (done == total && (printed || !onlyIfSlow)) else { return }
        lastPrint = now; printed = true
        let elapsed = start.duration(to: now)
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let eta = done > 0 ? secs / Double(done) * Double(total - done) : 0
        log(String(format: "%@ %d/%d  %@  elapsed %.0fs, eta %.0fs", label, done, total, detail, secs, eta))
    }
}

/// JSON has no Inf or NaN (d′ is infinite at AUC 1): such numbers become null.
public func jsonSafe(_ fields: [String: Any]) -> [String: Any] {
    fields.mapValues { v -> Any in
        if let d = v as? Double, !d.isFinite { return NSNull() }
        if let f = v as? Float, !f.isFinite { return NSNull() }
        return v
    }
}
