import Engine
import Foundation

/// Parameters updated together with their own learning rate and weight decay.
public struct ParameterGroup {
    public var parameters: [Tensor]
    public var lr: Float
    public var weightDecay: Float
    public init(_ parameters: [Tensor], lr: Float, weightDecay: Float = 0) {
        self.parameters = parameters; self.lr = lr; self.weightDecay = weightDecay
    }
}

/// An optimizer updates its groups' parameters in place from their `.grad`. Parameters without a
/// gradient (frozen, or unused this step) are skipped.
public protocol Optimizer: AnyObject {
    var groups: [ParameterGroup] { get set }
    func step() throws
    /// Per-parameter state (moments) keyed "group.index.name", for resumable checkpoints.
    func stateTensors() -> [String: Tensor]
    func loadState(_ state: [String: Tensor]) throws
}

extension Optimizer {
    public func zeroGrad() { for g in groups { for p in g.parameters { p.grad = nil } } }

    /// Sets every group's learning rate (used by schedules).
    public func setLearningRate(_ lr: Float) { for i in groups.indices { groups[i].lr = lr } }

    func checkFinite(_ g: Tensor, group: Int, index: Int) throws {
        if g.hasNonFinite {
            throw NNError("optimizer: gradient of parameter \(index) in group \(group) (shape \(g.shape)) contains NaN or Inf")
        }
    }
}

/// Optimizer state stored per parameter position.
final class SlotStore {
    var slots: [String: Tensor] = [:]
    func slot(_ name: String, _ g: Int, _ i: Int, like p: Tensor) -> Tensor {
        let key = "\(g).\(i).\(name)"
        if let t = slots[key] { return t }
        let t = Tensor.zeros(p.shape)
        slots[key] = t
        return t
    }
    func load(_ state: [String: Tensor], groups: [ParameterGroup]) throws {
        for (key, t) in state {
            let parts = key.split(separator: ".")
            guard parts.count >= 3, let g = Int(parts[0]), let i = Int(parts[1]),
                  g < groups.count, i < groups[g].parameters.count else {
                if key == "step" { continue }
                throw NNError("optimizer state: key '\(key)' does not match any parameter")
            }
            let p = groups[g].parameters[i]
            guard p.shape == t.shape else {
                throw NNError("optimizer state: key '\(key)' has shape \(t.shape) but the parameter has \(p.shape)")
            }
            slots[key] = t.copy()
        }
    }
}

/// SGD with momentum, dampening and Nesterov, weight decay added to the gradient (`torch.optim.SGD`).
public final class SGD: Optimizer {
    public var groups: [ParameterGroup]
    public let momentum: Float, dampening: Float, nesterov: Bool
    let store = SlotStore()

    public init(_ groups: [ParameterGroup], momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false) {
        self.groups = groups; self.momentum = momentum; self.dampening = dampening; self.nesterov = nesterov
    }

    public convenience init(_ parameters: [Tensor], lr: Float, momentum: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        self.init([ParameterGroup(parameters, lr: lr, weightDecay: weightDecay)], momentum: momentum, nesterov: nesterov)
    }

    public func step() throws {
        for (gi, group) in groups.enumerated() {
            for (i, p) in group.parameters.enumerated() {
                guard let grad = p.grad else { continue }
                try checkFinite(grad, group: gi, index: i)
                let w = p.data, g = grad.data, wd = group.weightDecay, lr = group.lr
                if momentum == 0 {
                    for j in 0..<p.count { w[j] -= lr * (g[j] + wd * w[j]) }
                    continue
                }
                let first = store.slots["\(gi).\(i).momentum_buffer"] == nil  // PyTorch seeds the buffer with d
                let buf = store.slot("momentum_buffer", gi, i, like: p).data
                for j in 0..<p.count {
                    let d = g[j] + wd * w[j]
                    buf[j] = first ? d : momentum * buf[j] + (1 - dampening) * d
                    w[j] -= lr * (nesterov ? d + momentum * buf[j] : buf[j])
                }
            }
        }
    }

    public func stateTensors() -> [String: Tensor] { store.slots }
    public func loadState(_ state: [String: Tensor]) throws { try store.load(state, groups: groups) }
}

/// Adam and AdamW (`torch.optim.Adam` / `AdamW`), with AMSGrad.
/// Adam adds weight decay to the gradient (L2); AdamW decays weights directly: w ← w − lr·wd·w.
public final class Adam: Optimizer {
    public var groups: [ParameterGroup]
    public let beta1: Float, beta2: Float, eps: Float
    public let decoupledWeightDecay: Bool
    public let amsgrad: Bool
    public private(set) var stepCount = 0
    let store = SlotStore()

    public init(_ groups: [ParameterGroup], betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8,
                decoupledWeightDecay: Bool = false, amsgrad: Bool = false) {
        self.groups = groups; beta1 = betas.0; beta2 = betas.1; self.eps = eps
        self.decoupledWeightDecay = decoupledWeightDecay; self.amsgrad = amsgrad
    }

    public convenience init(_ parameters: [Tensor], lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                            eps: Float = 1e-8, weightDecay: Float = 0, amsgrad: Bool = false) {
        self.init([ParameterGroup(parameters, lr: lr, weightDecay: weightDecay)], betas: betas, eps: eps, amsgrad: amsgrad)
    }

    public func step() throws {
        stepCount += 1
        let bc1 = 1 - Foundation.pow(beta1, Float(stepCount)), bc2 = 1 - Foundation.pow(beta2, Float(stepCount))
        for (gi, group) in groups.enumerated() {
            for (i, p) in group.parameters.enumerated() {
                guard let grad = p.grad else { continue }
                try checkFinite(grad, group: gi, index: i)
                let w = p.data, g = grad.data, lr = group.lr, wd = group.weightDecay
                let m = store.slot("exp_avg", gi, i, like: p).data, v = store.slot("exp_avg_sq", gi, i, like: p).data
                let vmax = amsgrad ? store.slot("max_exp_avg_sq", gi, i, like: p).data : nil
                let (b1, b2, e, decoupled) = (beta1, beta2, eps, decoupledWeightDecay)
                let stepSize = lr / bc1, sqrtBc2 = bc2.squareRoot()
                for j in 0..<p.count {
                    var d = g[j]
                    if decoupled { w[j] *= 1 - lr * wd } else { d += wd * w[j] }
                    m[j] = b1 * m[j] + (1 - b1) * d
                    v[j] = b2 * v[j] + (1 - b2) * d * d
                    var denomV = v[j]
                    if let vmax { vmax[j] = Swift.max(vmax[j], v[j]); denomV = vmax[j] }
                    w[j] -= stepSize * m[j] / (denomV.squareRoot() / sqrtBc2 + e)
                }
            }
        }
    }

    public func stateTensors() -> [String: Tensor] {
        var s = store.slots
        s["step"] = Tensor.scalar(Float(stepCount))
        return s
    }

    public func loadState(_ state: [String: Tensor]) throws {
        try store.load(state, groups: groups)
        if let s = state["step"] { stepCount = Int(try s.item()) }
    }
}

/// AdamW: Adam with decoupled weight decay (default 0.01, as PyTorch).
public func AdamW(_ parameters: [Tensor], lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8,
                  weightDecay: Float = 0.01, amsgrad: Bool = false) -> Adam {
    Adam([ParameterGroup(parameters, lr: lr, weightDecay: weightDecay)], betas: betas, eps: eps,
         decoupledWeightDecay: true, amsgrad: amsgrad)
}

public func AdamW(groups: [ParameterGroup], betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8, amsgrad: Bool = false) -> Adam {
    Adam(groups, betas: betas, eps: eps, decoupledWeightDecay: true, amsgrad: amsgrad)
}

/// Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm before
/// clipping (`clip_grad_norm_`).
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total: Double = 0
    for p in parameters { if let g = p.grad { for j in 0..<g.count { total += Double(g.data[j]) * Double(g.data[j]) } } }
    let norm = Float(total.squareRoot())
    let coef = maxNorm / (norm + 1e-6)
    if coef < 1 { for p in parameters { if let g = p.grad { for j in 0..<g.count { g.data[j] *= coef } } } }
    return norm
}
