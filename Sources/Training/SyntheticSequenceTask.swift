import Engine
import NN

/// A generated sequence-classification task that needs attention: each sequence of distractor tokens
/// hides `copies` instances of a class token at random positions; the label is that token. Used by the
/// README's demo and the convergence test until the audio pipeline provides real data.
public struct SyntheticSequenceTask: Sendable {
    public let classes: Int, vocabulary: Int, length: Int, copies: Int

    public init(classes: Int = 4, vocabulary: Int = 16, length: Int = 24, copies: Int = 2) {
        precondition(vocabulary > classes, "vocabulary must exceed the class tokens")
        self.classes = classes; self.vocabulary = vocabulary; self.length = length; self.copies = copies
    }

    /// `count` sequences (row-major tokens) and their labels.
    public func sample(_ count: Int, generator: inout RandomGenerator) -> (tokens: [Int], labels: [Int]) {
        var tokens: [Int] = [], labels: [Int] = []
        tokens.reserveCapacity(count * length)
        for _ in 0..<count {
            let label = Int(generator.next() % UInt64(classes))
            var seq = (0..<length).map { _ in classes + Int(generator.next() % UInt64(vocabulary - classes)) }
            for _ in 0..<copies { seq[Int(generator.next() % UInt64(length))] = label }
            tokens += seq
            labels.append(label)
        }
        return (tokens, labels)
    }
}

/// Token embedding + learned positions, pre-LN transformer encoder, mean pooling, linear head.
public final class SequenceClassifier: Module {
    public let tokenEmbed: Embedding
    public let posEmbed: Tensor
    public let encoder: TransformerEncoder
    public let head: Linear
    let length: Int

    public init(vocabulary: Int, length: Int, classes: Int, config: ViTConfig) {
        tokenEmbed = Embedding(vocabulary, config.dim)
        posEmbed = Init.truncatedNormal([1, length, config.dim], std: 0.02).requiringGrad()
        encoder = TransformerEncoder(config)
        head = Linear(config.dim, classes)
        self.length = length
    }

    public func callAsFunction(_ tokens: [Int]) throws -> Tensor {
        let b = tokens.count / length
        let x = try tokenEmbed(tokens, shape: [b, length]) + posEmbed
        return try head(encoder(x).mean(axis: 1))
    }
}

public struct DemoReport: Sendable {
    public var steps: Int
    public var finalLoss: Float
    public var accuracy: Float
    public var seconds: Double
    public var parameters: Int
}

/// Trains a small transformer on the synthetic task with AdamW + warmup/cosine and reports held-out
/// accuracy. `log` receives one line per evaluation.
public func runSyntheticDemo(steps: Int = 300, batch: Int = 32, seed: UInt64 = 0,
                             log: (String) -> Void = { _ in }) throws -> DemoReport {
    Random.seed(seed)
    var gen = RandomGenerator(seed: seed &+ 1)
    let task = SyntheticSequenceTask()
    let model = SequenceClassifier(vocabulary: task.vocabulary, length: task.length, classes: task.classes,
                                   config: ViTConfig(dim: 32, depth: 2, heads: 4, mlpRatio: 2))
    let base: Float = 3e-3
    let optimizer = AdamW(model.trainableParameters(), lr: base, weightDecay: 0.01)
    let schedule = WarmupSchedule(warmupSteps: steps / 10, then: CosineSchedule(totalSteps: steps - steps / 10))
    let test = task.sample(512, generator: &gen)
    let clock = ContinuousClock()
    let start = clock.now
    var lastLoss: Float = .nan

    func accuracy() throws -> Float {
        model.eval(); defer { model.train() }
        let logits = try GradMode.noGrad { try model(test.tokens) }
        let predicted = try logits.argmax(axis: -1)
        return Float(zip(predicted, test.labels).filter { $0 == $1 }.count) / Float(test.labels.count)
    }

    for step in 0..<steps {
        let (tokens, labels) = task.sample(batch, generator: &gen)
        optimizer.setLearningRate(schedule.lr(step: step, base: base))
        let loss = try model(tokens).crossEntropy(targets: labels)
        lastLoss = try loss.item()
        optimizer.zeroGrad()
        try loss.backward()
        clipGradNorm(model.trainableParameters(), maxNorm: 1)
        try optimizer.step()
        if (step + 1) % max(steps / 5, 1) == 0 {
            log("step \(step + 1)/\(steps)  loss \(String(format: "%.4f", lastLoss))  held-out accuracy \(String(format: "%.1f%%", 100 * (try accuracy())))")
        }
    }
    let elapsed = start.duration(to: clock.now)
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    return DemoReport(steps: steps, finalLoss: lastLoss, accuracy: try accuracy(), seconds: seconds,
                      parameters: model.parameterCount())
}

import Foundation
