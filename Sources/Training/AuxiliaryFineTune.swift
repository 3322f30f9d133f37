import Audio
import Foundation
import Models
import NN

/// The auxiliary-learning part of `fineTune`: reads and checks the pairs and votes files and the
/// auxiliary fields against the data before any training, builds the training-only heads (their own
/// optimizer group), and wraps the classification task.
struct AuxiliarySetup {
    let config: AuxiliaryConfig
    let heads: TrainingHeads
    let pairs: [PreferencePair]
    let votes: [String: [Float]]?
    /// Per auxiliary head: the field's values (from the training clips) and each clip's value by path.
    let auxiliary: [(head: AuxiliaryHeadConfig, values: [String], byPath: [String: Int])]

    /// Nil without auxiliary settings. `data` carries the run's classes; `train` is the training split.
    init?(_ run: FineTuneConfig, data: Dataset, train: Dataset, model: any AudioClassifierModel, log: (String) -> Void) throws {
        guard let config = run.auxiliary, !config.isEmpty else { return nil }
        guard !run.multiLabel else { throw NNError("finetune: preferences and auxiliary heads need single-label data") }
        guard run.mixup == 0 else {
            throw NNError("finetune: --mixup blends clips, which breaks preference pairs and auxiliary targets; leave it off with --pairs or --aux-head")
        }
        self.config = config
        if let p = config.preference {
            guard p.heads >= 1 else { throw NNError("finetune: --pref-heads \(p.heads) must be at least 1") }
            for (name, v) in [("--lambda-pref", p.lambdaPreference), ("--lambda-cons", p.lambdaConsistency), ("--lambda-div", p.lambdaDiversity)]
                where !(v >= 0 && v.isFinite) {
                throw NNError("finetune: \(name) \(v) must be a non-negative number")
            }
            pairs = try PreferenceFile.readPairs(URL(fileURLWithPath: p.pairs), data: data)
            votes = try p.votes.map { try PreferenceFile.readVotes(URL(fileURLWithPath: $0), data: data) }
            log("preferences: \(pairs.count) pairs from \(p.pairs)\(p.votes.map { " with vote fractions from \($0)" } ?? ""); "
                + "\(p.heads) heads, \(p.sampling.rawValue) partners")
        } else {
            (pairs, votes) = ([], nil)
        }
        let fields = config.heads.map(\.field)
        if let repeated = fields.first(where: { f in fields.filter { $0 == f }.count > 1 }) {
            throw NNError("finetune: --aux-head \(repeated) is given twice")
        }
        auxiliary = try config.heads.map { head in
            let made = try AuxiliaryTargets.make(head, records: train.records, metadata: config.metadata.map { URL(fileURLWithPath: $0) })
            var byPath: [String: Int] = [:]
            for (r, t) in zip(train.records, made.targets) where t >= 0 { byPath[r.path] = t }
            log("auxiliary head '\(head.field)' (weight \(head.weight)): \(made.values.count) values over \(byPath.count) training clips")
            return (head, made.values, byPath)
        }
        heads = TrainingHeads(width: model.embeddingWidth, classes: data.classes.count, preferenceHeads: config.preference?.heads ?? 0,
                              auxiliaryOutputs: auxiliary.map(\.values.count))
    }

    /// The heads' optimizer group (same learning rate and weight decay as the classifier's).
    func parameterGroup(lr: Float, weightDecay: Float) -> ParameterGroup {
        ParameterGroup(heads.trainableParameters(), lr: lr, weightDecay: weightDecay)
    }

    /// The task for the training set `loader` reads (after any few-shot draw).
    func task(wrapping classification: ClassificationTask, loader: FeatureLoader, validation: Dataset, seed: UInt64,
              log: (String) -> Void) throws -> AuxiliaryTask {
        let train = loader.dataset
        let preference = try config.preference.map {
            try PreferenceTraining(config: $0, pairs: pairs, votes: votes, train: train, validation: validation)
        }
        if let preference {
            let paired = preference.candidates.filter { !$0.isEmpty }.count
            log("preferences: \(preference.trainingPairs) training pairs over \(paired) of \(train.records.count) training clips, "
                + "\(preference.validationPairs.count) validation pairs; \(preference.leftOut) pairs with a clip outside both left out")
            guard preference.trainingPairs > 0 else {
                throw NNError("finetune: none of the \(pairs.count) pairs in \(config.preference!.pairs) has both clips in the training set")
            }
        }
        let targets = auxiliary.map { a in
            AuxiliaryTargets(field: a.head.field, weight: a.head.weight, values: a.values, targets: train.records.map { a.byPath[$0.path] ?? -1 })
        }
        return try AuxiliaryTask(classification: classification, heads: heads, preference: preference, auxiliary: targets,
                                 loader: loader, validation: validation, seed: seed)
    }
}
