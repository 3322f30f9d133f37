import Engine
import Foundation
import Inference
import NN

/// A run folder: `config.json`, per-epoch `metrics.jsonl`, `best.safetensors` and `last.safetensors`
/// (written atomically, with the optimizer state beside the last one so a killed run resumes).
public struct RunDirectory: Sendable {
    public let url: URL
    public init(_ url: URL) throws {
        self.url = url
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public var configURL: URL { url.appendingPathComponent("config.json") }
    public var metricsURL: URL { url.appendingPathComponent("metrics.jsonl") }
    public var best: URL { url.appendingPathComponent("best.safetensors") }
    public var last: URL { url.appendingPathComponent("last.safetensors") }
    public var lastOptimizer: URL { url.appendingPathComponent("last-optimizer.safetensors") }
    /// Training-only heads (preference, auxiliary) beside the last checkpoint, for a resume.
    public var lastTrainingHeads: URL { url.appendingPathComponent("last-training-heads.safetensors") }
    /// A parameter-efficient run's trained tensors alone (`DeltaCheckpoint`).
    public var delta: URL { url.appendingPathComponent("delta.safetensors") }

    /// Whether the folder holds an earlier run (metrics or a checkpoint).
    public var holdsRun: Bool { [metricsURL, best, last].contains { FileManager.default.fileExists(atPath: $0.path) } }

    /// Readies the folder for a new run. One that already holds a run is refused, so a repeated command
    /// cannot overwrite checkpoints and mix two runs' metrics, unless `overwrite`, which removes that
    /// run's files (config, metrics, checkpoints) and nothing else.
    public func startFresh(overwrite: Bool) throws {
        guard holdsRun else { return }
        guard overwrite else {
            let done = metricsHistory(throughEpoch: Int.max).last?["epoch"] as? Int
            throw NNError("\(url.path) already holds a run\(done.map { " (\($0) epochs done)" } ?? ""): "
                          + "--resume continues it, --overwrite starts it again, or choose another --out")
        }
        for file in [configURL, metricsURL, best, last, lastOptimizer, lastTrainingHeads, delta] where FileManager.default.fileExists(atPath: file.path) {
            try FileManager.default.removeItem(at: file)
        }
    }

    public func writeConfig<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(value), to: configURL)
    }

    /// Whether a run asked to resume has something to resume from (a last checkpoint).
    public func canResume(_ resume: Bool) -> Bool { resume && FileManager.default.fileExists(atPath: last.path) }

    /// The settings a run goes on with: a resumed run keeps the ones it started with (its config.json,
    /// or where that cannot be read `given`, and `log` says so; the checkpoint still fixes the
    /// architecture); only the number of epochs comes from `given`, so a run can be extended.
    public func settings<T: Decodable>(_ given: T, resuming: Bool, epochs: WritableKeyPath<T, Int>, log: (String) -> Void) -> T {
        guard resuming else { return given }
        var kept: T
        do { kept = try readConfig(T.self) } catch {
            log("\(error); resuming with this command's settings instead")
            kept = given
        }
        kept[keyPath: epochs] = given[keyPath: epochs]
        return kept
    }

    /// Starts the run: a resumed one restores model and optimizer from its last checkpoint; a new one
    /// readies the folder (see `startFresh`; a resume with nothing to resume starts over) and writes
    /// `settings`. Returns the first epoch to run.
    public func begin<T: Encodable>(resuming: Bool, resume: Bool, overwrite: Bool, settings: T, epochs: Int,
                                    model: Module, optimizer: (any Optimizer)?, log: (String) -> Void) throws -> Int {
        guard resuming else {
            try startFresh(overwrite: overwrite || resume)
            try writeConfig(settings)
            return 0
        }
        let done = try self.resume(model: model, optimizer: optimizer, log: log)
        log("resuming after epoch \(done + 1)")
        log("  with the run's own settings (\(configURL.lastPathComponent)); from this command only the epochs (\(epochs))")
        return done + 1
    }

    /// The epochs a run folder's settings record, for a resume that does not name them: its own
    /// `config.json`, else the first of its immediate subfolders that has one (the folds of a
    /// cross-validation, the draws of repeated few-shot runs share their settings). Nil where none is readable.
    public static func recordedEpochs(_ root: URL) -> Int? {
        func epochs(_ folder: URL) -> Int? {
            guard let data = try? Data(contentsOf: folder.appendingPathComponent("config.json")),
                  let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
            return (json["epochs"] as? NSNumber)?.intValue
        }
        if let own = epochs(root) { return own }
        let children = (try? FileManager.default.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)) ?? []
        return children.sorted { $0.lastPathComponent < $1.lastPathComponent }.lazy.compactMap(epochs).first
    }

    public func readConfig<T: Decodable>(_ type: T.Type) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(contentsOf: configURL)) } catch {
            throw NNError("\(configURL.path): cannot read run config (\(error))")
        }
    }

    /// Appends one JSON object as a line (the file is the run's history; earlier lines stay).
    public func appendMetrics(_ fields: [String: Any]) throws {
        var line = try JSONSerialization.data(withJSONObject: jsonSafe(fields), options: [.sortedKeys])
        line.append(0x0A)
        if !FileManager.default.fileExists(atPath: metricsURL.path) { _ = FileManager.default.createFile(atPath: metricsURL.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: metricsURL)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: line)
    }

    /// The history's last line where it is a test result (`split` test): a finished run's. Nil after an
    /// epoch line, or with no history.
    public var closingTestLine: [String: Any]? {
        guard let text = try? String(contentsOf: metricsURL, encoding: .utf8),
              let last = text.split(separator: "\n").last(where: { !$0.allSatisfy(\.isWhitespace) }),
              let object = try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any],
              object["split"] as? String == "test" else { return nil }
        return object
    }

    /// The metrics lines of epochs 1...`epochs` (1-based, as written), in order; where an epoch was
    /// logged twice (a run killed between its metrics line and its checkpoint, then resumed) the later
    /// line wins. Unreadable lines are skipped: the history informs a resume, it must not block one.
    public func metricsHistory(throughEpoch epochs: Int) -> [[String: Any]] {
        guard let text = try? String(contentsOf: metricsURL, encoding: .utf8) else { return [] }
        var byEpoch: [Int: [String: Any]] = [:]
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let epoch = object["epoch"] as? Int, epoch >= 1, epoch <= epochs else { continue }
            byEpoch[epoch] = object
        }
        return byEpoch.keys.sorted().map { byEpoch[$0]! }
    }

    /// Saves the model (and optimizer state) after `epoch`; `isBest` also refreshes best.safetensors.
    public func saveCheckpoint(model: Module, optimizer: (any Optimizer)?, epoch: Int, metadata: [String: String], isBest: Bool) throws {
        var meta = metadata
        meta["epoch"] = String(epoch)
        // `last` is the resume point, so it is written last: a write that fails (a full disk) leaves the
        // run resumable from the epoch before, its optimizer state and best checkpoint no newer than it
        // unless this epoch's were written whole (an optimizer state of another epoch is not used, below).
        if let optimizer { try SafeTensors.write(optimizer.stateTensors(), to: lastOptimizer, metadata: ["epoch": String(epoch)]) }
        if isBest { try model.save(to: best, metadata: meta) }
        try model.save(to: last, metadata: meta)
    }

    /// Restores model and optimizer from the last checkpoint; returns the epoch it finished. An optimizer
    /// state recorded for another epoch (a save that stopped between the two files) is left out, and said.
    public func resume(model: Module, optimizer: (any Optimizer)?, log: (String) -> Void = { _ in }) throws -> Int {
        let meta = try model.load(from: last)
        guard let e = meta["epoch"].flatMap(Int.init) else { throw NNError("\(last.path): no epoch in the checkpoint metadata") }
        if let optimizer, FileManager.default.fileExists(atPath: lastOptimizer.path) {
            let state = try SafeTensors.read(lastOptimizer)
            if let saved = state.metadata["epoch"].flatMap(Int.init), saved != e {
                log("\(lastOptimizer.lastPathComponent) is from epoch \(saved), the model from epoch \(e): the optimizer starts afresh")
            } else {
                try optimizer.loadState(state.tensors)
            }
        }
        return e
    }
}

