/// A contiguous, row-major Float32 N-d array that records the operations applied to it when any input
/// requires a gradient (define-by-run autodiff; see `Autograd.swift`).
///
/// Tensors are reference types like `torch.Tensor`: a parameter shared by two modules is one object,
/// and `reshape` returns a view over the same storage.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    package let storage: Storage
    /// Trainable leaves set this; results of ops inherit it from their inputs while grad mode is on.
    public var requiresGrad: Bool
    /// Accumulated gradient of a leaf after `backward()`.
    public var grad: Tensor?
    /// The backward function that produced this tensor (nil for leaves and for no-grad results).
    var node: Node?

    init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// Uninitialised tensor; every element must be written by the caller.
    public static func empty(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: Storage(count: shape.reduce(1, *), zeroed: false))
    }

    public convenience init(_ values: [Float], shape: [Int]) throws {
        try check(shape.allSatisfy { $0 >= 0 }, "Tensor(shape:): negative dimension in \(shape)")
        let n = shape.reduce(1, *)
        try check(values.count == n, "Tensor(shape: \(shape)) needs \(n) values, got \(values.count)")
        self.init(shape: shape, storage: Storage(count: n, zeroed: false))
        values.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: n) }
    }

    /// A 1-d tensor from values.
    public convenience init(_ values: [Float]) {
        self.init(shape: [values.count], storage: Storage(count: values.count, zeroed: false))
        values.withUnsafeBufferPointer { if let b = $0.baseAddress { storage.pointer.update(from: b, count: values.count) } }
    }

    public static func scalar(_ value: Float) -> Tensor {
        let t = Tensor.empty([])
        t.storage.pointer[0] = value
        return t
    }

    public static func zeros(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: Storage(count: shape.reduce(1, *), zeroed: true))
    }

    /// Zeros in pages of their own that become resident only as they are written and go back to the
    /// system when the tensor dies, never to the buffer pool: for weights a checkpoint is about to fill
    /// and for a checkpoint's parsed tensors (see `Storage(pagesFor:)`). Below
    /// `Storage.pageBackedMinimum` floats it is plain `zeros`.
    package static func pageBacked(_ shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        guard n >= Storage.pageBackedMinimum else { return zeros(shape) }
        return Tensor(shape: shape, storage: Storage(pagesFor: n))
    }

    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        let t = empty(shape)
        t.data.update(repeating: value, count: t.count)
        return t
    }

    public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

    public static func arange(_ n: Int) -> Tensor {
        let t = empty([n])
        for i in 0..<n { t.data[i] = Float(i) }
        return t
    }

    /// Normal(mean, std) samples from `generator` (the global one by default).
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1,
                             generator: inout RandomGenerator) -> Tensor {
        let t = empty(shape)
        for i in 0..<t.count { t.data[i] = mean + std * generator.nextNormal() }
        return t
    }

    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1) -> Tensor {
        if Random.initialisationSkipped { return pageBacked(shape) }
        return randn(shape, mean: mean, std: std, generator: &Random.global)
    }

    /// Uniform in [low, high).
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1,
                               generator: inout RandomGenerator) -> Tensor {
        let t = empty(shape)
        t.fillUniform(low: low, high: high, generator: &generator)
        return t
    }

    /// Overwrites every element, in order, with the draw `uniform(shape, low:high:)` would make: in-place
    /// initialisers use it, since a temporary of a weight's size would go back to the buffer pool and stay
    /// there (Cnn14's convolutions: 323 MB held after construction).
    public func fillUniform(low: Float, high: Float, generator: inout RandomGenerator) {
        for i in 0..<count { data[i] = low + (high - low) * generator.nextUniform() }
    }

    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1) -> Tensor {
        if Random.initialisationSkipped { return pageBacked(shape) }
        return uniform(shape, low: low, high: high, generator: &Random.global)
    }

    /// Normal(mean, std) truncated to [a, b] by rejection, as `torch.nn.init.trunc_normal_`.
    public static func truncatedNormal(_ shape: [Int], mean: Float = 0, std: Float = 1,
                                       a: Float = -2, b: Float = 2) -> Tensor {
        if Random.initialisationSkipped { return pageBacked(shape) }
        let t = empty(shape)
        t.fillTruncatedNormal(mean: mean, std: std, a: a, b: b)
        return t
    }

    /// Overwrites every element, in order, with the draw `truncatedNormal(shape, ...)` would make (see `fillUniform`).
    public func fillTruncatedNormal(mean: Float = 0, std: Float = 1, a: Float = -2, b: Float = 2) {
        for i in 0..<count {
            var v: Float
            repeat { v = mean + std * Random.global.nextNormal() } while v < a || v > b
            data[i] = v
        }
    }

    // MARK: Access

    public var rank: Int { shape.count }
    public var data: UnsafeMutablePointer<Float> { storage.pointer }
    public var isLeaf: Bool { node == nil }

    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The single value of a one-element tensor.
    public func item() throws -> Float {
        try check(count == 1, "item(): tensor of shape \(shape) has \(count) elements, expected 1")
        return data[0]
    }

    /// The size of `axis`, which may be negative (counted from the end).
    public func size(_ axis: Int) -> Int { shape[axis < 0 ? axis + rank : axis] }

    /// A new leaf with the same values, outside any graph.
    public func detach() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// A deep copy that does not share storage (and records no graph).
    public func copy() -> Tensor {
        let t = Tensor.empty(shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Overwrites this tensor's values in place (parameters loaded from a checkpoint, optimizer steps).
    public func assign(from other: Tensor) throws {
        try check(other.shape == shape, "assign: shape \(other.shape) does not match \(shape)")
        data.update(from: other.data, count: count)
    }

    /// Marks this leaf as trainable and returns it, like `tensor.requires_grad_()`.
    @discardableResult
    public func requiringGrad(_ flag: Bool = true) -> Tensor { requiresGrad = flag; return self }

    public var hasNonFinite: Bool {
        for i in 0..<count where !data[i].isFinite { return true }
        return false
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = toArray().prefix(8).map { String(format: "%.4f", $0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(count > 8 ? ", ..." : "")])"
    }
}

import Foundation
