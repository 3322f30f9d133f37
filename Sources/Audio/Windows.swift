import Foundation

/// Analysis windows with the conventions of the references that use them.
public enum WindowKind: String, Codable, Sendable {
    /// Kaldi "hanning": symmetric 0.5 − 0.5 cos(2πn/(N−1)).
    case hanning
    /// Kaldi "povey": the symmetric Hann window to the power 0.85.
    case povey
    /// Kaldi "hamming": symmetric 0.54 − 0.46 cos(2πn/(N−1)).
    case hamming
    case rectangular
    /// Periodic Hann (librosa / torch.hann_window default): 0.5 − 0.5 cos(2πn/N).
    case hannPeriodic

    public func values(_ n: Int) -> [Float] {
        let twoPi = 2 * Double.pi
        let sym = Double(max(n - 1, 1))
        return (0..<n).map { i -> Float in
            let x = Double(i)
            switch self {
            case .hanning: return Float(0.5 - 0.5 * cos(twoPi * x / sym))
            case .povey: return Float(Foundation.pow(0.5 - 0.5 * cos(twoPi * x / sym), 0.85))
            case .hamming: return Float(0.54 - 0.46 * cos(twoPi * x / sym))
            case .rectangular: return 1
            case .hannPeriodic: return Float(0.5 - 0.5 * cos(twoPi * x / Double(n)))
            }
        }
    }
}
