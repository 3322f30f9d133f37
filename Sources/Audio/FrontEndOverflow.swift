import Engine

/// The front ends' last check: finite samples can still give infinite features when they are far
/// outside ±1 (a float WAV holding 1e30 from a damaged header or a bad export: its power spectrum
/// overflows Float). Such a clip is refused, naming its peak, rather than passed on as ±inf features
/// that turn every score computed from them into NaN.
enum FrontEndOverflow {
    static func check(_ features: Tensor, _ samples: [Float], _ frontEnd: String) throws {
        // v * 0 is 0 for every finite v and NaN for inf or NaN: one branch-free pass over the features.
        var sum: Float = 0
        for v in UnsafeBufferPointer(start: features.data, count: features.count) { sum += v * 0 }
        if sum == 0 { return }
        let peak = samples.reduce(Float(0)) { max($0, abs($1)) }
        throw AudioError("\(frontEnd): the features are not finite; the samples reach \(peak) (audio is expected within about ±1: a damaged file?)")
    }
}
