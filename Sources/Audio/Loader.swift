import Engine
import Foundation

/// A batch of fixed-size features with their targets.
public struct Batch: @unchecked Sendable {
    /// [B, frames, bins]
    public var features: Tensor
    /// Class indices per clip (one for single-label, any number for multi-label).
    public var labels: [[Int]]
    /// Indices of the clips in the dataset's records.
    public var indices: [Int]

    /// Multi-hot targets [B, classes] (BCE for multi-label tasks).
    public func multiHot(classes: Int) -> Tensor {
        let t = Tensor.zeros([labels.count, classes])
        for (i, ls) in labels.enumerated() { for l in ls { t.data[i * classes + l] = 1 } }
        return t
    }
}

/// The error text of a command that could read none of its clips: how many were skipped and the first one with
/// its reason, so that the message alone says what went wrong (a run that read nothing has no table to print it).
public func noClipReadMessage(_ skipped: [(path: String, reason: String)], total: Int) -> String {
    guard let first = skipped.first else { return total == 0 ? "no clips given (the inputs list no audio)" : "no clip could be read (\(total) skipped)" }
    let more = skipped.count > 1 ? ", and \(skipped.count - 1) more" : ""
    return "no clip could be read (\(total) skipped; \(first.path): \(first.reason)\(more))"
}

/// Clips that could not be used, and why, and clips used although cut short; printed at the end of a
/// run. Each file is named once, however many epochs (or loaders sharing the report: a run's training
/// and test splits) meet it.
public final class SkipReport: @unchecked Sendable, CustomStringConvertible {
    private let lock = NSLock()
    private var seen: Set<String> = []
    private var entries: [(path: String, reason: String)] = []
    private var seenTruncated: Set<String> = []
    private var truncatedEntries: [(path: String, promised: Int, read: Int)] = []

    public init() {}

    /// Clips left out, with the reason.
    public var skipped: [(path: String, reason: String)] { lock.lock(); defer { lock.unlock() }; return entries }

    /// Clips used although truncated: decoded as far as they go, `read` of the `promised` frames.
    public var truncated: [(path: String, promised: Int, read: Int)] { lock.lock(); defer { lock.unlock() }; return truncatedEntries }

    /// Nothing skipped and nothing truncated.
    public var isEmpty: Bool { lock.lock(); defer { lock.unlock() }; return entries.isEmpty && truncatedEntries.isEmpty }

    /// The reason drops a leading copy of the path (as given, or absolute): decoding errors already name their file.
    public func recordSkip(_ path: String, _ reason: String) {
        var why = reason
        for prefix in [path + ": ", URL(fileURLWithPath: path).path + ": "] where why.hasPrefix(prefix) { why.removeFirst(prefix.count) }
        lock.lock(); defer { lock.unlock() }
        if seen.insert(path).inserted { entries.append((path, why)) }
    }

    public func recordTruncated(_ path: String, _ truncation: AudioTruncation) {
        lock.lock(); defer { lock.unlock() }
        if seenTruncated.insert(path).inserted { truncatedEntries.append((path, truncation.promised, truncation.read)) }
    }

    /// "skipped N unreadable clips:" with each file and reason (or "no clips skipped"), then, where
    /// there are any, "used N truncated clips:" with each file's promised and read frames.
    public var summary: String {
        let list = skipped, cut = truncated
        var lines = list.isEmpty ? ["no clips skipped"]
            : ["skipped \(list.count) unreadable clip\(list.count == 1 ? "" : "s"):"] + list.map { "  \($0.path): \($0.reason)" }
        if !cut.isEmpty {
            lines.append("used \(cut.count) truncated clip\(cut.count == 1 ? "" : "s") (decoded as far as they go):")
            lines += cut.map { "  \($0.path): the header promises \($0.promised) frames, \($0.read) read" }
        }
        return lines.joined(separator: "\n")
    }

    public var description: String { summary }
}

/// Yields shuffled batches of features, preparing the next batch on a background thread while the
/// caller trains on the current one. A clip that fails to load is skipped, counted and named in
/// `report` (or, with `strict`, ends the run with its error); a truncated clip is used as far as it
/// goes and named in `report.truncated`.
public final class FeatureLoader: @unchecked Sendable {
    public let dataset: Dataset
    public let pipeline: FeaturePipeline
    public let batchSize: Int
    public let shuffle: Bool
    public let strict: Bool
    public let cache: FeatureCache?
    public let report: SkipReport
    /// Class-balanced order (PANNs' BalancedTrainSampler) instead of a plain shuffle.
    public let balanced: Bool
    let seed: UInt64

    public init(dataset: Dataset, pipeline: FeaturePipeline, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0,
                strict: Bool = false, cacheDirectory: URL? = nil, report: SkipReport = SkipReport(), balanced: Bool = false) throws {
        guard batchSize > 0 else { throw AudioError("loader: batch size must be positive") }
        guard pipeline.targetFrames != nil else { throw AudioError("loader: the pipeline needs targetFrames so clips stack into batches") }
        self.dataset = dataset; self.pipeline = pipeline; self.batchSize = batchSize; self.shuffle = shuffle
        self.seed = seed; self.strict = strict; self.report = report; self.balanced = balanced
        cache = try cacheDirectory.map { try FeatureCache(directory: $0) }
    }

    public var batchesPerEpoch: Int { (dataset.records.count + batchSize - 1) / batchSize }

    func order(epoch: Int) -> [Int] {
        if balanced { return balancedOrder(epoch: epoch) }
        var idx = Array(dataset.records.indices)
        if shuffle {
            var g = RandomGenerator(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9)
            g.shuffle(&idx)
        }
        return idx
    }

    /// PANNs' BalancedTrainSampler: every pick takes the next class from a shuffled queue of the classes
    /// (refilled when empty), then that class's next clip from its own shuffled list (reshuffled when
    /// used up), so rare classes are seen as often as common ones; an epoch is as many picks as the data
    /// has clips. A multi-label clip is in the list of each of its classes; clips without a known class
    /// are never picked.
    func balancedOrder(epoch: Int) -> [Int] {
        var g = RandomGenerator(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9 &+ 1)
        var members = [[Int]](repeating: [], count: dataset.classes.count)
        for (i, r) in dataset.records.enumerated() { for c in r.labels.compactMap(dataset.classIndex) { members[c].append(i) } }
        let present = members.indices.filter { !members[$0].isEmpty }
        guard !present.isEmpty else { return [] }
        var positions = [Int](repeating: 0, count: members.count)
        for c in present { g.shuffle(&members[c]) }
        var queue: [Int] = []
        var out: [Int] = []
        out.reserveCapacity(dataset.records.count)
        while out.count < dataset.records.count {
            if queue.isEmpty { queue = present; g.shuffle(&queue) }
            let c = queue.removeLast()
            if positions[c] == members[c].count { g.shuffle(&members[c]); positions[c] = 0 }
            out.append(members[c][positions[c]]); positions[c] += 1
        }
        return out
    }

    /// Loads the clips at `indices` (in parallel), skipping failures unless strict.
    public func makeBatch(_ indices: [Int]) throws -> Batch? {
        let records = dataset.records, pipeline = self.pipeline, cache = self.cache
        let results = try parallelMap(indices) { index -> Result<(features: Tensor, truncated: AudioTruncation?), Error> in
            let url = URL(fileURLWithPath: records[index].path)
            return Result {
                try cache?.featuresNotingTruncation(of: url, pipeline: pipeline) ?? pipeline.featuresNotingTruncation(of: url)
            }
        }
        var feats: [Tensor] = [], labels: [[Int]] = [], kept: [Int] = []
        for (i, r) in results.enumerated() {
            let record = dataset.records[indices[i]]
            switch r {
            case .success(let (t, truncated)):
                feats.append(t); kept.append(indices[i])
                if let truncated { report.recordTruncated(record.path, truncated) }
                labels.append(record.labels.compactMap(dataset.classIndex))
            case .failure(let e):
                if strict { throw e }
                report.recordSkip(record.path, "\(e)")
            }
        }
        guard !feats.isEmpty else { return nil }
        return Batch(features: try Tensor.stack(feats), labels: labels, indices: kept)
    }

    /// The clip indices of each batch of an epoch, in order (`makeBatch` loads one): what `forEachBatch`
    /// walks, for a caller that draws batches one at a time (FLAD's auxiliary datasets).
    public func batchIndices(epoch: Int) -> [[Int]] {
        let ord = order(epoch: epoch)
        return stride(from: 0, to: ord.count, by: batchSize).map { Array(ord[$0..<min($0 + batchSize, ord.count)]) }
    }

    /// Iterates one epoch. The closure receives each batch; loading of the next batch overlaps it.
    public func forEachBatch(epoch: Int, _ body: (Batch) throws -> Void) throws {
        let chunks = batchIndices(epoch: epoch)
        guard !chunks.isEmpty else { return }
        let queue = DispatchQueue(label: "earshot.loader")
        var pending: (DispatchGroup, Box)? = nil
        func start(_ chunk: [Int]) -> (DispatchGroup, Box) {
            let group = DispatchGroup(), box = Box()
            queue.async(group: group) { box.result = Result { try self.makeBatch(chunk) } }
            return (group, box)
        }
        pending = start(chunks[0])
        for k in 0..<chunks.count {
            let (group, box) = pending!
            group.wait()
            if k + 1 < chunks.count { pending = start(chunks[k + 1]) }
            if let batch = try box.result!.get() { try body(batch) }
        }
    }

    final class Box: @unchecked Sendable { var result: Result<Batch?, Error>? }
}
