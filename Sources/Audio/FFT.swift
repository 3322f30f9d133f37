import CFFTW
import Engine
import Foundation

/// Power spectra of many frames through FFTW, in double precision: float32 FFT rounding alone moves
/// low-energy mel bins of a pure tone by ~0.004 in log units (measured on torchaudio's own float32
/// path against float64), more than the 1e-3 parity bar, while a 512-point double FFT costs little.
/// The mel projection that follows is float32: measured, it adds nothing visible to the error.
/// Plans are made once per size (FFTW planning is not thread-safe, so it is serialised) and executed
/// with the thread-safe new-array interface.
final class PowerSpectrum: @unchecked Sendable {
    let size: Int
    private let plan: fftw_plan
    private static let planLock = NSLock()
    nonisolated(unsafe) private static var cache: [Int: PowerSpectrum] = [:]

    static func of(size: Int) -> PowerSpectrum {
        planLock.lock(); defer { planLock.unlock() }
        if let p = cache[size] { return p }
        let p = PowerSpectrum(size: size)
        cache[size] = p
        return p
    }

    private init(size: Int) {
        self.size = size
        let input = fftw_alloc_real(size)!
        let output = fftw_alloc_complex(size / 2 + 1)!
        plan = fftw_plan_dft_r2c_1d(Int32(size), input, output, FFTW_ESTIMATE)
        fftw_free(input); fftw_free(output)
    }

    var bins: Int { size / 2 + 1 }
    static let powerPadding = 4

    /// For each frame t: `fill(t, buffer)` writes its `size` (windowed, zero-padded) samples, then
    /// `use(t, power)` reads its |FFT|² (|FFT| with `magnitude`), size/2 + 1 doubles followed by
    /// `powerPadding` zeros (so a reader may load whole vectors past the end). Frames are split across
    /// two threads.
    func forEachFrame(frames: Int, magnitude: Bool = false, parallel: Bool,
                      fill: @Sendable (Int, UnsafeMutablePointer<Double>) -> Void,
                      use: @Sendable (Int, UnsafePointer<Double>) -> Void) {
        let nFreq = bins, n = size
        let chunks = parallel && frames >= 64 ? 2 : 1
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let input = fftw_alloc_real(n)!
            let output = fftw_alloc_complex(nFreq)!
            let power = UnsafeMutablePointer<Double>.allocate(capacity: nFreq + Self.powerPadding)
            (power + nFreq).initialize(repeating: 0, count: Self.powerPadding)
            defer { fftw_free(input); fftw_free(output); power.deallocate() }
            let pairs = UnsafeMutableRawPointer(output).assumingMemoryBound(to: Double.self)
            for t in (frames * chunk / chunks)..<(frames * (chunk + 1) / chunks) {
                fill(t, input)
                fftw_execute_dft_r2c(plan, input, output)
                for k in 0..<nFreq { power[k] = pairs[2 * k] * pairs[2 * k] + pairs[2 * k + 1] * pairs[2 * k + 1] }
                if magnitude { for k in 0..<nFreq { power[k] = power[k].squareRoot() } }
                use(t, power)
            }
        }
    }
}

/// A mel (or any) filterbank [bins, nFreq] applied to power spectra. The bank is stored by its rows'
/// nonzero spans: a triangle covers a few FFT bins, so at 128 Kaldi bins on a 512-point FFT a frame
/// costs ~500 multiply-adds instead of a dense product's 33,000 (that GEMM was 28% of fbank's time).
/// Sums run in double on the FFT's double powers, four bins at a time, and round once.
struct MelProjection: @unchecked Sendable {
    let bins: Int, nFreq: Int
    /// Row b's weights are `weights[4 · offsets[b] ..< 4 · offsets[b + 1]]` (its span zero-padded to whole
    /// vectors of 4), for the FFT bins from `starts[b]`.
    let starts: [Int], offsets: [Int], weights: [Double]

    init(_ bank: [Float], bins: Int, nFreq: Int) {
        self.bins = bins; self.nFreq = nFreq
        var starts: [Int] = [], offsets = [0], weights: [Double] = []
        for b in 0..<bins {
            let row = bank[(b * nFreq)..<((b + 1) * nFreq)]
            let first = row.firstIndex { $0 != 0 } ?? row.startIndex, last = row.lastIndex { $0 != 0 } ?? row.startIndex - 1
            starts.append(first - row.startIndex)
            if last >= first {
                let span = row[first...last].map(Double.init), vectors = (span.count + 3) / 4
                weights += span + [Double](repeating: 0, count: 4 * vectors - span.count)
                offsets.append(offsets.last! + vectors)
            } else {
                offsets.append(offsets.last!)
            }
        }
        self.starts = starts; self.offsets = offsets; self.weights = weights
    }

    /// [frames, bins]: `fill` makes each frame's samples, the bank projects its power spectrum, and
    /// `finish(row, bins)` maps the frame's row of energies in place (a log, dB).
    func apply(frames: Int, spectrum: PowerSpectrum, magnitude: Bool = false, parallel: Bool,
               finish: @Sendable (UnsafeMutablePointer<Float>, Int) -> Void,
               fill: @Sendable (Int, UnsafeMutablePointer<Double>) -> Void) -> Tensor {
        let out = Tensor.empty([frames, bins])
        let dst = UnsafeSendable(value: out.data), bins = self.bins
        starts.withUnsafeBufferPointer { st in offsets.withUnsafeBufferPointer { of in weights.withUnsafeBufferPointer { w in
            let (st, of, w) = (UnsafeSendable(value: st.baseAddress!), UnsafeSendable(value: of.baseAddress!), UnsafeSendable(value: w.baseAddress!))
            spectrum.forEachFrame(frames: frames, magnitude: magnitude, parallel: parallel, fill: fill) { t, power in
                let row = dst.value + t * bins
                for b in 0..<bins {
                    // The padded weights are zero and the power buffer has `powerPadding` zeros past its end.
                    let p = UnsafeRawPointer(power + st.value[b]), wb = UnsafeRawPointer(w.value + 4 * of.value[b])
                    var sum = SIMD4<Double>(repeating: 0)
                    for v in 0..<(of.value[b + 1] - of.value[b]) {
                        let (wv, pv) = (wb.loadUnaligned(fromByteOffset: 32 * v, as: SIMD4<Double>.self),
                                        p.loadUnaligned(fromByteOffset: 32 * v, as: SIMD4<Double>.self))
                        #if EARSHOT_FMA
                        sum.addProduct(wv, pv)
                        #else
                        sum += wv * pv   // without FMA code generation addProduct calls libm per lane (ENGINE-NOTES)
                        #endif
                    }
                    row[b] = Float(sum.sum())
                }
                finish(row, bins)
            }
        } } }
        return out
    }
}
