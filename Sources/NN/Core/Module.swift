import Engine

/// Base class of every layer and model, in the spirit of `torch.nn.Module` and MLX's `Module`.
///
/// Parameters and submodules are ordinary stored properties; they are discovered by reflection, and
/// their checkpoint keys are the property names in snake_case (`clsToken` → `cls_token`), joined with
/// dots and array indices exactly like a PyTorch `state_dict` (`blocks.3.attn.qkv.weight`). A subclass
/// renames a key with `keyOverrides`, or mounts a child's keys at its own level with an empty name.
///
/// A child declared `@Child` can be replaced or wrapped by key pattern (`replaceModules(matching:with:)`),
/// and parameters are frozen by key (`freeze(prefix:)`) or by any predicate (`freeze(where:)`).
open class Module {
    /// Training mode (dropout, batch statistics); set recursively by `train()` / `eval()`.
    public private(set) var training = true

    public init() {}

    /// Property names whose tensors are state but not trainable (e.g. BatchNorm running statistics).
    open var bufferNames: Set<String> { [] }

    /// Property name → checkpoint key, where snake_case of the property name is not the key.
    open var keyOverrides: [String: String] { [:] }

    // MARK: Reflection

    enum Entry {
        case tensor(Tensor, isBuffer: Bool)
        /// A child module; `slot` says where to put a replacement, nil for a child not declared `@Child`.
        case module(Module, slot: Slot?)
    }

    /// Where a replaceable child lives: its `Child` box and, for an array of modules, the index.
    struct Slot {
        let box: any ChildSlot
        let index: Int?
    }

    /// Direct entries (key, value) in declaration order, superclass properties first.
    func entries() -> [(String, Entry)] {
        var mirrors: [Mirror] = []
        var m: Mirror? = Mirror(reflecting: self)
        while let cur = m { mirrors.append(cur); m = cur.superclassMirror }
        var out: [(String, Entry)] = []
        for mirror in mirrors.reversed() {
            for child in mirror.children {
                guard var label = child.label, label != "training" else { continue }
                var value = child.value
                var box: (any ChildSlot)? = nil
                if let b = value as? any ChildSlot {
                    // `@Child var qkv` is stored as `_qkv`, a box holding the value.
                    box = b; value = b.value
                    if label.hasPrefix("_") { label.removeFirst() }
                }
                let key = keyOverrides[label] ?? Module.snakeCase(label)
                if let t = value as? Tensor {
                    out.append((key, .tensor(t, isBuffer: bufferNames.contains(label))))
                } else if let module = value as? Module {
                    out.append((key, .module(module, slot: box.map { Slot(box: $0, index: nil) })))
                } else if let modules = value as? [Module] {
                    for (i, module) in modules.enumerated() {
                        out.append((key.isEmpty ? "\(i)" : "\(key).\(i)", .module(module, slot: box.map { Slot(box: $0, index: i) })))
                    }
                }
            }
        }
        return out
    }

    static func snakeCase(_ name: String) -> String {
        var s = ""
        for ch in name {
            if ch.isUppercase { if !s.isEmpty { s.append("_") }; s.append(Character(ch.lowercased())) } else { s.append(ch) }
        }
        return s
    }

    static func join(_ prefix: String, _ key: String) -> String {
        prefix.isEmpty ? key : (key.isEmpty ? prefix : "\(prefix).\(key)")
    }

    /// Every tensor of the module tree (parameters and buffers) with its checkpoint key.
    public func namedTensors(prefix: String = "") -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (key, entry) in entries() {
            switch entry {
            case .tensor(let t, _): out.append((Module.join(prefix, key), t))
            case .module(let m, _): out += m.namedTensors(prefix: Module.join(prefix, key))
            }
        }
        return out
    }

    /// Trainable tensors (everything but buffers) with their keys, whether frozen or not.
    public func namedParameters(prefix: String = "") -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (key, entry) in entries() {
            switch entry {
            case .tensor(let t, let isBuffer): if !isBuffer { out.append((Module.join(prefix, key), t)) }
            case .module(let m, _): out += m.namedParameters(prefix: Module.join(prefix, key))
            }
        }
        return out
    }

    /// Parameters that currently require a gradient (what an optimizer should update).
    public func trainableParameters() -> [Tensor] { namedParameters().map(\.1).filter(\.requiresGrad) }

    public func namedModules(prefix: String = "") -> [(String, Module)] {
        var out: [(String, Module)] = [(prefix, self)]
        for (key, entry) in entries() {
            if case .module(let m, _) = entry { out += m.namedModules(prefix: Module.join(prefix, key)) }
        }
        return out
    }

    // MARK: Modes

    /// Switches training mode (dropout, batch statistics, in-model augmentation) for this module and every
    /// module under it, except those held in eval mode (`holdInEvalMode`), which stay in eval.
    public func train(_ on: Bool = true) { for (_, m) in namedModules() { m.training = on && !m.heldInEval } }
    public func eval() { train(false) }

    /// Whether `train()` leaves this module in eval mode.
    public private(set) var heldInEval = false

    /// Keeps this module and every module under it in eval mode through later `train()` calls: a frozen
    /// encoder under a head that trains (a linear probe) is a fixed feature extractor, so its batch norms
    /// keep their running statistics and its dropout and in-model augmentation stay off, as LAION's and
    /// timm's linear probes run it. `false` releases it.
    public func holdInEvalMode(_ hold: Bool = true) {
        for (_, m) in namedModules() { m.heldInEval = hold; if hold { m.training = false } }
    }

    /// Stops gradients for every parameter (optionally only those whose key has `prefix`); see also
    /// `freeze(where:)`.
    public func freeze(prefix: String = "") { freeze { key, _ in key.hasPrefix(prefix) } }

    public func unfreeze(prefix: String = "") { unfreeze { key, _ in key.hasPrefix(prefix) } }

    public func parameterCount(trainableOnly: Bool = false) -> Int {
        namedParameters().filter { !trainableOnly || $0.1.requiresGrad }.reduce(0) { $0 + $1.1.count }
    }

    public func zeroGrad() { for (_, p) in namedParameters() { p.grad = nil } }

    // MARK: State dict

    public func stateDict() -> [String: Tensor] { Dictionary(namedTensors(), uniquingKeysWith: { a, _ in a }) }

    /// Copies values from `state` into this module's tensors. With `strict`, a missing or unexpected
    /// key is an error naming every such key; a shape mismatch is always an error naming the key.
    /// Returns the keys that were missing and unexpected (non-strict loading).
    @discardableResult
    public func load(stateDict state: [String: Tensor], strict: Bool = true) throws -> (missing: [String], unexpected: [String]) {
        var copy = state
        return try load(consuming: &copy, strict: strict)
    }

    /// `load(stateDict:strict:)` that removes each entry from `state` once it is copied, so a tensor
    /// nothing else holds is freed at once: with a checkpoint's parsed tensors (page-backed, see
    /// `Tensor.pageBacked`) and a model built under `Random.withoutInitialisation`, a checkpoint is never
    /// resident twice while it loads. On an error the entries not yet copied stay in `state`.
    @discardableResult
    public func load(consuming state: inout [String: Tensor], strict: Bool = true) throws -> (missing: [String], unexpected: [String]) {
        // A released placeholder would take the values while the converted weight kept running.
        if let refusal = inferenceOnlyRefusal("load a checkpoint") { throw NNError("load(stateDict:): \(refusal)") }
        let mine = namedTensors()
        let known = Set(mine.map(\.0))
        let missing = mine.map(\.0).filter { state[$0] == nil }
        let unexpected = state.keys.filter { !known.contains($0) }.sorted()
        if strict && (!missing.isEmpty || !unexpected.isEmpty) {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing keys: \(missing.joined(separator: ", "))") }
            if !unexpected.isEmpty { parts.append("unexpected keys: \(unexpected.joined(separator: ", "))") }
            throw NNError("load(stateDict:): checkpoint does not match \(type(of: self)): " + parts.joined(separator: "; "))
        }
        // Shapes first, so a mismatch leaves both the module and `state` as they were.
        for (key, t) in mine {
            if let src = state[key], src.shape != t.shape {
                throw NNError("load(stateDict:): key '\(key)' has shape \(src.shape) in the checkpoint but \(t.shape) in \(type(of: self))")
            }
        }
        for (key, t) in mine {
            guard let src = state.removeValue(forKey: key) else { continue }
            try t.assign(from: src)
        }
        return (missing, unexpected)
    }
}

public struct NNError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Layers applied in order; its children's keys are their indices ("0", "1", ...), like `nn.Sequential`.
public final class Sequential: Module {
    @Child public private(set) var layers: [Module]
    public init(_ layers: [Module]) { self.layers = layers }
    override public var keyOverrides: [String: String] { ["layers": ""] }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var y = x
        for layer in layers {
            guard let f = layer as? any UnaryLayer else { throw NNError("Sequential: \(type(of: layer)) is not a tensor-to-tensor layer") }
            y = try f(y)
        }
        return y
    }
}

/// A layer mapping one tensor to one tensor (what `Sequential` can chain).
public protocol UnaryLayer: Module {
    func callAsFunction(_ x: Tensor) throws -> Tensor
}
