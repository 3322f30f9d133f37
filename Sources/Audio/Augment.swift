import Engine
import Foundation

/// Seeded augmentations. Each takes the generator explicitly, so a run with the same seed draws the
/// same masks, mixes and noise.
public enum Augment {
    /// One SpecAugment mask along `axis` of features [frames, bins] (axis 0 = time, 1 = frequency),
    /// with torchaudio's `mask_along_axis` semantics: width = ⌊u·param⌋, start = ⌊v·(size − u·param)⌋
    /// for u, v ~ U[0, 1), filled with `value` (0 in the log domain, as AST does).
    public static func mask(_ x: Tensor, axis: Int, param: Int, value: Float = 0, generator: inout RandomGenerator) throws -> Tensor {
        guard x.rank == 2 else { throw AudioError("SpecAugment: expected features [frames, bins], got \(x.shape)") }
        guard axis == 0 || axis == 1 else { throw AudioError("SpecAugment: axis must be 0 (time) or 1 (frequency)") }
        let size = x.shape[axis]
        guard param > 0, size > 0 else { return x }
        let width = Float(param) * generator.nextUniform()
        let minValue = generator.nextUniform() * (Float(size) - width)
        // A mask wider than the axis (timem 96 on 64 frames) starts before 0: torchaudio's comparison
        // against arange(size) keeps only the part inside, and so does the clamp.
        let start = max(0, Int(minValue)), end = min(size, Int(minValue) + Int(width))
        let out = x.copy()
        let (frames, bins) = (x.shape[0], x.shape[1])
        if start < end {
            if axis == 0 { for t in start..<end { (out.data + t * bins).update(repeating: value, count: bins) } } else {
                for t in 0..<frames { for b in start..<end { out.data[t * bins + b] = value } }
            }
        }
        return out
    }

    /// Frames of features [frames, bins] before the trailing padding: padded rows hold exactly `padValue`
    /// in every bin, which a real spectrum frame never does.
    public static func validFrames(_ x: Tensor, padValue: Float) -> Int {
        let (frames, bins) = (x.shape[0], x.shape[1])
        var t = frames
        while t > 0 {
            let row = x.data + (t - 1) * bins
            var padded = true
            for b in 0..<bins where row[b] != padValue { padded = false; break }
            if !padded { break }
            t -= 1
        }
        return t
    }

    /// A random window of `frames` frames of features [frames, bins], starting uniformly where the window
    /// still ends inside the clip's real frames (`validFrames`): a short clip padded to a long input
    /// gives its own frames, not a window of padding. Clips no longer than the window start at 0.
    public static func randomCrop(_ x: Tensor, frames: Int, padValue: Float, generator: inout RandomGenerator) throws -> Tensor {
        guard x.rank == 2 else { throw AudioError("crop: expected features [frames, bins], got \(x.shape)") }
        guard frames > 0 && frames <= x.shape[0] else {
            throw AudioError("crop: window of \(frames) frames does not fit features of \(x.shape[0]) frames")
        }
        let room = max(validFrames(x, padValue: padValue), frames) - frames
        let start = room == 0 ? 0 : Int(generator.next() % UInt64(room + 1))
        return try x.slice(axis: 0, start: start, end: start + frames)
    }

    /// Mixes `background` into features `x` (both [frames, bins] of normalised log energies) in the energy
    /// domain, as BYOL-A's mixup does: with e(v) = exp(v·scale + μ) (undoing the normalisation
    /// (log E − μ)/scale), the result is (log((1 − λ)·e(x) + λ·e(bg)) − μ)/scale. μ cancels, so only the
    /// scale is needed; computed as a log-sum-exp so that no energy overflows. λ = 0 returns x; λ in [0, 1).
    public static func mixEnergies(_ x: Tensor, _ background: Tensor, ratio lambda: Float, scale: Float) throws -> Tensor {
        guard x.rank == 2, x.shape == background.shape else {
            throw AudioError("mix: features \(x.shape) and background \(background.shape) must be the same [frames, bins]")
        }
        guard lambda >= 0 && lambda < 1 else { throw AudioError("mix: ratio \(lambda) must be in [0, 1)") }
        guard scale > 0 && scale.isFinite else { throw AudioError("mix: scale \(scale) must be positive") }
        guard lambda > 0 else { return x.copy() }
        let out = x.copy()
        let (keep, add) = (Foundation.log(1 - lambda), Foundation.log(lambda))
        let src = background.data, dst = out.data
        for i in 0..<x.count {
            let a = dst[i] * scale + keep, b = src[i] * scale + add
            let m = max(a, b)
            dst[i] = (m + Foundation.log(Foundation.exp(a - m) + Foundation.exp(b - m))) / scale
        }
        return out
    }

    public static func frequencyMask(_ x: Tensor, param: Int, generator: inout RandomGenerator) throws -> Tensor {
        try mask(x, axis: 1, param: param, generator: &generator)
    }

    public static func timeMask(_ x: Tensor, param: Int, generator: inout RandomGenerator) throws -> Tensor {
        try mask(x, axis: 0, param: param, generator: &generator)
    }

    /// A Beta(a, a) sample (mixup's λ) from two Gamma(a) draws.
    public static func beta(_ a: Float, generator: inout RandomGenerator) -> Float {
        let x = gamma(a, &generator), y = gamma(a, &generator)
        return x + y > 0 ? x / (x + y) : 0.5
    }

    /// Marsaglia-Tsang Gamma(shape, 1), with the shape < 1 boost.
    static func gamma(_ shape: Float, _ g: inout RandomGenerator) -> Float {
        if shape < 1 { return gamma(shape + 1, &g) * Foundation.pow(max(g.nextUniform(), 1e-12), 1 / shape) }
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x: Float, v: Float
            repeat { x = g.nextNormal(); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = g.nextUniform()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if Foundation.log(max(u, 1e-12)) < 0.5 * x * x + d * (1 - v + Foundation.log(v)) { return d * v }
        }
    }

    /// Mixup: λ·a + (1 − λ)·b for waveforms or features of equal shape, and the mixed soft labels.
    public static func mixup(_ a: [Float], _ b: [Float], labelsA: [Float], labelsB: [Float], lambda: Float) throws -> ([Float], [Float]) {
        guard labelsA.count == labelsB.count else { throw AudioError("mixup: label vectors differ in length (\(labelsA.count) vs \(labelsB.count))") }
        // Waveforms of different lengths: mix over the first one's length, zero-padding the second (AST).
        let mixed = (0..<a.count).map { i in lambda * a[i] + (1 - lambda) * (i < b.count ? b[i] : 0) }
        let labels = zip(labelsA, labelsB).map { lambda * $0 + (1 - lambda) * $1 }
        return (mixed, labels)
    }

    /// Circular shift by `shift` samples (positive = later), like `torch.roll`.
    public static func roll(_ x: [Float], by shift: Int) -> [Float] {
        guard !x.isEmpty else { return x }
        let n = x.count, s = ((shift % n) + n) % n
        return Array(x[(n - s)...] + x[..<(n - s)])
    }

    /// Rolls features [frames, bins] along time (AST's "noise" recipe rolls by U{−10..10} frames).
    public static func rollFrames(_ x: Tensor, by shift: Int) throws -> Tensor {
        guard x.rank == 2, x.shape[0] > 0 else { return x }
        let frames = x.shape[0], bins = x.shape[1], s = ((shift % frames) + frames) % frames
        let out = Tensor.empty(x.shape)
        for t in 0..<frames { (out.data + ((t + s) % frames) * bins).update(from: x.data + t * bins, count: bins) }
        return out
    }

    /// AST's "noise" augmentation (`noise=True` in its ESC-50 and Speech Commands recipes), applied to
    /// normalised features [frames, bins] after SpecAugment:
    /// `x + U[0,1)^{frames×bins} · u / 10` with one `u ~ U[0,1)` per clip, then a roll along time by
    /// `randint(−10, 10)` frames (numpy's upper bound is exclusive: −10…9).
    public static func astNoise(_ x: Tensor, generator: inout RandomGenerator) throws -> Tensor {
        guard x.rank == 2 else { throw AudioError("noise: expected features [frames, bins], got \(x.shape)") }
        let scale = generator.nextUniform() / 10
        let noisy = x.copy()
        for i in 0..<x.count { noisy.data[i] += generator.nextUniform() * scale }
        let shift = Int(generator.next() % 20) - 10
        return try rollFrames(noisy, by: shift)
    }

    /// Shifts a waveform by `shift` samples, filling with zeros (no wrap-around).
    public static func shift(_ x: [Float], by shift: Int) -> [Float] {
        let n = x.count
        return (0..<n).map { i in let j = i - shift; return j >= 0 && j < n ? x[j] : 0 }
    }

    public static func gain(_ x: [Float], decibels: Float) -> [Float] {
        let g = Foundation.pow(10, decibels / 20)
        return x.map { $0 * g }
    }

    /// Adds Gaussian noise scaled so that signal power / noise power = 10^(snr/10). Silence stays silent.
    public static func addNoise(_ x: [Float], snrDB: Float, generator: inout RandomGenerator) -> [Float] {
        let signalPower = x.reduce(0) { $0 + $1 * $1 } / Float(max(x.count, 1))
        guard signalPower > 0 else { return x }
        let noise = (0..<x.count).map { _ in generator.nextNormal() }
        let noisePower = noise.reduce(0) { $0 + $1 * $1 } / Float(max(noise.count, 1))
        let scale = (signalPower / (noisePower * Foundation.pow(10, snrDB / 10))).squareRoot()
        return zip(x, noise).map { $0 + scale * $1 }
    }
}
