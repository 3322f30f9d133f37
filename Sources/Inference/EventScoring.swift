import Audio
import Engine
import Foundation

/// A sound known to be in a recording from `onset` to `offset` seconds (the truth of a generated
/// recording, `EventRecording`).
public struct TrueEvent: Sendable, Equatable, Codable {
    public let label: String
    public let onset: Double
    public let offset: Double
    public init(label: String, onset: Double, offset: Double) { self.label = label; self.onset = onset; self.offset = offset }
}

/// Detected events matched against the truth: each true event takes the unused detection of its class
/// that overlaps it most (largest overlaps first); a true event with none is a miss, a detection left
/// over is a false alarm. Onset and offset errors are detection − truth, in seconds.
public struct EventMatchReport: Sendable {
    public struct Match: Sendable { public let truth: TrueEvent; public let detected: SoundEvent }
    public let matches: [Match]
    public let misses: [TrueEvent]
    public let falseAlarms: [SoundEvent]

    public init(truth: [TrueEvent], detected: [SoundEvent]) {
        var pairs: [(overlap: Double, t: Int, d: Int)] = []
        for (i, t) in truth.enumerated() {
            for (j, d) in detected.enumerated() where d.label == t.label {
                let overlap = min(t.offset, d.offset) - max(t.onset, d.onset)
                if overlap > 0 { pairs.append((overlap, i, j)) }
            }
        }
        var usedT = Set<Int>(), usedD = Set<Int>(), matched: [(Int, Int)] = []
        for p in pairs.sorted(by: { $0.overlap > $1.overlap }) where !usedT.contains(p.t) && !usedD.contains(p.d) {
            usedT.insert(p.t); usedD.insert(p.d); matched.append((p.t, p.d))
        }
        matches = matched.sorted { $0.0 < $1.0 }.map { Match(truth: truth[$0.0], detected: detected[$0.1]) }
        misses = truth.indices.filter { !usedT.contains($0) }.map { truth[$0] }
        falseAlarms = detected.indices.filter { !usedD.contains($0) }.map { detected[$0] }
    }

    /// Mean |detected onset − true onset| over the matched events (nil when none matched).
    public var meanAbsoluteOnsetError: Double? { mean(matches.map { abs($0.detected.onset - $0.truth.onset) }) }
    /// Mean |detected offset − true offset| over the matched events.
    public var meanAbsoluteOffsetError: Double? { mean(matches.map { abs($0.detected.offset - $0.truth.offset) }) }

    private func mean(_ v: [Double]) -> Double? { v.isEmpty ? nil : v.reduce(0, +) / Double(v.count) }
}

/// A long recording made of labelled clips placed at known times over low noise: the test bed for sound
/// event detection whose true onsets and offsets are known.
public enum EventRecording {
    /// The part of a clip that sounds: from the first to the last 10 ms frame whose RMS is within
    /// `rangeDB` of the clip's loudest frame (ESC clips are padded with silence inside their 5 s).
    public static func activeRange(_ samples: [Float], sampleRate: Int, rangeDB: Float = 30) -> Range<Int> {
        let hop = max(sampleRate / 100, 1), frames = samples.count / hop
        guard frames > 0 else { return 0..<samples.count }
        var rms = [Float](repeating: 0, count: frames)
        for f in 0..<frames {
            var acc: Float = 0
            for i in (f * hop)..<((f + 1) * hop) { acc += samples[i] * samples[i] }
            rms[f] = (acc / Float(hop)).squareRoot()
        }
        let floor = (rms.max() ?? 0) * Foundation.pow(10, -rangeDB / 20)
        guard let first = rms.firstIndex(where: { $0 >= floor && $0 > 0 }), let last = rms.lastIndex(where: { $0 >= floor && $0 > 0 }) else {
            return 0..<0
        }
        return (first * hop)..<min(samples.count, (last + 1) * hop)
    }

    /// Places `clips` (their active parts) one after another with gaps drawn uniformly from `gap` seconds,
    /// over white noise at `noiseDB` dBFS RMS, in a recording of `seconds`; clips that no longer fit are
    /// left out. Returns the samples and the true events.
    public static func make(clips: [(label: String, samples: [Float])], sampleRate: Int, seconds: Double,
                            gap: ClosedRange<Double>, noiseDB: Float, seed: UInt64) -> (samples: [Float], events: [TrueEvent]) {
        var rng = RandomGenerator(seed: seed)   // the same recording on every machine
        let total = Int(seconds * Double(sampleRate))
        let noise = Foundation.pow(10, noiseDB / 20) * Float(3).squareRoot()   // uniform in ±a has RMS a/√3
        var out = (0..<total).map { _ in noise * (rng.nextUniform() * 2 - 1) }
        var events: [TrueEvent] = [], at = Int(gap.lowerBound * Double(sampleRate))
        for clip in clips {
            let active = activeRange(clip.samples, sampleRate: sampleRate)
            guard !active.isEmpty, at + active.count <= total else { continue }
            for (k, i) in active.enumerated() { out[at + k] += clip.samples[i] }
            events.append(TrueEvent(label: clip.label, onset: Double(at) / Double(sampleRate),
                                    offset: Double(at + active.count) / Double(sampleRate)))
            at += active.count + Int((gap.lowerBound + Double(rng.nextUniform()) * (gap.upperBound - gap.lowerBound)) * Double(sampleRate))
        }
        return (out, events)
    }
}
