import Engine
import Foundation

/// Kaldi log-mel filterbank features, exactly as `torchaudio.compliance.kaldi.fbank` (the AST, SSAST,
/// SSAMBA and HF `ASTFeatureExtractor` front end). Per frame: remove the DC offset, pre-emphasise
/// (x[i] − 0.97 x[i−1], with x[−1] = x[0]), window, zero-pad to a power of two, power spectrum,
/// Kaldi mel filterbank, log with a floor of float32 epsilon.
public struct KaldiFbankConfig: Codable, Sendable, Hashable {
    public var sampleRate: Int = 16000
    public var numMelBins: Int = 128
    public var frameLengthMs: Double = 25
    public var frameShiftMs: Double = 10
    public var preemphasis: Float = 0.97
    public var removeDCOffset = true
    public var window: WindowKind = .hanning
    public var lowFreq: Double = 20
    /// ≤ 0 means an offset from Nyquist (Kaldi's convention); 0 is Nyquist.
    public var highFreq: Double = 0
    public var dither: Float = 0
    public var usePower = true
    public var useLog = true
    public var snipEdges = true

    public init() {}

    /// The AST/SSAST settings (torchaudio defaults with hanning window, 128 bins, dither 0).
    public static let ast = KaldiFbankConfig()

    public var windowSize: Int { Int(Double(sampleRate) * frameLengthMs / 1000) }
    public var windowShift: Int { Int(Double(sampleRate) * frameShiftMs / 1000) }
    public var fftSize: Int { var n = 1; while n < windowSize { n *= 2 }; return n }

    public func frameCount(samples: Int) -> Int {
        if snipEdges { return samples < windowSize ? 0 : 1 + (samples - windowSize) / windowShift }
        return (samples + windowShift / 2) / windowShift
    }
}

public final class KaldiFbank: @unchecked Sendable {
    public let config: KaldiFbankConfig
    let window: [Double]
    let projection: MelProjection
    let fft: PowerSpectrum

    public init(_ config: KaldiFbankConfig = .ast) throws {
        guard config.sampleRate > 0, config.numMelBins > 0, config.windowSize > 0, config.windowShift > 0 else {
            throw AudioError("kaldi fbank: invalid config (sample rate \(config.sampleRate), \(config.numMelBins) bins, window \(config.windowSize), shift \(config.windowShift))")
        }
        let nyquist = Double(config.sampleRate) / 2
        let high = config.highFreq <= 0 ? config.highFreq + nyquist : config.highFreq
        guard config.lowFreq >= 0, high > config.lowFreq, high <= nyquist else {
            throw AudioError("kaldi fbank: bad frequency range \(config.lowFreq)-\(high) Hz at \(config.sampleRate) Hz")
        }
        guard config.snipEdges else { throw AudioError("kaldi fbank: snipEdges = false is not supported yet") }
        self.config = config
        window = config.window.values(config.windowSize).map(Double.init)
        projection = MelProjection(Filterbank.kaldi(bins: config.numMelBins, nFFT: config.fftSize, sampleRate: Double(config.sampleRate),
                                                    lowFreq: config.lowFreq, highFreq: config.highFreq),
                                   bins: config.numMelBins, nFreq: config.fftSize / 2 + 1)
        fft = PowerSpectrum.of(size: config.fftSize)
    }

    /// Features [frames, bins] of a mono waveform at `config.sampleRate`. A clip shorter than one
    /// frame gives zero frames (torchaudio raises instead; AST's padding then fills the clip).
    public func callAsFunction(_ samples: [Float]) throws -> Tensor { try compute(samples, parallel: true) }

    /// Features of many clips, one clip per core (the throughput path for datasets).
    public func callAsFunction(batch clips: [[Float]]) throws -> [Tensor] {
        try parallelMap(clips) { try self.compute($0, parallel: false) }
    }

    func compute(_ samples: [Float], parallel: Bool) throws -> Tensor {
        let c = config
        let frames = c.frameCount(samples: samples.count)
        if frames == 0 { return Tensor.empty([0, c.numMelBins]) }
        if samples.contains(where: { !$0.isFinite }) { throw AudioError("kaldi fbank: the waveform contains NaN or infinite samples") }
        let (n, shift, p, removeDC) = (c.windowSize, c.windowShift, Double(c.preemphasis), c.removeDCOffset)
        let useLog = c.useLog
        let finish: @Sendable (UnsafeMutablePointer<Float>, Int) -> Void = { row, count in
            if useLog { VectorLog.logFloored(row, count, floor: Float.ulpOfOne) }
        }
        let out = samples.withUnsafeBufferPointer { wave in window.withUnsafeBufferPointer { win in
            let (src, w) = (UnsafeSendable(value: wave.baseAddress!), UnsafeSendable(value: win.baseAddress!))
            return projection.apply(frames: frames, spectrum: fft, magnitude: !c.usePower, parallel: parallel, finish: finish) { t, frame in
                let x = src.value + t * shift, w = w.value
                var mean = 0.0
                if removeDC {
                    // Four partial sums: one running sum is a chain of dependent adds.
                    var s = SIMD4<Double>(repeating: 0), i = 0
                    while i + 4 <= n { s += SIMD4(Double(x[i]), Double(x[i + 1]), Double(x[i + 2]), Double(x[i + 3])); i += 4 }
                    while i < n { s[0] += Double(x[i]); i += 1 }
                    mean = s.sum() / Double(n)
                }
                // Pre-emphasis on the DC-removed frame (x[−1] = x[0]), then the window; no dependence between
                // iterations, so the loop vectorises.
                let first = Double(x[0]) - mean
                frame[0] = (first - p * first) * w[0]
                for i in 1..<n { frame[i] = ((Double(x[i]) - mean) - p * (Double(x[i - 1]) - mean)) * w[i] }
                for i in n..<c.fftSize { frame[i] = 0 }
            }
        } }
        try FrontEndOverflow.check(out, samples, "kaldi fbank")
        return out
    }
}
