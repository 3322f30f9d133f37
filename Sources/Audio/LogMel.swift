import Engine
import Foundation

/// Log-mel spectrogram of a centred STFT, as PANNs/non-fusion CLAP compute it with torchlibrosa
/// (Slaney mel, Slaney norm) and as CLAP's fusion path computes it with torchaudio (HTK mel, no norm):
/// reflect-pad by nFFT/2, periodic Hann window, |STFT|², mel filterbank, then
/// 10·log10(max(x, amin)) − 10·log10(max(amin, ref)), optionally clipped to top_db below the peak.
public struct LogMelConfig: Codable, Sendable, Hashable {
    public var sampleRate: Int
    public var nFFT: Int
    public var hop: Int
    public var nMels: Int
    public var fMin: Double
    public var fMax: Double
    public var scale: MelScale = .slaney
    public var slaneyNorm = true
    public var amin: Float = 1e-10
    public var ref: Float = 1
    public var topDB: Float? = nil

    public init(sampleRate: Int, nFFT: Int, hop: Int, nMels: Int, fMin: Double, fMax: Double,
                scale: MelScale = .slaney, slaneyNorm: Bool = true) {
        self.sampleRate = sampleRate; self.nFFT = nFFT; self.hop = hop; self.nMels = nMels
        self.fMin = fMin; self.fMax = fMax; self.scale = scale; self.slaneyNorm = slaneyNorm
    }

    /// PANNs CNN14 at 32 kHz (window 1024, hop 320, 64 bins, 50-14000 Hz).
    public static let panns = LogMelConfig(sampleRate: 32000, nFFT: 1024, hop: 320, nMels: 64, fMin: 50, fMax: 14000)
    /// LAION-CLAP HTSAT non-fusion front end at 48 kHz (window 1024, hop 480, 64 bins, 50-14000 Hz).
    public static let clap = LogMelConfig(sampleRate: 48000, nFFT: 1024, hop: 480, nMels: 64, fMin: 50, fMax: 14000)
    /// CLAP's fusion path: torchaudio MelSpectrogram with HTK mel and no norm.
    public static let clapFusion = LogMelConfig(sampleRate: 48000, nFFT: 1024, hop: 480, nMels: 64, fMin: 50, fMax: 14000,
                                                scale: .htk, slaneyNorm: false)

    public func frameCount(samples: Int) -> Int { 1 + samples / hop }

    /// The mel filterbank [nMels, nFFT/2 + 1] (librosa's `filters.mel`; torchlibrosa's `melW` transposed).
    public var filterbank: [Float] {
        Filterbank.librosa(bins: nMels, nFFT: nFFT, sampleRate: Double(sampleRate), fMin: fMin, fMax: fMax,
                           scale: scale, slaneyNorm: slaneyNorm)
    }
}

public final class LogMel: @unchecked Sendable {
    public let config: LogMelConfig
    let window: [Double]
    let projection: MelProjection
    let fft: PowerSpectrum

    public init(_ config: LogMelConfig) throws {
        guard config.sampleRate > 0, config.nFFT >= 2, config.hop > 0, config.nMels > 0 else {
            throw AudioError("log-mel: invalid config (rate \(config.sampleRate), nFFT \(config.nFFT), hop \(config.hop), \(config.nMels) bins)")
        }
        guard config.fMin >= 0, config.fMax > config.fMin, config.fMax <= Double(config.sampleRate) / 2 else {
            throw AudioError("log-mel: bad frequency range \(config.fMin)-\(config.fMax) Hz at \(config.sampleRate) Hz")
        }
        self.config = config
        window = WindowKind.hannPeriodic.values(config.nFFT).map(Double.init)
        projection = MelProjection(Filterbank.librosa(bins: config.nMels, nFFT: config.nFFT, sampleRate: Double(config.sampleRate),
                                                      fMin: config.fMin, fMax: config.fMax, scale: config.scale, slaneyNorm: config.slaneyNorm),
                                   bins: config.nMels, nFreq: config.nFFT / 2 + 1)
        fft = PowerSpectrum.of(size: config.nFFT)
    }

    /// Reflection index into [0, n) for any integer (numpy "reflect": the edge is not repeated).
    @inline(__always) static func reflect(_ i: Int, _ n: Int) -> Int {
        if n == 1 { return 0 }
        let period = 2 * (n - 1)
        var j = i % period
        if j < 0 { j += period }
        return j < n ? j : period - j
    }

    /// Features [frames, nMels] in dB.
    public func callAsFunction(_ samples: [Float]) throws -> Tensor {
        let c = config
        guard !samples.isEmpty else { throw AudioError("log-mel: empty waveform") }
        if samples.contains(where: { !$0.isFinite }) { throw AudioError("log-mel: the waveform contains NaN or infinite samples") }
        let frames = c.frameCount(samples: samples.count), half = c.nFFT / 2, n = samples.count
        let window = self.window
        let amin = c.amin, offset = 10 * Foundation.log10(max(amin, c.ref))
        let out = samples.withUnsafeBufferPointer { wave in
            let src = UnsafeSendable(value: wave.baseAddress!)
            return projection.apply(frames: frames, spectrum: fft, parallel: true,
                                    finish: { row, n in for i in 0..<n { row[i] = 10 * Foundation.log10(max(row[i], amin)) - offset } }) { t, frame in
                let start = t * c.hop - half
                for i in 0..<c.nFFT {
                    let j = start + i
                    frame[i] = Double(src.value[(j >= 0 && j < n) ? j : LogMel.reflect(j, n)]) * window[i]
                }
            }
        }
        try FrontEndOverflow.check(out, samples, "log-mel")
        if let topDB = c.topDB {
            var peak = -Float.infinity
            for i in 0..<out.count { peak = max(peak, out.data[i]) }
            for i in 0..<out.count { out.data[i] = max(out.data[i], peak - topDB) }
        }
        return out
    }
}
