import CSoxr

/// Sample-rate conversion with libsoxr at its "high quality" setting (20-bit, linear phase).
public enum Resampler {
    public static func resample(_ samples: [Float], from inRate: Int, to outRate: Int) throws -> [Float] {
        guard inRate > 0, outRate > 0 else { throw AudioError("resample: rates must be positive (got \(inRate) -> \(outRate))") }
        if inRate == outRate || samples.isEmpty { return samples }
        let outCount = Int((Double(samples.count) * Double(outRate) / Double(inRate)).rounded())
        var out = [Float](repeating: 0, count: max(outCount, 1))
        var quality = soxr_quality_spec(4 /* SOXR_HQ = SOXR_20_BITQ */, 0)
        var io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I)
        var done = 0
        let error: soxr_error_t? = samples.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                soxr_oneshot(Double(inRate), Double(outRate), 1, input.baseAddress, samples.count, nil,
                             output.baseAddress, outCount, &done, &io, &quality, nil)
            }
        }
        if let error { throw AudioError("resample \(inRate) -> \(outRate) Hz: \(String(cString: error))") }
        return Array(out.prefix(done))
    }

    public static func resample(_ buffer: AudioBuffer, to rate: Int) throws -> AudioBuffer {
        AudioBuffer(channels: try buffer.channels.map { try resample($0, from: buffer.sampleRate, to: rate) }, sampleRate: rate)
    }
}

/// libsoxr's streaming resampler: blocks in, blocks out, with the filter's state carried across
/// blocks, so a long recording resamples in pieces exactly as it would in one (`Resampler.resample`
/// started fresh on every block would ring at each block edge).
public final class StreamingResampler {
    private let soxr: soxr_t
    public let inRate: Int, outRate: Int

    public init(from inRate: Int, to outRate: Int) throws {
        guard inRate > 0, outRate > 0 else { throw AudioError("resample: rates must be positive (got \(inRate) -> \(outRate))") }
        var quality = soxr_quality_spec(4 /* SOXR_HQ */, 0)
        var io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I)
        var error: soxr_error_t?
        guard let s = soxr_create(Double(inRate), Double(outRate), 1, &error, &io, &quality, nil), error == nil else {
            throw AudioError("resample \(inRate) -> \(outRate) Hz: \(error.map { String(cString: $0) } ?? "soxr_create failed")")
        }
        (soxr, self.inRate, self.outRate) = (s, inRate, outRate)
    }

    deinit { soxr_delete(soxr) }

    /// The output for `input`; with `input` nil, what the filter still holds (call once at the end).
    public func process(_ input: [Float]?) throws -> [Float] {
        if let input, input.isEmpty { return [] }
        var out: [Float] = []
        let ratio = Double(outRate) / Double(inRate)
        var chunk = [Float](repeating: 0, count: Int(Double(max(input?.count ?? 0, 1024)) * ratio) + 1024)
        var offset = 0
        while true {
            var consumed = 0, produced = 0
            let error: soxr_error_t? = chunk.withUnsafeMutableBufferPointer { o in
                if let input {
                    return input.withUnsafeBufferPointer { i in
                        soxr_process(soxr, i.baseAddress! + offset, input.count - offset, &consumed, o.baseAddress, o.count, &produced)
                    }
                }
                return soxr_process(soxr, nil, 0, nil, o.baseAddress, o.count, &produced)
            }
            if let error { throw AudioError("resample \(inRate) -> \(outRate) Hz: \(String(cString: error))") }
            out.append(contentsOf: chunk.prefix(produced))
            offset += consumed
            // Done when the input is used up and the output buffer was not filled (nothing left pending).
            if (input == nil || offset >= input!.count) && produced < chunk.count { return out }
        }
    }
}
