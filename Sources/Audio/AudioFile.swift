import CSndfile
import Foundation

/// Decoded audio: Float32 samples in [-1, 1], one array per channel.
public struct AudioBuffer: Sendable {
    public var channels: [[Float]]
    public var sampleRate: Int

    public init(channels: [[Float]], sampleRate: Int) { self.channels = channels; self.sampleRate = sampleRate }
    public init(mono: [Float], sampleRate: Int) { self.init(channels: [mono], sampleRate: sampleRate) }

    public var frameCount: Int { channels.first?.count ?? 0 }
    public var duration: Double { Double(frameCount) / Double(max(sampleRate, 1)) }

    /// The average of all channels.
    public var mono: [Float] {
        guard channels.count > 1 else { return channels.first ?? [] }
        var out = [Float](repeating: 0, count: frameCount)
        for ch in channels { for i in 0..<frameCount { out[i] += ch[i] } }
        let s = 1 / Float(channels.count)
        for i in 0..<frameCount { out[i] *= s }
        return out
    }
}

/// What `AudioFile.info` reports without decoding the samples.
public struct AudioInfo: Sendable, Equatable {
    public var sampleRate: Int, channels: Int, frames: Int
    public var format: String
    public var duration: Double { Double(frames) / Double(max(sampleRate, 1)) }
}

/// Decoding through libsndfile: WAV (PCM 8/16/24/32-bit, float), FLAC, OGG/Vorbis, Opus, MP3 and more.
public enum AudioFile {
    private static func open(_ url: URL, _ info: inout SF_INFO) throws -> OpaquePointer {
        let path = url.path
        guard FileManager.default.fileExists(atPath: path) else { throw AudioError("\(path): no such file") }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size == 0 {
            throw AudioError("\(path): empty file (0 bytes)")
        }
        guard let handle = sf_open(path, Int32(SFM_READ), &info) else {
            let reason = String(cString: sf_strerror(nil))
            throw AudioError("\(path): cannot decode audio (\(reason))")
        }
        return handle
    }

    public static func info(_ url: URL) throws -> AudioInfo {
        var info = SF_INFO()
        let handle = try open(url, &info)
        sf_close(handle)
        return AudioInfo(sampleRate: Int(info.samplerate), channels: Int(info.channels), frames: Int(info.frames),
                         format: formatName(info.format))
    }

    static func formatName(_ format: Int32) -> String {
        var f = SF_FORMAT_INFO()
        f.format = format & Int32(SF_FORMAT_TYPEMASK)
        if sf_command(nil, Int32(SFC_GET_FORMAT_INFO), &f, Int32(MemoryLayout<SF_FORMAT_INFO>.size)) == 0, let name = f.name {
            return String(cString: name)
        }
        return String(format: "0x%08x", format)
    }

    /// Sample rates `read` accepts: telephone-band speech up to ultrasonic recorders.
    public static let plausibleSampleRates = 1_000...1_000_000

    /// Decodes a whole file. With `mono`, channels are averaged into one.
    public static func read(_ url: URL, mono: Bool = true) throws -> AudioBuffer {
        let path = url.path
        var info = SF_INFO()
        let handle = try open(url, &info)
        defer { sf_close(handle) }
        let channels = Int(info.channels), frames = Int(info.frames)
        guard info.samplerate > 0, channels > 0 else { throw AudioError("\(path): invalid header (rate \(info.samplerate), \(channels) channels)") }
        // Below 1 kHz no front end has a band to work with and above 1 MHz no recorder writes: such a rate
        // is a damaged header, and resampling it would turn a few bytes into seconds of nonsense.
        guard plausibleSampleRates.contains(Int(info.samplerate)) else {
            throw AudioError("\(path): implausible sample rate \(info.samplerate) Hz (expected \(plausibleSampleRates.lowerBound)-\(plausibleSampleRates.upperBound) Hz; a damaged header?)")
        }
        guard frames > 0 else { throw AudioError("\(path): no audio frames") }
        guard frames < 1 << 31 else { throw AudioError("\(path): too long (\(frames) frames)") }
        var interleaved = [Float](repeating: 0, count: frames * channels)
        let got = interleaved.withUnsafeMutableBufferPointer { sf_readf_float(handle, $0.baseAddress, sf_count_t(frames)) }
        if sf_error(handle) != 0 {
            throw AudioError("\(path): decoding failed after \(got) of \(frames) frames (\(String(cString: sf_strerror(handle))))")
        }
        // A truncated file decodes fewer frames than its header claims. MP3 headers only estimate the
        // length, so a shortfall there is not an error.
        let isMPEG = info.format & Int32(SF_FORMAT_TYPEMASK) == Int32(SF_FORMAT_MPEG)
        guard got == frames || (isMPEG && got > 0) else {
            throw AudioError("\(path): truncated: the header promises \(frames) frames but only \(got) could be decoded")
        }
        if let declared = truncatedDataChunk(handle) {
            throw AudioError("\(path): truncated: the data chunk declares \(declared.0) bytes but the file holds \(declared.1)")
        }
        let n = Int(got)
        var out = [[Float]](repeating: [Float](repeating: 0, count: n), count: channels)
        for c in 0..<channels { for i in 0..<n { out[c][i] = interleaved[i * channels + c] } }
        for c in 0..<channels where out[c].contains(where: { !$0.isFinite }) {
            throw AudioError("\(path): channel \(c) contains NaN or infinite samples")
        }
        let buffer = AudioBuffer(channels: out, sampleRate: Int(info.samplerate))
        return mono ? AudioBuffer(mono: buffer.mono, sampleRate: buffer.sampleRate) : buffer
    }

    /// libsndfile quietly shortens a WAV/AIFF data chunk that runs past the end of the file; its log
    /// then says "data : <declared> (should be <actual>)". A shorter actual length means truncation.
    static func truncatedDataChunk(_ handle: OpaquePointer) -> (Int, Int)? {
        var buffer = [CChar](repeating: 0, count: 4096)
        _ = sf_command(handle, Int32(SFC_GET_LOG_INFO), &buffer, Int32(buffer.count))
        let log = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        for line in log.split(separator: "\n") where line.hasPrefix("data") && line.contains("should be") {
            let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            if numbers.count >= 2, numbers[1] < numbers[0] { return (numbers[0], numbers[1]) }
        }
        return nil
    }

    /// Encodings `write` can produce (generated data, tests, exported clips).
    public enum Encoding: String, CaseIterable, Sendable {
        case wavU8, wavS16, wavS24, wavS32, wavFloat, flac, oggVorbis, mp3

        var format: Int32 {
            switch self {
            case .wavU8: Int32(SF_FORMAT_WAV) | Int32(SF_FORMAT_PCM_U8)
            case .wavS16: Int32(SF_FORMAT_WAV) | Int32(SF_FORMAT_PCM_16)
            case .wavS24: Int32(SF_FORMAT_WAV) | Int32(SF_FORMAT_PCM_24)
            case .wavS32: Int32(SF_FORMAT_WAV) | Int32(SF_FORMAT_PCM_32)
            case .wavFloat: Int32(SF_FORMAT_WAV) | Int32(SF_FORMAT_FLOAT)
            case .flac: Int32(SF_FORMAT_FLAC) | Int32(SF_FORMAT_PCM_16)
            case .oggVorbis: Int32(SF_FORMAT_OGG) | Int32(SF_FORMAT_VORBIS)
            case .mp3: Int32(SF_FORMAT_MPEG) | Int32(SF_FORMAT_MPEG_LAYER_III)
            }
        }
    }

    /// Writes `channels` (equal lengths) in `encoding`.
    public static func write(_ channels: [[Float]], sampleRate: Int, to url: URL, encoding: Encoding = .wavS16) throws {
        guard let frames = channels.first?.count, channels.allSatisfy({ $0.count == frames }) else {
            throw AudioError("\(url.path): channels must be non-empty and of equal length")
        }
        var info = SF_INFO()
        info.samplerate = Int32(sampleRate)
        info.channels = Int32(channels.count)
        info.format = encoding.format
        guard let handle = sf_open(url.path, Int32(SFM_WRITE), &info) else {
            throw AudioError("\(url.path): cannot write \(encoding) (\(String(cString: sf_strerror(nil))))")
        }
        defer { sf_close(handle) }
        var interleaved = [Float](repeating: 0, count: frames * channels.count)
        for (c, ch) in channels.enumerated() { for i in 0..<frames { interleaved[i * channels.count + c] = ch[i] } }
        let written = interleaved.withUnsafeBufferPointer { sf_writef_float(handle, $0.baseAddress, sf_count_t(frames)) }
        guard written == frames else { throw AudioError("\(url.path): short write (\(written) of \(frames) frames)") }
    }

    /// Writes mono 16-bit PCM or 32-bit float WAV.
    public static func writeWAV(_ samples: [Float], sampleRate: Int, to url: URL, float: Bool = false) throws {
        try write([samples], sampleRate: sampleRate, to: url, encoding: float ? .wavFloat : .wavS16)
    }
}
