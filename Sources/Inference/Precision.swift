import Engine
import NN

extension Classifier {
    /// Runs this classifier's linear layers in `precision` from now on (bf16 or int8 through oneDNN,
    /// weights converted here, once; docs/PRECISION.md); with bf16 also PANNs' convolutions. Returns the precision that runs: fp32 where the
    /// CPU lacks the instructions, said once on standard error. The model is changed in place, and
    /// every copy of this `Classifier` shares it; converted, it is inference only (its fp32 weights are
    /// released: training, saving or loading it is refused, naming the layer; `convertLinearLayers`).
    @discardableResult
    public func use(_ precision: Precision, notice: ((String) -> Void)? = nil) -> Precision {
        model.convertForInference(to: precision, notice: notice)
    }
}
