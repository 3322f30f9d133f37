import Audio
import Engine
import Foundation
import Inference
import Models
import NN

/// The heads trained beside a classifier and left out of its checkpoints: P2C's preference heads and
/// linear heads for auxiliary targets, all on the classifier's pooled embedding.
public final class TrainingHeads: Module {
    @Child public private(set) var preference: [PreferenceHead]
    @Child public private(set) var auxiliary: [Linear]

    public init(width: Int, classes: Int, preferenceHeads: Int, auxiliaryOutputs: [Int]) {
        preference = (0..<preferenceHeads).map { _ in PreferenceHead(width: width, classes: classes) }
        auxiliary = auxiliaryOutputs.map { Linear(width, $0) }
    }
}

/// A pairs file made ready for one training set: each training clip's candidate partners (both
/// orientations of every pair), vote fractions per clip, and the pairs within the validation split
/// (scored each epoch).
public struct PreferenceTraining: Sendable {
    public var config: PreferenceConfig
    public var candidates: [[PartnerCandidate]]
    /// Per training clip, nil without a votes file.
    public var votes: [[Float]?]
    public var validationPairs: [(a: Int, b: Int, target: Float)]
    /// Pairs with a clip outside the training set (test, other splits, unsampled clips, or across
    /// training and validation): left out so no held-out clip informs training.
    public var leftOut: Int

    public init(config: PreferenceConfig, pairs: [PreferencePair], votes: [String: [Float]]?, train: Dataset, validation: Dataset) throws {
        self.config = config
        let trainIndex = Dictionary(train.records.enumerated().map { ($1.path, $0) }, uniquingKeysWith: { a, _ in a })
        let validationIndex = Dictionary(validation.records.enumerated().map { ($1.path, $0) }, uniquingKeysWith: { a, _ in a })
        candidates = Array(repeating: [], count: train.records.count)
        validationPairs = []
        leftOut = 0
        for p in pairs {
            if let a = trainIndex[p.a], let b = trainIndex[p.b] {
                candidates[a].append(PartnerCandidate(partner: b, target: p.target))
                candidates[b].append(PartnerCandidate(partner: a, target: 1 - p.target))
            } else if let a = validationIndex[p.a], let b = validationIndex[p.b] {
                validationPairs.append((a, b, p.target))
            } else {
                leftOut += 1
            }
        }
        if let votes {
            for (i, r) in train.records.enumerated() where !candidates[i].isEmpty && votes[r.path] == nil {
                throw NNError("\(config.votes ?? "votes"): no vote fractions for \(r.path), a clip of a training pair (with --votes every paired clip needs a row)")
            }
            self.votes = train.records.map { votes[$0.path] }
        } else {
            self.votes = Array(repeating: nil, count: train.records.count)
        }
    }

    public var trainingPairs: Int { candidates.reduce(0) { $0 + $1.count } / 2 }
}

/// Classification with auxiliary signals (P2C preferences, auxiliary heads): every batch's clips get
/// the classification loss; a clip with preference pairs brings its partner for the epoch (drawn by
/// `PartnerSampling`), and the pair adds
///     λ_pref · mean_h BT(s_h(a) − s_h(b), t) + λ_cons · L_cons − λ_div · L_div
/// (`Losses.bradleyTerry`, `preferenceConsistency` or `voteConsistency`, `headDiversity`); each
/// auxiliary head adds w · CE over the clips that have its field. The classifier alone is checkpointed
/// (`module`), so the best checkpoint is an ordinary classifier; the heads are kept for a resume.
public final class AuxiliaryTask: TrainingTask {
    public let classification: ClassificationTask
    public let heads: TrainingHeads
    public let preference: PreferenceTraining?
    public let auxiliary: [AuxiliaryTargets]
    let loader: FeatureLoader
    let validation: Dataset
    let seed: UInt64
    var partners: [Int: PartnerCandidate] = [:]
    /// What the model said of each training clip when last trained on it (partner sampling).
    var opinions: [ClipOpinion?]
    var tally = (pairs: 0, correct: 0, consistent: 0)

    public init(classification: ClassificationTask, heads: TrainingHeads, preference: PreferenceTraining?, auxiliary: [AuxiliaryTargets],
                loader: FeatureLoader, validation: Dataset, seed: UInt64) throws {
        guard !classification.multiLabel else { throw NNError("finetune: preferences and auxiliary heads need single-label data") }
        guard classification.augmentation.mixup == 0 else {
            throw NNError("finetune: --mixup blends clips, which breaks preference pairs and auxiliary targets; leave it off with --pairs or --aux-head")
        }
        guard heads.preference.count == (preference == nil ? 0 : preference!.config.heads), heads.auxiliary.count == auxiliary.count else {
            throw NNError("AuxiliaryTask: the heads do not match the preference and auxiliary settings")
        }
        self.classification = classification; self.heads = heads; self.preference = preference; self.auxiliary = auxiliary
        self.loader = loader; self.validation = validation; self.seed = seed
        opinions = Array(repeating: nil, count: loader.dataset.records.count)
    }

    public var module: Module { classification.module }
    public var trainingOnlyModule: Module? { heads }
    public var checkpointMetadata: [String: String] { classification.checkpointMetadata }
    public var selectionMetric: String { classification.selectionMetric }
    var model: any AudioClassifierModel { classification.model }

    /// Partners are redrawn every epoch; the first is uniform (no opinions yet), later ones follow
    /// the sampling policy on what the previous epoch saw.
    public func beginEpoch(_ epoch: Int) throws {
        tally = (0, 0, 0)
        guard let preference else { return }
        var generator = RandomGenerator(seed: seed &+ UInt64(epoch) &* 7_919 &+ 17)
        let labels = loader.dataset.records.map { $0.labels.first.flatMap(loader.dataset.classIndex) ?? 0 }
        partners = PartnerSampler.draw(candidates: preference.candidates, sampling: epoch == 0 ? .random : preference.config.sampling,
                                       opinions: opinions, labels: labels, votes: preference.votes, generator: &generator)
    }

    public func epochSummary() -> [String: Double] {
        guard tally.pairs > 0 else { return [:] }
        return ["pref_accuracy": Double(tally.correct) / Double(tally.pairs), "pref_consistency": Double(tally.consistent) / Double(tally.pairs)]
    }

    public func loss(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Tensor, metrics: [String: Double]) {
        var batch = batch
        try addPartners(&batch)
        let labels = batch.labels.map { $0.first ?? 0 }
        let features = try classification.augmentation.perClip(batch.features, generator: &generator)
        let (logits, embedding) = try model.logitsAndEmbedding(features)
        let cls = try logits.crossEntropy(targets: labels, labelSmoothing: classification.augmentation.labelSmoothing)
        var total = cls * (preference?.config.lambdaClassification ?? 1)
        var metrics: [String: Double] = ["cls": Double(try cls.item())]
        if let preference, !batch.pairs.isEmpty {
            let (term, numbers) = try preferenceLoss(preference, batch: batch, labels: labels, logits: logits, embedding: embedding)
            total = try total + term
            metrics.merge(numbers) { a, _ in a }
        }
        for (k, aux) in auxiliary.enumerated() {
            let targets = batch.indices.map { aux.targets[$0] }
            guard targets.contains(where: { $0 >= 0 }) else { continue }
            let ce = try heads.auxiliary[k](embedding).crossEntropy(targets: targets, ignoreIndex: -1)
            total = try total + ce * aux.weight
            metrics["aux_" + aux.field] = Double(try ce.item())
        }
        return (total, metrics)
    }

    /// Appends each paired clip's partner for this epoch to the batch (rows after the batch's own) and
    /// records the pairs (row of a, row of b) in `batch.pairs`, with targets in `auxiliaryTargets["preference"]`.
    func addPartners(_ batch: inout TrainingBatch) throws {
        guard preference != nil else { return }
        let wanted = batch.indices.enumerated().compactMap { row, index in partners[index].map { (row, $0) } }
        guard !wanted.isEmpty, let extra = try loader.makeBatch(wanted.map(\.1.partner)) else { return }
        var rowOf: [Int: Int] = [:]
        for (k, index) in extra.indices.enumerated() where rowOf[index] == nil { rowOf[index] = batch.indices.count + k }
        var pairs: [(Int, Int)] = [], targets: [Float] = []
        for (row, candidate) in wanted {
            guard let partnerRow = rowOf[candidate.partner] else { continue }   // unreadable partner: skipped and reported
            pairs.append((row, partnerRow))
            targets.append(candidate.target)
        }
        guard !pairs.isEmpty else { return }
        batch.pairs = pairs
        batch.features = try Tensor.concat([batch.features, extra.features], axis: 0)
        batch.labels += extra.labels
        batch.indices += extra.indices
        batch.auxiliaryTargets["preference"] = Tensor(targets)
    }

    /// The P2C terms of a batch's pairs, and the per-clip opinions partner sampling reads.
    func preferenceLoss(_ preference: PreferenceTraining, batch: TrainingBatch, labels: [Int], logits: Tensor,
                        embedding: Tensor) throws -> (Tensor, [String: Double]) {
        let c = preference.config
        let a = batch.pairs.map { $0.0 }, b = batch.pairs.map { $0.1 }
        let targets = batch.auxiliaryTargets["preference"]!.toArray()
        var differences: [Tensor] = [], scores: [[Float]] = []
        for head in heads.preference {
            let s = try head(embedding, classes: labels)
            scores.append(s.toArray())
            differences.append(try s.indexSelect(axis: 0, indices: a) - s.indexSelect(axis: 0, indices: b))
        }
        var bt: Tensor? = nil
        for d in differences { let l = try Losses.bradleyTerry(d, targets: targets); bt = try bt.map { try $0 + l } ?? l }
        let pref = bt! * (1 / Float(differences.count))
        let probabilities = try logits.softmax(axis: 1)
        let consistency: Tensor
        if preference.votes.contains(where: { $0 != nil }) {
            let classes = logits.shape[1]
            let gap = try probabilities.indexSelect(axis: 0, indices: a) - probabilities.indexSelect(axis: 0, indices: b)
            let voteGap = try Tensor(zip(a, b).flatMap { i, j in
                zip(preference.votes[batch.indices[i]]!, preference.votes[batch.indices[j]]!).map { $0 - $1 }
            }, shape: [a.count, classes])
            consistency = try Losses.voteConsistency(gap, voteGap: voteGap)
        } else {
            let oneHot = Tensor.zeros(probabilities.shape)
            for (i, y) in labels.enumerated() { oneHot.data[i * probabilities.shape[1] + y] = 1 }
            let py = try (probabilities * oneHot).sum(axis: 1)
            consistency = try Losses.preferenceConsistency(py.indexSelect(axis: 0, indices: a) - py.indexSelect(axis: 0, indices: b), targets: targets)
        }
        var total = try pref * c.lambdaPreference + consistency * c.lambdaConsistency
        var numbers: [String: Double] = ["pref": Double(try pref.item()), "cons": Double(try consistency.item())]
        if differences.count >= 2 {
            let diversity = try Losses.headDiversity(differences)
            total = try total - diversity * c.lambdaDiversity
            numbers["div"] = Double(try diversity.item())
        }
        // Opinions for the next epoch's partners, and this epoch's pair accuracy and consistency.
        let p = probabilities.toArray(), k = probabilities.shape[1]
        for (row, index) in batch.indices.enumerated() {
            opinions[index] = ClipOpinion(headScores: scores.map { $0[row] }, probabilities: Array(p[(row * k)..<((row + 1) * k)]))
        }
        for (n, t) in targets.enumerated() where t != 0.5 {
            let ensemble = differences.map { 1 / (1 + Foundation.exp(-$0.data[n])) }.reduce(0, +) / Float(differences.count)
            let delta = p[a[n] * k + labels[a[n]]] - p[b[n] * k + labels[b[n]]]
            tally.pairs += 1
            if (ensemble > 0.5) == (t > 0.5) { tally.correct += 1 }
            if (delta >= 0) == (t > 0.5) { tally.consistent += 1 }
        }
        return (total, numbers)
    }

    public func validate() throws -> [String: Any] {
        var line = try classification.validate()
        guard let preference, !preference.validationPairs.isEmpty else { return line }
        let pairs = preference.validationPairs.filter { $0.target != 0.5 }
        guard !pairs.isEmpty else { return line }
        let clips = Array(Set(pairs.flatMap { [$0.a, $0.b] })).sorted()
        let labels = validation.records.map { $0.labels.first.flatMap(validation.classIndex) ?? 0 }
        let reader = try FeatureLoader(dataset: validation, pipeline: classification.pipeline, batchSize: 8, shuffle: false, report: loader.report)
        var seen: [Int: (scores: [Float], py: Float)] = [:]
        for start in stride(from: 0, to: clips.count, by: 8) {
            guard let batch = try reader.makeBatch(Array(clips[start..<min(start + 8, clips.count)])) else { continue }
            let ys = batch.indices.map { labels[$0] }
            try GradMode.noGrad {
                let (logits, embedding) = try model.logitsAndEmbedding(try centreWindow(batch.features))
                let p = try logits.softmax(axis: 1).toArray(), k = logits.shape[1]
                let scores = try heads.preference.map { try $0(embedding, classes: ys).toArray() }
                for (row, index) in batch.indices.enumerated() { seen[index] = (scores.map { $0[row] }, p[row * k + ys[row]]) }
            }
        }
        var counted = 0, correct = 0, consistent = 0
        for pair in pairs {
            guard let x = seen[pair.a], let y = seen[pair.b] else { continue }
            let ensemble = zip(x.scores, y.scores).map { 1 / (1 + Foundation.exp(-($0 - $1))) }.reduce(0, +) / Float(x.scores.count)
            counted += 1
            if (ensemble > 0.5) == (pair.target > 0.5) { correct += 1 }
            if (x.py - y.py >= 0) == (pair.target > 0.5) { consistent += 1 }
        }
        guard counted > 0 else { return line }
        line["pref_accuracy"] = Double(correct) / Double(counted)
        line["pref_consistency"] = Double(consistent) / Double(counted)
        line["pref_pairs"] = counted
        return line
    }

    /// The model's window of features [B, T, F]: the centre `cropFrames` frames when training crops.
    func centreWindow(_ features: Tensor) throws -> Tensor {
        guard let crop = classification.augmentation.cropFrames, crop < features.shape[1] else { return features }
        let start = (features.shape[1] - crop) / 2
        return try features.slice(axis: 1, start: start, end: start + crop)
    }
}
