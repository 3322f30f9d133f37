import Audio
import Engine
import Foundation
import NN

/// Few-shot learning with auxiliary data (FLAD): what a fine-tuning run mixes in, recorded in its
/// config.json. See `FLADTask` and docs/FLAD.md.
public struct FLADConfig: Codable, Sendable, Equatable {
    /// One auxiliary dataset: a manifest or folder, and the field its labels come from (`label`, or
    /// `speaker` for another view of a dataset with speakers).
    public struct Source: Codable, Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var labelField: String
        public init(path: String, labelField: String = "label") { self.path = path; self.labelField = labelField }

        /// `path`, or `path:field` for another label field (`../fsdd:speaker`): only `:label` and
        /// `:speaker` are read as a field, so a path with a colon elsewhere stays a path.
        public init(parsing argument: String) {
            for field in ["label", "speaker"] where argument.hasSuffix(":" + field) && argument.count > field.count + 1 {
                self.init(path: String(argument.dropLast(field.count + 1)), labelField: field)
                return
            }
            self.init(path: argument)
        }

        public var description: String { labelField == "label" ? path : "\(path):\(labelField)" }
    }

    public var auxiliary: [Source]
    public var bandit: BanditKind
    public init(auxiliary: [Source], bandit: BanditKind = .exp3) { self.auxiliary = auxiliary; self.bandit = bandit }
}

/// An auxiliary dataset ready to train on: its clips (less any in the target's validation or test
/// split) and whether it shares the target's label set, and so the target's head.
public struct AuxiliaryDataset: Sendable {
    /// The arm's name in logs and metrics: the folder or manifest's name, with `:speaker` for that view.
    public var name: String
    public var dataset: Dataset
    /// The target's classes in the target's order: the arm trains the target's own head. Otherwise
    /// it gets a head of its own.
    public var sharesTargetHead: Bool

    /// Loads every source of `config`. Clips in `heldOut` (the target's validation and test paths) are
    /// dropped, so an auxiliary view of the target's own data cannot see the clips that choose and
    /// score the target's checkpoint. A source that cannot be read, has no clip left, has a clip
    /// without a label or no clip `pipeline` can read is named, and nothing starts.
    public static func load(_ config: FLADConfig, targetClasses: [String], heldOut: Set<String>, pipeline: FeaturePipeline,
                            log: (String) -> Void) throws -> [AuxiliaryDataset] {
        guard !config.auxiliary.isEmpty else { throw NNError("FLAD: no auxiliary dataset (--aux-data)") }
        var out: [AuxiliaryDataset] = []
        for source in config.auxiliary {
            let label = "--aux-data \(source)"
            var data: Dataset
            do { data = try Dataset.load(URL(fileURLWithPath: source.path)).labelled(by: source.labelField) } catch {
                throw NNError("FLAD: \(label): \(error)")
            }
            let before = data.records.count
            data = Dataset(records: data.records.filter { !heldOut.contains(standardPath($0.path)) }, layout: data.layout)
            guard !data.records.isEmpty else {
                throw NNError("FLAD: \(label): none of its \(before) clips is left once the target's validation and test clips are taken out")
            }
            if let unlabelled = data.records.first(where: { $0.labels.isEmpty }) {
                throw NNError("FLAD: \(label): \(unlabelled.path) has no label (every auxiliary clip needs one)")
            }
            try requireReadableClip(data, pipeline: pipeline, label: label)
            let shares = Set(data.classes) == Set(targetClasses)
            if shares { data = Dataset(records: data.records, layout: data.layout, classes: targetClasses) }
            var name = URL(fileURLWithPath: source.path).lastPathComponent + (source.labelField == "label" ? "" : ":\(source.labelField)")
            if out.contains(where: { $0.name == name }) { name += "#\(out.count + 1)" }
            log("FLAD arm \(out.count) '\(name)': \(data.records.count) clips, \(data.classes.count) classes"
                + (before > data.records.count ? " (\(before - data.records.count) in the target's validation or test split left out)" : "")
                + (shares ? ", the target's label set: trains the target's head" : ", a head of its own"))
            out.append(AuxiliaryDataset(name: name, dataset: data, sharesTargetHead: shares))
        }
        return out
    }

    static func standardPath(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }

    /// Reads clips until one loads: a dataset none of whose clips can be read is named before the run
    /// starts (unreadable clips of a usable dataset are skipped and reported as the training goes).
    static func requireReadableClip(_ data: Dataset, pipeline: FeaturePipeline, label: String) throws {
        var firstError: Error?
        for record in data.records {
            do { _ = try pipeline.features(of: URL(fileURLWithPath: record.path)); return } catch { firstError = firstError ?? error }
        }
        throw NNError("FLAD: \(label): none of its \(data.records.count) clips can be read (first: \(firstError.map { "\($0)" } ?? "?"))")
    }
}

/// Endless batches of one auxiliary dataset, drawn one at a time: a seeded shuffle per pass, the next
/// pass when one is used up. Unreadable clips are skipped and named in the run's report.
final class AuxiliaryStream {
    let loader: FeatureLoader
    let name: String
    private var pass = 0, position = 0
    private var chunks: [[Int]]

    init(_ aux: AuxiliaryDataset, pipeline: FeaturePipeline, batchSize: Int, seed: UInt64, report: SkipReport) throws {
        loader = try FeatureLoader(dataset: aux.dataset, pipeline: pipeline, batchSize: batchSize, seed: seed, report: report)
        name = aux.name
        chunks = loader.batchIndices(epoch: 0)
    }

    func next() throws -> Batch {
        var empty = 0
        while true {
            if position == chunks.count { (pass, position) = (pass + 1, 0); chunks = loader.batchIndices(epoch: pass) }
            let chunk = chunks[position]
            position += 1
            if let batch = try loader.makeBatch(chunk) { return batch }
            empty += 1
            guard empty <= chunks.count else { throw NNError("FLAD: no clip of auxiliary dataset '\(name)' can be read any more") }
        }
    }
}
