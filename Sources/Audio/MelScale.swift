import Foundation

/// Mel scales and triangular filterbanks as Kaldi/torchaudio and librosa build them.
public enum MelScale: String, Codable, Sendable {
    /// 1127 ln(1 + f/700) (Kaldi; HTK in natural-log form).
    case kaldi
    /// 2595 log10(1 + f/700) (HTK, torchaudio's "htk").
    case htk
    /// Slaney's Auditory Toolbox scale (librosa's default): linear below 1 kHz, logarithmic above.
    case slaney

    public func mel(_ hz: Double) -> Double {
        switch self {
        case .kaldi: return 1127 * Foundation.log(1 + hz / 700)
        case .htk: return 2595 * Foundation.log10(1 + hz / 700)
        case .slaney:
            let fsp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fsp, logstep = Foundation.log(6.4) / 27
            return hz >= minLogHz ? minLogMel + Foundation.log(hz / minLogHz) / logstep : hz / fsp
        }
    }

    public func hz(_ mel: Double) -> Double {
        switch self {
        case .kaldi: return 700 * (Foundation.exp(mel / 1127) - 1)
        case .htk: return 700 * (Foundation.pow(10, mel / 2595) - 1)
        case .slaney:
            let fsp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fsp, logstep = Foundation.log(6.4) / 27
            return mel >= minLogMel ? minLogHz * Foundation.exp(logstep * (mel - minLogMel)) : fsp * mel
        }
    }
}

enum Filterbank {
    /// Kaldi's bank (torchaudio `get_mel_banks`): triangles equally spaced in mel, evaluated in the
    /// mel domain at each FFT bin's centre frequency; [bins, nFFT/2 + 1] with the Nyquist column zero.
    static func kaldi(bins: Int, nFFT: Int, sampleRate: Double, lowFreq: Double, highFreq: Double) -> [Float] {
        let fftBins = nFFT / 2
        let nyquist = 0.5 * sampleRate
        let high = highFreq <= 0 ? highFreq + nyquist : highFreq
        let binWidth = sampleRate / Double(nFFT)
        let melLow = MelScale.kaldi.mel(lowFreq), melHigh = MelScale.kaldi.mel(high)
        let delta = (melHigh - melLow) / Double(bins + 1)
        var w = [Float](repeating: 0, count: bins * (fftBins + 1))
        // torchaudio computes this in float32; do the same so the triangle edges round identically.
        for b in 0..<bins {
            let left = Float(melLow + Double(b) * delta), center = Float(melLow + Double(b + 1) * delta)
            let right = Float(melLow + Double(b + 2) * delta)
            for k in 0..<fftBins {
                let m = Float(1127 * Foundation.log(1 + Double(Float(binWidth * Double(k))) / 700))
                let up = (m - left) / (center - left), down = (right - m) / (right - center)
                w[b * (fftBins + 1) + k] = max(0, min(up, down))
            }
        }
        return w
    }

    /// librosa's `filters.mel`: triangles between mel-spaced edges evaluated in Hz on the FFT
    /// frequencies, optionally Slaney area-normalised; [bins, nFFT/2 + 1].
    static func librosa(bins: Int, nFFT: Int, sampleRate: Double, fMin: Double, fMax: Double,
                        scale: MelScale, slaneyNorm: Bool) -> [Float] {
        let nFreq = nFFT / 2 + 1
        let fftFreqs = (0..<nFreq).map { Double($0) * sampleRate / Double(nFFT) }
        let mMin = scale.mel(fMin), mMax = scale.mel(fMax)
        let edges = (0..<(bins + 2)).map { scale.hz(mMin + (mMax - mMin) * Double($0) / Double(bins + 1)) }
        var w = [Float](repeating: 0, count: bins * nFreq)
        for b in 0..<bins {
            let lo = edges[b], c = edges[b + 1], hi = edges[b + 2]
            let norm = slaneyNorm ? 2 / (hi - lo) : 1
            for k in 0..<nFreq {
                let lower = (fftFreqs[k] - lo) / (c - lo), upper = (hi - fftFreqs[k]) / (hi - c)
                w[b * nFreq + k] = Float(max(0, min(lower, upper)) * norm)
            }
        }
        return w
    }
}
