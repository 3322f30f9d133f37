import Engine

extension BatchNorm {
    /// This eval-mode batch norm folded into the convolution before it: with
    /// scale_o = γ_o / √(σ²_o + ε), BN(conv(x, W) + b) = conv(x, W') + b' where W'_o = scale_o · W_o and
    /// b'_o = β_o + scale_o · (b_o − μ_o) (b = 0 for a bias-free convolution). One pass over the weights
    /// instead of one over the activations; used for inference only (no graph).
    public func folded(into conv: Conv2d) throws -> (weight: Tensor, bias: Tensor) {
        let o = conv.weight.shape[0]
        guard weight.shape == [o] else {
            throw NNError("BatchNorm of \(weight.shape[0]) channels cannot fold into a convolution of \(o) outputs")
        }
        let perOutput = conv.weight.count / o
        // Own pages, returned to the system when dropped (the pool would keep every layer's size).
        let w = Tensor.pageBacked(conv.weight.shape), b = Tensor.empty([o])
        for c in 0..<o {
            let scale = weight.data[c] / (runningVar.data[c] + eps).squareRoot()
            let src = conv.weight.data + c * perOutput, dst = w.data + c * perOutput
            for i in 0..<perOutput { dst[i] = src[i] * scale }
            b.data[c] = bias.data[c] + scale * ((conv.bias?.data[c] ?? 0) - runningMean.data[c])
        }
        return (w, b)
    }
}
