/// Reverse-mode autodiff on a tape built while ops run (define-by-run, like PyTorch).
///
/// Each op whose inputs require a gradient attaches a `Node` to its result: the inputs and a closure
/// mapping the output gradient to one gradient per input (nil where an input needs none). Frozen
/// parameters (`requiresGrad == false`) are skipped, so they cost no gradient memory.
final class Node {
    let inputs: [Tensor]
    let backward: (Tensor) -> [Tensor?]
    init(inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        self.inputs = inputs
        self.backward = backward
    }
}

public enum GradMode {
    nonisolated(unsafe) static var enabled = true

    public static var isEnabled: Bool { enabled }

    /// Runs `body` without recording a graph, like `torch.no_grad()`.
    public static func noGrad<T>(_ body: () throws -> T) rethrows -> T {
        let saved = enabled
        enabled = false
        defer { enabled = saved }
        return try body()
    }
}

extension Tensor {
    /// Attaches a backward function when grad mode is on and any input requires a gradient.
    @discardableResult
    func recording(_ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        guard GradMode.enabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        node = Node(inputs: inputs, backward: backward)
        return self
    }

    /// Backpropagates from this tensor. Without `gradient`, the tensor must hold a single value and
    /// the seed is 1. Leaf gradients accumulate into `.grad`; the graph is released afterwards.
    public func backward(_ gradient: Tensor? = nil) throws {
        try check(requiresGrad, "backward(): tensor of shape \(shape) does not require grad (no trainable input reached it)")
        let seed: Tensor
        if let gradient {
            try check(gradient.shape == shape, "backward(): gradient shape \(gradient.shape) does not match tensor shape \(shape)")
            seed = gradient
        } else {
            try check(count == 1, "backward(): implicit gradient needs a single-value tensor, got shape \(shape)")
            seed = Tensor.ones(shape)
        }
        if data[0].isNaN && count == 1 {
            throw EngineError("backward(): the loss is NaN; check the learning rate and the inputs for NaN or Inf")
        }

        // Topological order by iterative depth-first search (graphs can be thousands of nodes deep).
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if !visited.insert(ObjectIdentifier(t)).inserted { continue }
            stack.append((t, true))
            if let node = t.node {
                for input in node.inputs where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                    stack.append((input, false))
                }
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        GradMode.noGrad {
            for t in order.reversed() {
                guard let g = grads.removeValue(forKey: ObjectIdentifier(t)) else { continue }
                guard let node = t.node else {
                    t.accumulateGrad(g)
                    continue
                }
                let inputGrads = node.backward(g)
                for (input, ig) in zip(node.inputs, inputGrads) {
                    guard let ig, input.requiresGrad else { continue }
                    let key = ObjectIdentifier(input)
                    if let existing = grads[key] {
                        grads[key] = Kernels.add(existing, ig)
                    } else {
                        grads[key] = ig
                    }
                }
                t.node = nil  // release saved activations as soon as they are consumed
            }
        }
    }

    func accumulateGrad(_ g: Tensor) {
        if let existing = grad {
            let p = existing.data, q = g.data
            for i in 0..<count { p[i] += q[i] }
        } else {
            grad = g.shape == shape ? g.copy() : Tensor(shape: shape, storage: g.copy().storage)
        }
    }

    /// Clears the accumulated gradient.
    public func zeroGrad() { grad = nil }
}
