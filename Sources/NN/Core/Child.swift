import Engine

/// Marks a stored child of a `Module` (a module, an optional module or an array of modules) as one
/// that `Module.replaceModules(matching:with:)` may swap out:
///
///     @Child public private(set) var qkv: Linear
///
/// Reflection does not change: the child's checkpoint key is still its property name in snake_case
/// (`keyOverrides` still takes the property name), and reads cost one extra load. Swift's `Mirror`
/// cannot write to a property, so the value lives in this small box, which reflection finds and can
/// write. A child declared without `@Child` is a fixed part of its parent; naming it to
/// `replaceModules` is an error saying so.
///
/// A replacement must have the property's type (for an array, its element type). To wrap a stock
/// layer, subclass it: `Linear`, `LayerNorm`, `MLP`, `MultiHeadAttention` and `ViTBlock` are open,
/// and each has `init(sharing:)`, which makes the subclass hold the wrapped layer's tensors and children
/// under the same keys; the subclass adds its own parameters next to them and overrides
/// `callAsFunction`, calling `super.callAsFunction` for the stock computation.
@propertyWrapper
public final class Child<Value> {
    public var wrappedValue: Value
    public init(wrappedValue: Value) { self.wrappedValue = wrappedValue }
}

/// What reflection needs of a `Child` box, whatever its value type.
protocol ChildSlot: AnyObject {
    var value: Any { get }
    /// The type a replacement must have: the value type, or the element type at an array index.
    func slotType(at index: Int?) -> Any.Type
    func accepts(_ module: Module, at index: Int?) -> Bool
    /// Puts `module` in the slot; `accepts` must have said yes.
    func put(_ module: Module, at index: Int?)
}

extension Child: ChildSlot {
    var value: Any { wrappedValue }

    func slotType(at index: Int?) -> Any.Type {
        if index != nil, let array = wrappedValue as? any ModuleArray { return array.elementType }
        return Value.self
    }

    func accepts(_ module: Module, at index: Int?) -> Bool {
        guard let index else { return module is Value }
        guard let array = wrappedValue as? any ModuleArray else { return false }
        return array.replacing(index, with: module) != nil
    }

    func put(_ module: Module, at index: Int?) {
        if let index {
            let array = wrappedValue as! any ModuleArray
            wrappedValue = array.replacing(index, with: module)! as! Value
        } else {
            wrappedValue = module as! Value
        }
    }
}

/// An array of modules whose elements can be swapped for modules of the element type.
protocol ModuleArray {
    var elementType: Any.Type { get }
    func replacing(_ index: Int, with module: Module) -> Self?
}

extension Array: ModuleArray where Element: Module {
    var elementType: Any.Type { Element.self }

    func replacing(_ index: Int, with module: Module) -> Array? {
        guard indices.contains(index), let element = module as? Element else { return nil }
        var copy = self
        copy[index] = element
        return copy
    }
}

// MARK: Replacing and freezing by key

extension Module {
    /// Replaces (or wraps) every submodule whose key matches `pattern`, and returns the keys replaced,
    /// in key order.
    ///
    ///     try encoder.replaceModules(matching: "blocks.*.attn.qkv") { key, old in LoRALinear(wrapping: old as! Linear) }
    ///
    /// A pattern is a module key (`blocks.3.attn.qkv`) in which `*` stands for exactly one component, an
    /// array index or a name. A match is not searched further: its own submodules are not replaced. The
    /// slot matched must be declared `@Child` (see `Child`), and the replacement must have the slot's
    /// type, e.g. a `Linear` subclass for `qkv`; to keep the replaced layer's parameters under their keys
    /// (`blocks.0.attn.qkv.weight`), build the wrapper with the stock layer's `init(sharing:)`, and its
    /// own parameters get keys beside them (`blocks.0.attn.qkv.lora_a`). The replacement takes the
    /// training mode of the module it replaces. Returning `old` leaves a slot as it is.
    ///
    /// Every replacement is built and checked before any is put in, so on an error the module tree is
    /// unchanged. Throws an `NNError` naming the pattern when it matches no submodule, or naming the key
    /// when its slot is not `@Child` or the replacement is of the wrong type; errors thrown by
    /// `replacement` pass through.
    @discardableResult
    public func replaceModules(matching pattern: String,
                               with replacement: (_ key: String, _ old: Module) throws -> Module) throws -> [String] {
        let wanted = pattern.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !wanted.contains("") else {
            throw NNError("replaceModules(matching: \"\(pattern)\"): not a key pattern (dot-separated names, indices or *)")
        }
        var found: [(key: String, owner: Module, old: Module, slot: Slot?)] = []
        func walk(_ module: Module, _ prefix: String) {
            for (name, entry) in module.entries() {
                guard case .module(let child, let slot) = entry else { continue }
                let key = Module.join(prefix, name)
                if Module.key(key, matches: wanted) {
                    found.append((key, module, child, slot))
                } else {
                    walk(child, key)
                }
            }
        }
        walk(self, "")
        guard !found.isEmpty else {
            throw NNError("replaceModules(matching: \"\(pattern)\"): no submodule of \(type(of: self)) has a key matching the pattern")
        }
        var planned: [(slot: Slot, old: Module, new: Module)] = []
        for f in found {
            guard let slot = f.slot else {
                throw NNError("replaceModules(matching: \"\(pattern)\"): '\(f.key)' is a fixed child of \(type(of: f.owner)); declare the property @Child to make it replaceable")
            }
            let new = try replacement(f.key, f.old)
            guard slot.box.accepts(new, at: slot.index) else {
                throw NNError("replaceModules(matching: \"\(pattern)\"): '\(f.key)' holds \(slot.box.slotType(at: slot.index)), and the replacement \(type(of: new)) is not one")
            }
            planned.append((slot, f.old, new))
        }
        for p in planned where p.new !== p.old {
            p.new.train(p.old.training)
            p.slot.box.put(p.new, at: p.slot.index)
        }
        return found.map(\.key)
    }

    /// `replaceModules(matching:with:)` where every match must be an `M`; a match of another type is an
    /// error naming its key, thrown before anything is replaced.
    ///
    ///     try model.replaceModules(matching: "blocks.*.mlp.fc1", as: Linear.self) { _, old in Shifted(sharing: old) }
    @discardableResult
    public func replaceModules<M: Module>(matching pattern: String, as type: M.Type,
                                          with replacement: (_ key: String, _ old: M) throws -> Module) throws -> [String] {
        try replaceModules(matching: pattern) { key, old in
            guard let old = old as? M else {
                throw NNError("replaceModules(matching: \"\(pattern)\"): '\(key)' is a \(Swift.type(of: old)), not a \(M.self)")
            }
            return try replacement(key, old)
        }
    }

    /// Whether a dotted key has the pattern's components, `*` matching any one.
    static func key(_ key: String, matches pattern: [String]) -> Bool {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == pattern.count else { return false }
        return zip(parts, pattern).allSatisfy { $1 == "*" || $0 == $1 }
    }

    /// Stops gradients for every parameter for which `predicate(key, parameter)` holds, and returns
    /// their keys. BitFit, for instance: `model.freeze { key, _ in !key.hasSuffix(".bias") }`.
    @discardableResult
    public func freeze(where predicate: (_ key: String, _ parameter: Tensor) throws -> Bool) rethrows -> [String] {
        var keys: [String] = []
        for (key, p) in namedParameters() where try predicate(key, p) {
            p.requiresGrad = false
            p.grad = nil
            keys.append(key)
        }
        return keys
    }

    /// Lets gradients reach every parameter for which `predicate(key, parameter)` holds, and returns
    /// their keys (`model.freeze(); model.unfreeze { key, _ in key.hasSuffix(".bias") }`).
    @discardableResult
    public func unfreeze(where predicate: (_ key: String, _ parameter: Tensor) throws -> Bool) rethrows -> [String] {
        var keys: [String] = []
        for (key, p) in namedParameters() where try predicate(key, p) {
            p.requiresGrad = true
            keys.append(key)
        }
        return keys
    }
}
