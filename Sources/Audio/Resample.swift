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
