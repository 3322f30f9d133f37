import Engine

extension BatchNorm {
    /// This eval-mode batch norm folded into the convolution before it: with
    /// scale_o = γ_o / √(σ²_o + ε), BN(conv(x, W) + b) = conv(x, W') + b' where W'_o = scale_o · W_o and
    /// b'_o = β_o + scale_o · (b_o − μ_o) (b = 0 for a bias-free convolution). One pass over the weights
    /// instead of one over the activations; used for inference only (no graph).
    public func folded(into conv: Conv2d) throws -> (weight: Tensor, bias: Tensor) {
        let (scale, b) = try foldingScale(into: conv)
        return (conv.weight.scaledPerOutputChannel(scale), b)
    }

    /// The fold without the folded weight: scale [O] and b' [O] as in `folded(into:)`, for callers that apply
    /// the scale themselves (`ConvChainStage.scaledConvReLU` does it as oneDNN reorders W, so no copy of W is made).
    public func foldingScale(into conv: Conv2d) throws -> (scale: Tensor, bias: Tensor) {
        let o = conv.weight.shape[0]
        guard weight.shape == [o] else {
            throw NNError("BatchNorm of \(weight.shape[0]) channels cannot fold into a convolution of \(o) outputs")
        }
        let scale = Tensor.empty([o]), b = Tensor.empty([o])
        for c in 0..<o {
            scale.data[c] = weight.data[c] / (runningVar.data[c] + eps).squareRoot()
            b.data[c] = bias.data[c] + scale.data[c] * ((conv.bias?.data[c] ?? 0) - runningMean.data[c])
        }
        return (scale, b)
    }
}
