import CSndfile
import Foundation

/// A recording read block by block (mono, at its own rate), so an hour of audio never has to be in
/// memory: `next(_:)` returns up to `frames` samples, nil at the end.
public final class AudioStream {
    public let url: URL
    public let sampleRate: Int
    public let frames: Int
    let channels: Int
    private var handle: OpaquePointer?
    private var interleaved: [Float] = []

    public init(_ url: URL) throws {
        let info = try AudioFile.info(url)   // names empty, missing and undecodable files
        guard info.frames > 0 else { throw AudioError("\(url.path): no audio frames") }
        var sf = SF_INFO()
        guard let h = sf_open(url.path, Int32(SFM_READ), &sf) else {
            throw AudioError("\(url.path): cannot decode audio (\(String(cString: sf_strerror(nil))))")
        }
        (self.url, handle, sampleRate, frames, channels) = (url, h, Int(sf.samplerate), Int(sf.frames), Int(sf.channels))
    }

    deinit { if let handle { sf_close(handle) } }

    /// Up to `count` mono samples (channels averaged); nil once the file is exhausted. A decoding
    /// error or a non-finite sample throws naming the file.
    public func next(_ count: Int) throws -> [Float]? {
        guard let handle, count > 0 else { return nil }
        if interleaved.count < count * channels { interleaved = [Float](repeating: 0, count: count * channels) }
        let got = Int(interleaved.withUnsafeMutableBufferPointer { sf_readf_float(handle, $0.baseAddress, sf_count_t(count)) })
        if got <= 0 {
            if sf_error(handle) != 0 { throw AudioError("\(url.path): decoding failed (\(String(cString: sf_strerror(handle))))") }
            sf_close(handle); self.handle = nil
            return nil
        }
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
