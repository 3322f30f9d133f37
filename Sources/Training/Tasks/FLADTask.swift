import Audio
import Engine
import Foundation
import Inference
import Models
import NN

/// Few-shot fine-tuning with auxiliary datasets chosen by a bandit (FLAD, Albalak et al., 2023).
///
/// Each step: the bandit picks an auxiliary dataset (an arm), one batch of it trains through that
/// dataset's head on the shared encoder, the target batch trains through the target's head, and both
/// gradients go into one optimizer step. The arm is paid the cosine between its gradient and the
/// target's over the shared trainable parameters (`GradientAlignment`: all the run trains but the
/// heads). The target task stays in charge of validation and checkpoints: only the target classifier
/// is saved; the auxiliary heads exist for the run alone.
public final class FLADTask: TrainingTask {
    /// One auxiliary dataset as the bandit sees it.
    final class Arm {
        let name: String
        let stream: AuxiliaryStream
        let classes: Int
        let multiLabel: Bool
        /// Its own head over the encoder's pooled embedding, nil where it trains the target's head.
        let head: Sequential?
        var rewardSum = 0.0, rewardCount = 0, epochPlays = 0, lossSum = 0.0
        init(name: String, stream: AuxiliaryStream, classes: Int, multiLabel: Bool, head: Sequential?) {
            self.name = name; self.stream = stream; self.classes = classes; self.multiLabel = multiLabel; self.head = head
        }
    }

    public let target: ClassificationTask
    public let bandit: any AuxiliaryBandit
    let arms: [Arm]
    /// The parameters the reward compares gradients over.
    let shared: [Tensor]
    var generator: RandomGenerator

    /// Builds an arm per auxiliary dataset (a LayerNorm + Linear head of its own where its label set is
    /// not the target's, added to `optimizer` with its learning rate and weight decay) and the bandit.
    public init(target: ClassificationTask, auxiliary: [AuxiliaryDataset], bandit kind: BanditKind, optimizer: Adam,
                batchSize: Int, seed: UInt64, report: SkipReport) throws {
        let model = target.model
        shared = Self.sharedParameters(of: model).map(\.1)
        guard !shared.isEmpty else {
            throw NNError("FLAD: the run trains no encoder parameter (only the head), so no gradient is shared between datasets; "
                          + "FLAD needs full fine-tuning or a parameter-efficient method that trains encoder tensors (not --peft linear or --freeze-encoder)")
        }
        var headParameters: [Tensor] = []
        arms = try auxiliary.enumerated().map { i, aux in
            let head = aux.sharesTargetHead ? nil
                : Sequential([LayerNorm(model.embeddingWidth), Linear(model.embeddingWidth, aux.dataset.classes.count)])
            headParameters += head?.trainableParameters() ?? []
            let stream = try AuxiliaryStream(aux, pipeline: target.pipeline, batchSize: batchSize, seed: seed &+ UInt64(i + 1) &* 7919, report: report)
            return Arm(name: aux.name, stream: stream, classes: aux.dataset.classes.count, multiLabel: aux.dataset.multiLabel, head: head)
        }
        if !headParameters.isEmpty, let group = optimizer.groups.first {
            optimizer.groups.append(ParameterGroup(headParameters, lr: group.lr, weightDecay: group.weightDecay))
        }
        self.target = target
        bandit = try kind.make(arms: arms.count)
        generator = RandomGenerator(seed: seed &+ 0xF1AD)
    }

    /// What the reward compares gradients over: every parameter the run trains but the head's (with a
    /// parameter-efficient method, its tensors and whatever else it trains in the encoder).
    public static func sharedParameters(of model: any AudioClassifierModel) -> [(String, Tensor)] {
        model.namedParameters().filter { $0.1.requiresGrad && !model.isHead($0.0) }
    }

    public var module: Module { target.module }
    public var checkpointMetadata: [String: String] { target.checkpointMetadata }
    public var selectionMetric: String { target.selectionMetric }
    public func validate() throws -> [String: Any] { try target.validate() }

    /// The target's loss alone (what the run is scored on).
    public func loss(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Tensor, metrics: [String: Double]) {
        try target.loss(batch, generator: &generator)
    }

    /// One auxiliary batch from the arm the bandit picks, then the target batch, both backpropagated;
    /// the arm is paid the cosine of their shared gradients. The loss returned is the target's, so
    /// `train_loss` compares with a run without auxiliary data; `train_aux_loss` and `train_reward`
    /// average the auxiliary side.
    public func accumulateGradients(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Float, metrics: [String: Double]) {
        let a = bandit.choose(generator: &self.generator)
        let arm = arms[a]
        let auxBatch = TrainingBatch(try arm.stream.next())
        let model = target.model
        let logits: (Tensor) throws -> Tensor = arm.head.map { head in { try head(model.embedding($0)) } } ?? model.logits
        let r = try GradientAlignment.backwardPair(
            shared: shared,
            first: { try target.loss(auxBatch, classes: arm.classes, multiLabel: arm.multiLabel, generator: &generator, logits: logits) },
            second: { try target.loss(batch, generator: &generator).loss })
        guard let reward = r.cosine else { return (r.first.isFinite ? r.second : r.first, [:]) }
        bandit.observe(arm: a, reward: reward)
        arm.rewardSum += reward; arm.rewardCount += 1; arm.epochPlays += 1; arm.lossSum += Double(r.first)
        return (r.second, ["aux_loss": Double(r.first), "reward": reward])
    }

    /// The bandit at the end of the epoch, per arm name: `flad_probability` (of the next round),
    /// `flad_plays` (this epoch), `flad_total_plays`, `flad_mean_reward` and `flad_aux_loss` (this
    /// epoch's mean; null for an arm not played), `flad_smoothed_reward` (what the policy acts on).
    public func endEpoch() -> [String: Any] {
        var line: [String: Any] = ["flad_bandit": bandit.name, "flad_arms": arms.map(\.name)]
        func perArm(_ value: (Int, Arm) -> Any) -> [String: Any] {
            Dictionary(uniqueKeysWithValues: arms.enumerated().map { ($0.1.name, value($0.0, $0.1)) })
        }
        let probabilities = bandit.probabilities, total = bandit.plays, smoothed = bandit.smoothedRewards
        line["flad_probability"] = perArm { i, _ in probabilities[i] }
        line["flad_plays"] = perArm { _, arm in arm.epochPlays }
        line["flad_total_plays"] = perArm { i, _ in total[i] }
        line["flad_mean_reward"] = perArm { _, arm in arm.rewardCount > 0 ? arm.rewardSum / Double(arm.rewardCount) as Any : NSNull() }
        line["flad_aux_loss"] = perArm { _, arm in arm.rewardCount > 0 ? arm.lossSum / Double(arm.rewardCount) as Any : NSNull() }
        line["flad_smoothed_reward"] = perArm { i, _ in smoothed[i] }
        for arm in arms { (arm.rewardSum, arm.rewardCount, arm.epochPlays, arm.lossSum) = (0, 0, 0, 0) }
        return line
    }
}
