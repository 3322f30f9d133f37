import Engine

/// y = x Wᵀ + b, weight [out, in] (`torch.nn.Linear`).
///
/// Open so that an adapter can take a projection's place (see `Child`): a subclass built with
/// `init(sharing:)` holds the same weight and bias under the same keys and overrides `callAsFunction`.
/// Layers that read a `Linear`'s weight directly in a fused path do so only for an exact `Linear`.
open class Linear: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        weight = Init.torchDefault([outFeatures, inFeatures], fanIn: inFeatures).requiringGrad()
        self.bias = bias ? Init.torchDefault([outFeatures], fanIn: inFeatures).requiringGrad() : nil
    }

    /// A layer holding `other`'s weight and bias tensors themselves (not copies): what a subclass that
    /// wraps `other` calls, so the wrapped parameters keep their keys and stay shared.
    public init(sharing other: Linear) {
        weight = other.weight
        bias = other.bias
    }

    /// A layer over given tensors: `weight` [out, in], `bias` [out] (held, not copied).
    public init(weight: Tensor, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }

    open func callAsFunction(_ x: Tensor) throws -> Tensor { try x.linear(weight: weight, bias: bias) }
}

/// (x − μ) / √(σ² + eps) · weight + bias over the last axis (`torch.nn.LayerNorm`).
///
/// Open like `Linear`; fused paths read its parameters only for an exact `LayerNorm`.
open class LayerNorm: Module, UnaryLayer {
    public let weight: Tensor?
    public let bias: Tensor?
    public let eps: Float

    public init(_ dim: Int, eps: Float = 1e-5, affine: Bool = true) {
        weight = affine ? Tensor.ones([dim]).requiringGrad() : nil
        bias = affine ? Tensor.zeros([dim]).requiringGrad() : nil
        self.eps = eps
    }

    /// A layer holding `other`'s weight and bias tensors themselves, with its eps (see `Linear.init(sharing:)`).
    public init(sharing other: LayerNorm) {
        weight = other.weight
        bias = other.bias
        eps = other.eps
    }

    open func callAsFunction(_ x: Tensor) throws -> Tensor { try x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

/// Batch normalisation over channel axis 1, for [N, C], [N, C, L] (BatchNorm1d) or [N, C, H, W]
/// (BatchNorm2d). Running statistics are buffers, updated in training mode.
public final class BatchNorm: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor
    public let runningMean: Tensor
    public let runningVar: Tensor
    public let numBatchesTracked: Tensor
    public let eps: Float, momentum: Float

    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        weight = Tensor.ones([channels]).requiringGrad()
        bias = Tensor.zeros([channels]).requiringGrad()
        runningMean = Tensor.zeros([channels])
        runningVar = Tensor.ones([channels])
        numBatchesTracked = Tensor.zeros([])
        self.eps = eps; self.momentum = momentum
    }

    override public var bufferNames: Set<String> { ["runningMean", "runningVar", "numBatchesTracked"] }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        if training { numBatchesTracked.data[0] += 1 }
        return try x.batchNorm(runningMean: runningMean, runningVar: runningVar, weight: weight, bias: bias,
                               training: training, momentum: momentum, eps: eps)
    }
}

public typealias BatchNorm1d = BatchNorm
public typealias BatchNorm2d = BatchNorm

/// 2-d convolution, weight [O, C/groups, kh, kw] (`torch.nn.Conv2d`).
public final class Conv2d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    public let geometry: Conv2dGeometry

    public init(_ inChannels: Int, _ outChannels: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true) {
        let fanIn = inChannels / groups * kernel.0 * kernel.1
        weight = Init.torchDefault([outChannels, inChannels / groups, kernel.0, kernel.1], fanIn: fanIn).requiringGrad()
        self.bias = bias ? Init.torchDefault([outChannels], fanIn: fanIn).requiringGrad() : nil
        geometry = Conv2dGeometry(stride: stride, padding: padding, dilation: dilation, groups: groups)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try x.conv2d(weight: weight, bias: bias, geometry) }
}

/// 1-d convolution, weight [O, C/groups, k] (`torch.nn.Conv1d`).
public final class Conv1d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int, padding: Int, dilation: Int, groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true) {
        let fanIn = inChannels / groups * kernel
        weight = Init.torchDefault([outChannels, inChannels / groups, kernel], fanIn: fanIn).requiringGrad()
        self.bias = bias ? Init.torchDefault([outChannels], fanIn: fanIn).requiringGrad() : nil
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try x.conv1d(weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

/// Row lookup in a [num, dim] table (`torch.nn.Embedding`).
public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ dim: Int) { weight = Tensor.randn([count, dim]).requiringGrad() }

    /// Embeds `indices` laid out with `shape`; the result has shape `shape + [dim]`.
    public func callAsFunction(_ indices: [Int], shape: [Int]? = nil) throws -> Tensor {
        let rows = try weight.indexSelect(axis: 0, indices: indices)
        return try rows.reshape((shape ?? [indices.count]) + [weight.shape[1]])
    }
}

/// Inverted dropout, active only in training mode.
public final class Dropout: Module, UnaryLayer {
    public let p: Float
    public init(_ p: Float = 0.5) { self.p = p }
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try x.dropout(p: p, training: training) }
}

/// Stochastic depth: drops a residual branch per sample with probability p (timm's `DropPath`).
public final class DropPath: Module, UnaryLayer {
    public let p: Float
    public init(_ p: Float = 0) { self.p = p }

    /// True when the layer passes its input through unchanged (eval mode or p = 0).
    public var isIdentity: Bool { !training || p <= 0 }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard !isIdentity else { return x }
        var maskShape = [Int](repeating: 1, count: x.rank); maskShape[0] = x.shape[0]
        let mask = Tensor.empty(maskShape)
        for i in 0..<mask.count { mask.data[i] = Random.global.nextUniform() < p ? 0 : 1 / (1 - p) }
        return try x * mask
    }
}

/// Identity placeholder (e.g. DropPath(0) or a removed head).
public final class Identity: Module, UnaryLayer {
    override public init() {}
    public func callAsFunction(_ x: Tensor) throws -> Tensor { x }
}

/// max(x, 0) as a layer (for `Sequential` heads keyed like PyTorch's, e.g. `0`, `2` around it).
public final class ReLU: Module, UnaryLayer {
    override public init() {}
    public func callAsFunction(_ x: Tensor) throws -> Tensor { x.relu() }
}
