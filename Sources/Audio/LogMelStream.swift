import Engine

/// Log-mel frames of a recording fed block by block, the same frames `LogMel` gives for the whole
/// recording at once, so a long recording's features never need its waveform whole.
///
/// Frame i of the centred STFT reads samples [i·hop − nFFT/2, i·hop + nFFT/2), reflected past either
/// end of the recording. Once the samples up to i·hop + nFFT/2 have arrived, frame i is final: each
/// `push` runs `LogMel` on the held samples from a hop-aligned start ⌈nFFT/2 / hop⌉ frames before the
/// first frame not yet given (so no frame it keeps reads a reflection of the segment's start, except at
/// the recording's true start) and keeps the final frames; `finish` gives the rest, reflected at the
/// true end. Samples no later frame reads are dropped as it goes.
public struct LogMelStream {
    public let logMel: LogMel
    private var held: [Float] = []
    private var first = 0        // held[0] is sample `first` of the recording
    private var next = 0         // the first frame not yet given
    private var received = 0
    private var finished = false

    public init(_ logMel: LogMel) { self.logMel = logMel }

    var hop: Int { logMel.config.hop }
    var half: Int { logMel.config.nFFT / 2 }
    /// Frames of lead-in a segment computes and drops: enough that the first kept frame's window starts inside it.
    var leadIn: Int { (half + hop - 1) / hop }

    /// Appends samples; returns the frames [n, nMels] they complete (nil when none yet).
    public mutating func push(_ samples: [Float]) throws -> Tensor? {
        precondition(!finished, "LogMelStream: push after finish")
        held += samples
        received += samples.count
        // Frames i with i·hop + half ≤ received are final.
        guard received >= half else { return nil }
        return try frames(upTo: (received - half) / hop + 1)
    }

    /// The frames still to come, up to the recording's last (`LogMelConfig.frameCount`); nil when none.
    public mutating func finish() throws -> Tensor? {
        precondition(!finished, "LogMelStream: finish twice")
        finished = true
        guard received > 0 else { throw AudioError("log-mel: empty waveform") }
        return try frames(upTo: logMel.config.frameCount(samples: received))
    }

    /// Frames [next, end) from the held samples (which run to the last received one). At the true end
    /// the segment's own end reflection is the recording's; before it, `end` leaves out every frame whose
    /// window reaches past the held samples.
    private mutating func frames(upTo end: Int) throws -> Tensor? {
        guard end > next else { return nil }
        let c0 = max(0, next - leadIn), start = c0 * hop
        let segment = Array(held[(start - first)...])
        let x = try logMel(segment)
        let out = try x.slice(axis: 0, start: next - c0, end: end - c0)
        next = end
        // Frame `next` will start its segment at (next − leadIn)·hop.
        let keepFrom = max(0, next - leadIn) * hop
        if keepFrom > first { held.removeFirst(keepFrom - first); first = keepFrom }
        return out
    }
}
