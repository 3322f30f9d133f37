import Engine

/// Weight initialisers, matching `torch.nn.init` and PyTorch's layer defaults.
public enum Init {
    /// PyTorch's default for Linear/Conv weights: kaiming_uniform(a=√5) = U(−1/√fanIn, 1/√fanIn).
    public static func torchDefault(_ shape: [Int], fanIn: Int) -> Tensor {
        let bound = 1 / Float(max(fanIn, 1)).squareRoot()
        return Tensor.uniform(shape, low: -bound, high: bound)
    }

    public static func truncatedNormal(_ shape: [Int], std: Float) -> Tensor {
        Tensor.truncatedNormal(shape, mean: 0, std: std, a: -2 * std, b: 2 * std)
    }

    /// Xavier/Glorot uniform: U(±√(6 / (fanIn + fanOut))).
    public static func xavierUniform(_ shape: [Int], fanIn: Int, fanOut: Int) -> Tensor {
        let bound = xavierBound(fanIn: fanIn, fanOut: fanOut)
        return Tensor.uniform(shape, low: -bound, high: bound)
    }

    /// `torch.nn.init.xavier_uniform_` in place: fans of a [out, in, k...] weight are in·k and out·k.
    /// Does nothing under `Random.withoutInitialisation` (a checkpoint fills the weight).
    public static func xavierUniform(_ weight: Tensor) {
        guard !Random.initialisationSkipped, weight.rank >= 2 else { return }
        let receptive = weight.shape.dropFirst(2).reduce(1, *)
        let bound = xavierBound(fanIn: weight.shape[1] * receptive, fanOut: weight.shape[0] * receptive)
        weight.fillUniform(low: -bound, high: bound, generator: &Random.global)   // in place: no pooled temporary
    }

    private static func xavierBound(fanIn: Int, fanOut: Int) -> Float { (6 / Float(fanIn + fanOut)).squareRoot() }

    /// timm's ViT initialisation (`_init_weights`), which AST and SSAST inherit: every Linear inside
    /// `module` gets weight ~ truncated normal (std 0.02) and a zero bias, where PyTorch's Linear
    /// default is twice as wide at width 192 and has non-zero biases. Matches the reference's starting
    /// point; no learning-speed difference was measurable on the keyword corpus.
    public static func timmLinear(_ module: Module) {
        // Under `Random.withoutInitialisation` weights and biases are zeros already, and writing them
        // would make resident the pages a checkpoint is about to fill.
        guard !Random.initialisationSkipped else { return }
        for (_, m) in module.namedModules() {
            guard let linear = m as? Linear else { continue }
            linear.weight.fillTruncatedNormal(std: 0.02, a: -0.04, b: 0.04)   // truncatedNormal(std: 0.02) in place
            if let b = linear.bias { b.data.update(repeating: 0, count: b.count) }
        }
    }
}
