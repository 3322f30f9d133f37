import CSndfile
import Foundation

/// A recording read block by block (mono, at its own rate), so an hour of audio never has to be in
/// memory: `next(_:)` returns up to `frames` samples, nil at the end.
public final class AudioStream {
    public let url: URL
    public let sampleRate: Int
    public let frames: Int
    let channels: Int
    let isMPEG: Bool
    private var file: SoundFileHandle?
    private var interleaved: [Float] = []
    /// Frames decoded so far.
    public private(set) var framesRead = 0
    /// Set at the end when fewer frames decoded than the header promised (a cut FLAC loses sync in its
    /// last frame): the stream ends there, as `AudioFile.read` decodes a truncated file as far as it goes.
    public private(set) var truncated: AudioTruncation?

    /// Whether the source is a pipe or a device (standard input: `arecord ... | earshot tag --frames -`),
    /// read once from its start: no length known in advance, nothing to check it against.
    public let isPipe: Bool

    /// What `-` names on the command line: the standard input, read as a stream.
    public static let standardInput = URL(fileURLWithPath: "/dev/stdin")

    /// Whether `url` is a FIFO, socket or character device (stat follows links: /dev/stdin is one to
    /// /proc/self/fd/0); a regular file, folder or missing path is not.
    public static func isPipe(_ url: URL) -> Bool {
        var st = stat()
        let kind = stat(url.path, &st) == 0 ? st.st_mode & S_IFMT : 0
        return kind == S_IFIFO || kind == S_IFSOCK || kind == S_IFCHR
    }

    public init(_ url: URL) throws {
        isPipe = Self.isPipe(url)
        if !isPipe {
            // Names empty, missing and undecodable files. (A pipe cannot be opened twice: its header would be gone.)
            let info = try AudioFile.info(url)
            guard info.frames > 0 else { throw AudioError("\(url.path): no audio frames") }
        }
        var sf = SF_INFO()
        let opened: SoundFileHandle
        if isPipe {
            guard let h = sf_open(url.path, Int32(SFM_READ), &sf) else {
                throw AudioError("\(url.path): cannot decode audio (\(String(cString: sf_strerror(nil))))")
            }
            opened = SoundFileHandle(pointer: h)
        } else {
            opened = try AudioFile.open(url, &sf)   // a file or an archive member
        }
        (self.url, file, sampleRate, frames, channels) = (url, opened, Int(sf.samplerate), Int(sf.frames), Int(sf.channels))
        isMPEG = AudioFile.isMPEG(sf)
        guard AudioFile.plausibleSampleRates.contains(sampleRate), channels > 0 else {
            throw AudioError("\(url.path): implausible sample rate \(sampleRate) Hz or \(channels) channels (a damaged header?)")
        }
    }

    /// Up to `count` mono samples (channels averaged); nil once the file is exhausted. A decoding
    /// error or a non-finite sample throws naming the file.
    public func next(_ count: Int) throws -> [Float]? {
        guard let file, count > 0 else { return nil }
        let handle = file.pointer
        if interleaved.count < count * channels { interleaved = [Float](repeating: 0, count: count * channels) }
        let got = Int(interleaved.withUnsafeMutableBufferPointer { sf_readf_float(handle, $0.baseAddress, sf_count_t(count)) })
        if got <= 0 {
            let failed = sf_error(handle) != 0
            if failed && framesRead == 0 { throw AudioError("\(url.path): decoding failed (\(String(cString: sf_strerror(handle))))") }
            // `AudioFile.read`'s rule: fewer frames than the header promised is a truncation, except
            // for MP3, whose header only estimates the length, unless its decoder stopped on an error.
            if !isPipe && framesRead < frames && (!isMPEG || failed) { truncated = AudioTruncation(promised: frames, read: framesRead) }
            self.file = nil   // closes it
            return nil
        }
        framesRead += Int(got)
        var mono = [Float](repeating: 0, count: got)
        let scale = 1 / Float(channels)
        for i in 0..<got {
            var s: Float = 0
            for c in 0..<channels { s += interleaved[i * channels + c] }
            guard s.isFinite else { throw AudioError("\(url.path): NaN or infinite sample at frame \(i)") }
            mono[i] = s * scale
        }
        return mono
    }
}

/// A recording's mono samples at `sampleRate`, block by block: an `AudioStream` through a
/// `StreamingResampler` where the rates differ, so a long recording is never whole in memory. The
/// samples are those `Resampler.resample` gives for the whole recording (`AudioStreamTests`).
public final class ResampledStream {
    public let url: URL
    public let sampleRate: Int
    let stream: AudioStream
    let resampler: StreamingResampler?
    private var ended = false

    public init(_ url: URL, rate: Int) throws {
        stream = try AudioStream(url)
        resampler = stream.sampleRate == rate ? nil : try StreamingResampler(from: stream.sampleRate, to: rate)
        (self.url, sampleRate) = (url, rate)
    }

    /// The next samples (from about `sourceFrames` frames of the file), never empty; nil at the end.
    public func next(_ sourceFrames: Int = 1 << 16) throws -> [Float]? {
        while !ended {
            if let block = try stream.next(sourceFrames) {
                let out = try resampler?.process(block) ?? block
                if !out.isEmpty { return out }
            } else {
                ended = true
                if let tail = try resampler?.process(nil), !tail.isEmpty { return tail }
            }
        }
        return nil
    }

    /// The first `count` samples at `rate` (all of a shorter recording), reading no further than they need.
    public static func prefix(of url: URL, rate: Int, count: Int) throws -> [Float] {
        let stream = try ResampledStream(url, rate: rate)
        var out: [Float] = []
        while out.count < count, let block = try stream.next() { out += block }
        if out.count > count { out.removeSubrange(count...) }
        return out
    }
}
