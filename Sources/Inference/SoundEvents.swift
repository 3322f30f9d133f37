import Audio
import Engine
import Foundation
import Models

/// One detected sound: a class whose frame-wise probability stayed at or above the threshold from
/// `onset` to `offset` (seconds), with the highest probability it reached.
public struct SoundEvent: Sendable, Equatable, Codable {
    public let label: String
    public let onset: Double
    public let offset: Double
    public let peak: Float
}

/// Frame-wise probabilities → events, class by class and frame by frame, holding only the runs still
/// open (so a recording of any length needs memory for its events only). A run of frames with p ≥
/// `threshold` is one event [first frame, last frame + 1) · `secondsPerFrame`; events shorter than
/// `minDuration` are dropped.
public struct EventDetector {
    public let classes: [String]
    public let secondsPerFrame: Double
    public let threshold: Float
    public let minDuration: Double
    private var open: [(start: Int, peak: Float)?]
    private var frame = 0
    public private(set) var events: [SoundEvent] = []

    public init(classes: [String], secondsPerFrame: Double, threshold: Float, minDuration: Double) {
        self.classes = classes; self.secondsPerFrame = secondsPerFrame
        self.threshold = threshold; self.minDuration = minDuration
        open = Array(repeating: nil, count: classes.count)
    }

    /// Consumes probabilities [T, K] of the frames that follow those already seen; returns the events
    /// that ended in them (in the order they ended), which `events` now holds too.
    @discardableResult
    public mutating func consume(_ scores: Tensor) -> ArraySlice<SoundEvent> {
        let before = events.count
        let k = classes.count, t = scores.count / max(k, 1)
        for f in 0..<t {
            for c in 0..<k {
                let p = scores.data[f * k + c]
                if p >= threshold {
                    open[c] = open[c].map { ($0.start, max($0.peak, p)) } ?? (frame, p)
                } else if let run = open[c] {
                    close(c, run, end: frame)
                }
            }
            frame += 1
        }
        return events[before...]
    }

    private mutating func close(_ c: Int, _ run: (start: Int, peak: Float), end: Int) {
        open[c] = nil
        let onset = Double(run.start) * secondsPerFrame, offset = Double(end) * secondsPerFrame
        if offset - onset >= minDuration { events.append(SoundEvent(label: classes[c], onset: onset, offset: offset, peak: run.peak)) }
    }

    /// Closes the runs still open at the last frame; events in order of onset.
    public mutating func finish() -> [SoundEvent] {
        for c in open.indices { if let run = open[c] { close(c, run, end: frame) } }
        return events.sorted { ($0.onset, $0.label) < ($1.onset, $1.label) }
    }
}

extension Classifier {
    /// Sound events in a recording of any length (see `framewise(in:_:)`), at or above `threshold` for
    /// at least `minDuration` seconds.
    /// `ended` gets each event as soon as it ends (a live stream's events while it plays: a chunk's
    /// scores come once its context has arrived, about 3/4 of the model's window after its last frame).
    public func soundEvents(in url: URL, threshold: Float = 0.5, minDuration: Double = 0.1,
                            ended: ((SoundEvent) throws -> Void)? = nil) throws -> [SoundEvent] {
        var detector: EventDetector?
        try framewise(in: url) { secondsPerFrame, scores in
            if detector == nil {
                detector = EventDetector(classes: classes, secondsPerFrame: secondsPerFrame, threshold: threshold, minDuration: minDuration)
            }
            for event in detector!.consume(scores) { try ended?(event) }
        }
        guard var detector else { return [] }
        let before = detector.events.count
        let all = detector.finish()
        for event in detector.events[before...] { try ended?(event) }
        return all
    }

    /// Frame-wise probabilities of a recording of any length, handed to `body` in order as [n, K]
    /// blocks (with the seconds one frame spans), read and scored in chunks so memory stays bounded:
    /// chunks of about the model's window W, W/2 frames kept from each and W/4 frames of context on
    /// either side computed and dropped (a CNN's edge effects stay there), both rounded to the model's
    /// score step so every chunk pools on the grid a whole-file pass would. The file is decoded block
    /// by block and resampled with a streaming resampler. Needs a frame-scoring model (PANNs'
    /// decision-level max).
    public func framewise(in url: URL, _ body: (Double, Tensor) throws -> Void) throws {
        guard let model = model as? any FrameScoringModel, model.scoresFrames else {
            throw AudioError("\(url.path): frame-wise scores need a decision-level model (PANNs Cnn14_DecisionLevelMax, 'cnn14-dlm'); \(self.model.architecture.family) scores whole clips")
        }
        guard case .logMel(let frontEnd) = pipeline.kind else {
            throw AudioError("\(url.path): frame-wise scoring streams log-mel features; this model takes \(pipeline.kind)")
        }
        let hop = frontEnd.hop, half = frontEnd.nFFT / 2, step = max(model.frameStep, 1)
        let keep = max(window / 2 / step, 1) * step, context = window / 4 / step * step
        let secondsPerFrame = Double(hop) / Double(frontEnd.sampleRate)
        let logMel = try LogMel(frontEnd)
        let stream = try ResampledStream(url, rate: frontEnd.sampleRate)
        var samples: [Float] = [], first = 0          // samples[0] is sample `first` of the recording
        var ended = false, next = 0                   // next: the first frame not yet handed on
        while true {
            // Chunk: frames [c0, c1), kept [next, next + keep); its samples run to (c1 − 1)·hop + nFFT/2.
            let c0 = max(0, next - context), c1 = next + keep + context
            let needed = (c1 - 1) * hop + half + 1
            while !ended && first + samples.count < needed {
                if let block = try stream.next() { samples += block } else { ended = true }
            }
            let total = first + samples.count
            let frames = 1 + total / hop                 // the recording's frame count, once it has ended
            if ended && next >= frames { break }
            let segment = Array(samples[(c0 * hop - first)..<(min(total, needed) - first)])
            var x = try logMel(segment)
            let available = (ended ? min(c1, frames) : c1) - c0
            x = try x.slice(axis: 0, start: 0, end: min(available, x.shape[0]))
            let scored = x.shape[0]
            // A recording shorter than a CNN's pooling: padded with the front end's silence, as every clip is.
            if scored < 64 { x = try pipeline.padOrCut(x, to: 64) }
            // The pipeline's normalisation, as clip scoring and training apply it (after padding).
            if let mean = pipeline.mean, let std = pipeline.std { x = FeatureFrames.normalize(x, mean: mean, std: std) }
            let scores = try GradMode.noGrad { try model.framewise(x.unsqueeze(0)).squeeze(0) }
            let end = ended ? min(next + keep, frames) : next + keep
            try body(secondsPerFrame, try scores.slice(axis: 0, start: next - c0, end: end - c0))
            next = end
            // Drop the samples no later chunk reads.
            let drop = min(samples.count, max(0, (next - context) * hop - first))
            if drop > 0 { samples.removeFirst(drop); first += drop }
        }
    }
}
