import Foundation

/// Learning-rate schedules as pure functions of the step: `lr(step)` for a base rate. Compose a
/// warmup with any other schedule through `WarmupSchedule`.
public protocol LRSchedule: Sendable {
    func lr(step: Int, base: Float) -> Float
}

public struct ConstantSchedule: LRSchedule {
    public init() {}
    public func lr(step: Int, base: Float) -> Float { base }
}

/// Linear warmup from `startFactor · base` to `base` over `warmupSteps`, then `after`.
public struct WarmupSchedule: LRSchedule {
    public let warmupSteps: Int
    public let startFactor: Float
    public let after: any LRSchedule
    public init(warmupSteps: Int, startFactor: Float = 0, then after: any LRSchedule = ConstantSchedule()) {
        self.warmupSteps = warmupSteps; self.startFactor = startFactor; self.after = after
    }
    public func lr(step: Int, base: Float) -> Float {
        if step < warmupSteps {
            let t = Float(step + 1) / Float(warmupSteps)
            return base * (startFactor + (1 - startFactor) * t)
        }
        return after.lr(step: step - warmupSteps, base: base)
    }
}

/// Cosine annealing from `base` to `minLR` over `totalSteps` (`CosineAnnealingLR`).
public struct CosineSchedule: LRSchedule {
    public let totalSteps: Int
    public let minLR: Float
    public init(totalSteps: Int, minLR: Float = 0) { self.totalSteps = totalSteps; self.minLR = minLR }
    public func lr(step: Int, base: Float) -> Float {
        let t = Float(min(step, totalSteps)) / Float(max(totalSteps, 1))
        return minLR + (base - minLR) * 0.5 * (1 + Foundation.cos(Float.pi * t))
    }
}

/// Multiplies by `gamma` at each milestone (`MultiStepLR`; AST counts milestones in epochs).
public struct MultiStepSchedule: LRSchedule {
    public let milestones: [Int]
    public let gamma: Float
    public init(milestones: [Int], gamma: Float) { self.milestones = milestones.sorted(); self.gamma = gamma }
    public func lr(step: Int, base: Float) -> Float {
        base * Foundation.pow(gamma, Float(milestones.filter { $0 <= step }.count))
    }
}

/// Lowers the learning rate by `factor` when a metric has not improved for `patience` checks
/// (`ReduceLROnPlateau`, relative threshold mode).
public struct ReduceOnPlateau: Codable, Sendable {
    public enum Mode: String, Codable, Sendable { case min, max }
    public let mode: Mode, factor: Float, patience: Int, threshold: Float, minLR: Float
    public private(set) var best: Float?
    public private(set) var badChecks = 0
    public private(set) var scale: Float = 1

    public init(mode: Mode = .min, factor: Float = 0.1, patience: Int = 10, threshold: Float = 1e-4, minLR: Float = 0) {
        self.mode = mode; self.factor = factor; self.patience = patience; self.threshold = threshold; self.minLR = minLR
    }

    /// Records a metric; returns the learning rate to use from now on for `base`.
    public mutating func observe(_ metric: Float, base: Float) -> Float {
        let improved: Bool
        if let best {
            improved = mode == .min ? metric < best * (1 - threshold) : metric > best * (1 + threshold)
        } else { improved = true }
        if improved { best = metric; badChecks = 0 } else { badChecks += 1 }
        if badChecks > patience {
            scale *= factor
            badChecks = 0
        }
        return max(base * scale, minLR)
    }
}
