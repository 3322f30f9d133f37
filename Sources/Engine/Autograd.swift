/// Reverse-mode autodiff on a tape built while ops run (define-by-run, like PyTorch).
///
/// Each op whose inputs require a gradient attaches a `Node` to its result: where each input's gradient
/// goes and a closure mapping the output gradient to one gradient per input (nil where an input needs
/// none). Frozen parameters (`requiresGrad == false`) are skipped, so they cost no gradient memory.
///
/// A node points at its inputs' nodes, never at the intermediate tensors themselves: an activation's
/// data stays alive only while some backward closure captured it. So an op keeps exactly what its
/// backward reads (a frozen linear layer keeps its weight, not its input), and an intermediate that no
/// closure needs (the frozen product before a LoRA update is added, the pre-pad update) is freed as soon
/// as the forward pass drops it. Measured at AST-base fine-tuning with adapters: peak memory 2187 MB
/// when nodes held every input tensor, see docs/BENCHMARKS.md for after.
final class Node {
    /// Where an input's gradient goes.
    enum Edge {
        /// An intermediate result: its gradient flows on into the node that produced it.
        case node(Node)
        /// A leaf (a parameter, or an input marked `requiringGrad`): its gradient accumulates in `.grad`.
        case leaf(Tensor)
        /// An input that needs no gradient.
        case none
    }
    private(set) var edges: [Edge]
    private(set) var backward: ((Tensor) -> [Tensor?])?

    init(inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        edges = inputs.map { input in
            guard input.requiresGrad else { return .none }
            return input.node.map(Edge.node) ?? .leaf(input)
        }
        self.backward = backward
    }

    /// Drops the closure and its saved tensors once the node's gradient has been passed on.
    func release() { backward = nil; edges = [] }
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

        guard let root = node else {   // a leaf: its gradient is the seed
            accumulateGrad(seed)
            return
        }
        // Topological order of the nodes by iterative depth-first search (graphs can be thousands of
        // nodes deep).
        var order: [Node] = []
        var visited = Set<ObjectIdentifier>()
        // How many edges lead to each leaf: its gradient is complete once that many have arrived, and is
        // then moved to `.grad` at once (holding every parameter's gradient to the end of the pass cost
        // full fine-tuning of AST-base 75 MB of peak and ~12% of its step).
        var pending: [ObjectIdentifier: Int] = [:]
        var stack: [(Node, Bool)] = [(root, false)]
        while let (n, expanded) = stack.popLast() {
            if expanded { order.append(n); continue }
            if !visited.insert(ObjectIdentifier(n)).inserted { continue }
            stack.append((n, true))
            for edge in n.edges {
                switch edge {
                case .node(let input) where !visited.contains(ObjectIdentifier(input)): stack.append((input, false))
                case .leaf(let t): pending[ObjectIdentifier(t), default: 0] += 1
                default: break
                }
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
        var leaves: [ObjectIdentifier: (Tensor, Tensor)] = [:]
        func add(_ g: Tensor, to table: inout [ObjectIdentifier: Tensor], _ key: ObjectIdentifier) {
            table[key] = table[key].map { Kernels.add($0, g) } ?? g
        }
        GradMode.noGrad {
            for n in order.reversed() {
                guard let g = grads.removeValue(forKey: ObjectIdentifier(n)), let backward = n.backward else { continue }
                for (edge, ig) in zip(n.edges, backward(g)) {
                    switch edge {
                    case .node(let input): if let ig { add(ig, to: &grads, ObjectIdentifier(input)) }
                    case .leaf(let t):
                        let key = ObjectIdentifier(t)
                        if let ig { leaves[key] = (t, leaves[key].map { Kernels.add($0.1, ig) } ?? ig) }
                        pending[key, default: 1] -= 1
                        if pending[key]! <= 0, let (leaf, total) = leaves.removeValue(forKey: key) { leaf.accumulateGrad(total) }
                    case .none: break
                    }
                }
                n.release()  // free saved activations as soon as they are consumed
            }
        }
        for (t, g) in leaves.values { t.accumulateGrad(g) }
        node = nil
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
