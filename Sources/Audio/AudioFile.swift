import CSndfile
import Foundation

/// A file that holds fewer frames than its header promises (a download or copy cut short): how many
/// the header promises and how many could be decoded.
public struct AudioTruncation: Sendable, Equatable, CustomStringConvertible {
    public var promised: Int
    public var read: Int
    public init(promised: Int, read: Int) { self.promised = promised; self.read = read }
    public var description: String { "truncated: the header promises \(promised) frames, \(read) could be read" }
}

/// Decoded audio: Float32 samples in [-1, 1], one array per channel.
public struct AudioBuffer: Sendable {
    public var channels: [[Float]]
    public var sampleRate: Int
    /// Set when the file was cut short: the samples are those before the cut.
    public var truncated: AudioTruncation? = nil

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
    /// `frames` is what decodes: for a truncated file, fewer than its header promises (`truncated`).
    public var sampleRate: Int, channels: Int, frames: Int
    public var format: String
    public var truncated: AudioTruncation? = nil
    public var duration: Double { Double(frames) / Double(max(sampleRate, 1)) }
}

/// Decoding through libsndfile: WAV (PCM 8/16/24/32-bit, float), FLAC, OGG/Vorbis, Opus, MP3 and more,
/// from a file or from a member of a tar archive named `<archive>.tar/<member>` (`ArchivePath`).
public enum AudioFile {
    /// Opens a file, or a member of a tar archive (`ArchivePath`), for decoding.
    static func open(_ url: URL, _ info: inout SF_INFO) throws -> SoundFileHandle {
        let path = url.path
        if let (archive, member) = ArchivePath.split(path) {
            let bytes = try ArchiveIndex.shared.member(member, of: archive)
            guard !bytes.isEmpty else { throw AudioError("\(path): empty file (0 bytes)") }
            guard let handle = SoundFileHandle.open(member: bytes, &info) else {
                throw AudioError("\(path): cannot decode audio (\(String(cString: sf_strerror(nil))))")
            }
            return handle
        }
        guard FileManager.default.fileExists(atPath: path) else { throw AudioError("\(path): no such file") }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size == 0 {
            throw AudioError("\(path): empty file (0 bytes)")
        }
        guard let handle = sf_open(path, Int32(SFM_READ), &info) else {
            let reason = String(cString: sf_strerror(nil))
            throw AudioError("\(path): cannot decode audio (\(reason))")
        }
        return SoundFileHandle(pointer: handle)
    }

    /// A file's bytes (mapped), or an archive member's (read from the archive): what the feature cache hashes
    /// and `pack` copies.
    public static func contents(of url: URL) throws -> Data {
        if let (archive, member) = ArchivePath.split(url.path) { return try ArchiveIndex.shared.member(member, of: archive) }
        return try Data(contentsOf: url, options: .alwaysMapped)
    }

    /// The header's description of a file, without decoding its samples. A WAV or AIFF cut short is
    /// seen from its header alone; with `verifyLength`, other formats (FLAC, OGG, ...) are checked by
    /// seeking to their last frame, and decoded to count their frames only where that fails.
    public static func info(_ url: URL, verifyLength: Bool = false) throws -> AudioInfo {
        var info = SF_INFO()
        var file: SoundFileHandle? = try open(url, &info)
        var frames = Int(info.frames)
        var truncated = headerTruncation(file!.pointer, info)
        if verifyLength, truncated == nil, frames > 0, !isMPEG(info), !canReadLastFrame(file!.pointer, info) {
            file = nil   // closed before the second handle opens
            let read = try countFrames(url)
            if read < frames { truncated = AudioTruncation(promised: frames, read: read); frames = read }
        }
        withExtendedLifetime(file) {}
        return AudioInfo(sampleRate: Int(info.samplerate), channels: Int(info.channels), frames: frames,
                         format: formatName(info.format), truncated: truncated)
    }

    static func isMPEG(_ info: SF_INFO) -> Bool { info.format & Int32(SF_FORMAT_TYPEMASK) == Int32(SF_FORMAT_MPEG) }

    static func canReadLastFrame(_ handle: OpaquePointer, _ info: SF_INFO) -> Bool {
        guard sf_seek(handle, info.frames - 1, SEEK_SET) == info.frames - 1 else { return false }
        var frame = [Float](repeating: 0, count: max(Int(info.channels), 1))
        return frame.withUnsafeMutableBufferPointer { sf_readf_float(handle, $0.baseAddress, 1) } == 1
    }

    /// Frames that decode, reading the file through (a failed seek can leave a decoder unusable, so a
    /// fresh handle).
    static func countFrames(_ url: URL) throws -> Int {
        var info = SF_INFO()
        let file = try open(url, &info)
        let handle = file.pointer
        defer { withExtendedLifetime(file) {} }
        var chunk = [Float](repeating: 0, count: 65536 * max(Int(info.channels), 1))
        var total = 0
        while true {
            let got = chunk.withUnsafeMutableBufferPointer { sf_readf_float(handle, $0.baseAddress, 65536) }
            guard got > 0 else { break }
            total += Int(got)
        }
        return total
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

    /// Decodes a whole file. With `mono`, channels are averaged into one. A pipe (the standard input:
    /// `ffmpeg ... -f wav - | earshot classify -`) is read to its end as a stream, mono.
    public static func read(_ url: URL, mono: Bool = true) throws -> AudioBuffer {
        if AudioStream.isPipe(url) {
            let stream = try AudioStream(url)
            var samples: [Float] = []
            while let block = try stream.next(1 << 16) {
                samples += block
                guard samples.count < 1 << 31 else { throw AudioError("\(url.path): too long (over 2^31 frames)") }
            }
            guard !samples.isEmpty else { throw AudioError("\(url.path): no audio frames") }
            return AudioBuffer(mono: samples, sampleRate: stream.sampleRate)
        }
        let path = url.path
        var info = SF_INFO()
        let file = try open(url, &info)
        let handle = file.pointer
        defer { withExtendedLifetime(file) {} }
        let channels = Int(info.channels), frames = Int(info.frames)
        guard info.samplerate > 0, channels > 0 else { throw AudioError("\(path): invalid header (rate \(info.samplerate), \(channels) channels)") }
        // Below 1 kHz no front end has a band to work with and above 1 MHz no recorder writes: such a rate
        // is a damaged header, and resampling it would turn a few bytes into seconds of nonsense.
        guard plausibleSampleRates.contains(Int(info.samplerate)) else {
            throw AudioError("\(path): implausible sample rate \(info.samplerate) Hz (expected \(plausibleSampleRates.lowerBound)-\(plausibleSampleRates.upperBound) Hz; a damaged header?)")
        }
        let fromHeader = headerTruncation(handle, info)
        guard frames > 0 else {
            throw AudioError("\(path): no audio frames" + (fromHeader.map { " (truncated: the header promises \($0.promised) frames)" } ?? ""))
        }
        guard frames < 1 << 31 else { throw AudioError("\(path): too long (\(frames) frames)") }
        var interleaved = [Float](repeating: 0, count: frames * channels)
        let got = interleaved.withUnsafeMutableBufferPointer { sf_readf_float(handle, $0.baseAddress, sf_count_t(frames)) }
        guard got > 0 else {
            let why = sf_error(handle) != 0 ? " (\(String(cString: sf_strerror(handle))))" : ""
            throw AudioError("\(path): truncated: the header promises \(frames) frames but none could be decoded\(why)")
        }
        // A truncated file decodes fewer frames than its header claims (FLAC, where the decoder then
        // loses sync in the cut frame), or libsndfile shortens the data chunk to what is there (WAV,
        // AIFF): the frames before the cut are used, and the buffer says how many of how many. MP3
        // headers only estimate the length, so a shortfall there is no truncation unless the decoder
        // stopped on an error.
        if sf_error(handle) != 0, Int(got) >= frames {
            throw AudioError("\(path): decoding failed after \(got) of \(frames) frames (\(String(cString: sf_strerror(handle))))")
        }
        var truncated = fromHeader
        if truncated == nil, Int(got) < frames, !isMPEG(info) || sf_error(handle) != 0 {
            truncated = AudioTruncation(promised: frames, read: Int(got))
        }
        if truncated != nil { truncated!.read = Int(got) }
        let n = Int(got)
        for c in 0..<channels where stride(from: c, to: n * channels, by: channels).contains(where: { !interleaved[$0].isFinite }) {
            throw AudioError("\(path): channel \(c) contains NaN or infinite samples")
        }
        // No copy more than needed: a long recording's samples are the largest thing a command holds (a
        // 30-minute mono file is 115 MB). One channel is the decoded array itself; a downmix reads the
        // interleaved frames directly (adding the channels in order, then scaling, as `AudioBuffer.mono`).
        var buffer: AudioBuffer
        if channels == 1 {
            if n < interleaved.count { interleaved.removeSubrange(n...) }
            buffer = AudioBuffer(mono: interleaved, sampleRate: Int(info.samplerate))
        } else if mono {
            let scale = 1 / Float(channels)
            var out = [Float](repeating: 0, count: n)
            interleaved.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    var sum: Float = 0
                    for c in 0..<channels { sum += src[i * channels + c] }
                    out[i] = sum * scale
                }
            }
            buffer = AudioBuffer(mono: out, sampleRate: Int(info.samplerate))
        } else {
            var out = [[Float]](repeating: [Float](repeating: 0, count: n), count: channels)
            for c in 0..<channels { for i in 0..<n { out[c][i] = interleaved[i * channels + c] } }
            buffer = AudioBuffer(channels: out, sampleRate: Int(info.samplerate))
        }
        buffer.truncated = truncated
        return buffer
    }

    /// libsndfile quietly shortens a WAV/AIFF data chunk that runs past the end of the file to what the
    /// file holds; its log then says "data : <declared> (should be <actual>)" (WAV) or
    /// "SSND : <declared> (should be <actual>)" (AIFF, whose COMM chunk also gives "Frames : <n>").
    /// A shorter actual length means truncation: the frames the header promised, and those that remain.
    static func headerTruncation(_ handle: OpaquePointer, _ info: SF_INFO) -> AudioTruncation? {
        var buffer = [CChar](repeating: 0, count: 8192)
        _ = sf_command(handle, Int32(SFC_GET_LOG_INFO), &buffer, Int32(buffer.count))
        let log = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let frames = Int(info.frames), channels = max(Int(info.channels), 1)
        var commFrames: Int?
        for raw in log.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            if line.hasPrefix("Frames"), line.contains(":"), let n = numbers.first { commFrames = n }
            guard line.hasPrefix("data") || line.hasPrefix("SSND"), line.contains("should be"), numbers.count >= 2,
                  numbers[1] < numbers[0], numbers[0] != 0xFFFF_FFFF else { continue }   // all ones: a streamed WAV, length unknown
            let (declared, actual) = (numbers[0], numbers[1])
            if line.hasPrefix("SSND"), let n = commFrames, n > frames { return AudioTruncation(promised: n, read: frames) }
            // SSND counts 8 bytes of offset and block size before the samples.
            let bytes = line.hasPrefix("SSND") ? declared - 8 : declared
            let promised: Int
            if let size = bytesPerSample(info.format) {
                promised = bytes / (size * channels)
            } else {
                // Compressed samples (ADPCM, GSM, ...): in proportion to the bytes that remain.
                promised = Int((Double(declared) * Double(frames) / Double(max(actual, 1))).rounded())
            }
            if promised > frames { return AudioTruncation(promised: promised, read: frames) }
        }
        return nil
    }

    static func bytesPerSample(_ format: Int32) -> Int? {
        switch format & Int32(SF_FORMAT_SUBMASK) {
        case Int32(SF_FORMAT_PCM_S8), Int32(SF_FORMAT_PCM_U8), Int32(SF_FORMAT_ULAW), Int32(SF_FORMAT_ALAW): 1
        case Int32(SF_FORMAT_PCM_16): 2
        case Int32(SF_FORMAT_PCM_24): 3
        case Int32(SF_FORMAT_PCM_32), Int32(SF_FORMAT_FLOAT): 4
        case Int32(SF_FORMAT_DOUBLE): 8
        default: nil
        }
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
        // Samples beyond ±1 (a lossy decoder's overshoot) saturate in an integer format: without clipping
        // libsndfile wraps them around in WAV and its FLAC encoder refuses the block (a short write).
        if encoding != .wavFloat { sf_command(handle, Int32(SFC_SET_CLIPPING), nil, Int32(SF_TRUE)) }
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
