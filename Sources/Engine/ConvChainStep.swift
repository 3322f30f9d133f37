import CDNNL
import Foundation

/// One convolution of a chain: its primitive over `chunks` equal slices of the batch (consecutive in the
/// layouts used here, the batch being their outermost dimension), and how its weights reach the
/// primitive's layout: reordered on every call (direct layouts: cheap), the per-output-channel scale applied
/// by the reorder, or transformed once and kept (`WinogradWeights`).
final class ConvChainStep {
    let primitive: DNNLPrimitive
    let chunks: Int, stage: Int
    /// One slice's layouts, and the whole batch's (what the chain's neighbouring steps read and write).
    let src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, batchSrc: dnnl_memory_desc_t, batchDst: dnnl_memory_desc_t
    let srcSliceBytes: Int, dstSliceBytes: Int
    /// The weights' plain and chosen layouts; for a direct stage also the reorder between them (with the
    /// per-output-channel scale of a scaled stage), for a Winograd one none: those come from `WinogradWeights`.
    let weights: DNNLStaging
    let kept: Bool
    let bias: dnnl_memory_desc_t?

    init?(_ primitive: DNNLPrimitive, chunks: Int, stage: Int, shape: DNNLConvChain.StageShape) {
        guard let s = shape.conv else { return nil }
        self.primitive = primitive; self.chunks = chunks; self.stage = stage
        src = primitive.desc(dnnl_query_src_md); dst = primitive.desc(dnnl_query_dst_md)
        guard let batchSrc = Self.batch(of: src, slices: chunks), let batchDst = Self.batch(of: dst, slices: chunks) else { return nil }
        self.batchSrc = batchSrc; self.batchDst = batchDst
        srcSliceBytes = DNNL.bytes(src); dstSliceBytes = DNNL.bytes(dst)
        let plain = DNNL.desc([s.o, s.c, s.kh, s.kw], dnnl_oihw), chosen = primitive.desc(dnnl_query_weights_md)
        bias = shape.bias ? DNNL.desc([s.o], dnnl_x) : nil
        kept = primitive.implementation.contains("wino")
        if kept || !shape.scaled {
            weights = DNNLStaging(plain: plain, chosen: chosen, input: !kept, output: false)
        } else {
            guard let scaled = DNNLStaging.scaledInput(plain: plain, chosen: chosen) else { return nil }
            weights = scaled
        }
    }

    /// The layout of `slices` consecutive copies of `slice` along the batch: the slice's descriptor with the
    /// batch dimension multiplied, provided the batch is its outermost dimension (nil otherwise).
    private static func batch(of slice: dnnl_memory_desc_t, slices: Int) -> dnnl_memory_desc_t? {
        if slices == 1 { return slice }
        let elementBytes = slice.data_type == dnnl_bf16 ? 2 : 4
        guard slice.format_kind == dnnl_blocked, slice.offset0 == 0,
              Int(slice.format_desc.blocking.strides.0) * Int(slice.dims.0) * elementBytes == DNNL.bytes(slice) else { return nil }
        var whole = slice
        whole.dims.0 *= Int64(slices); whole.padded_dims.0 *= Int64(slices)
        return DNNL.bytes(whole) == slices * DNNL.bytes(slice) ? whole : nil
    }

    func run(src x: UnsafeMutableRawPointer, dst y: UnsafeMutableRawPointer, _ p: DNNLConvChain.StageWeights) throws {
        try withWeights(p) { w in
            for c in 0..<chunks {
                var args = [(DNNL_ARG_SRC, src, x + c * srcSliceBytes), (DNNL_ARG_WEIGHTS, weights.chosen, w), (DNNL_ARG_DST, dst, y + c * dstSliceBytes)]
                if let bias, let b = p.bias { args.append((DNNL_ARG_BIAS, bias, UnsafeMutableRawPointer(b.data))) }
                try primitive.execute(args)
            }
        }
    }

    private func withWeights(_ p: DNNLConvChain.StageWeights, _ body: (UnsafeMutableRawPointer) throws -> Void) throws {
        if kept {
            let entry = try WinogradWeights.entry(p.weight, scale: p.scale, plain: weights.plain, chosen: weights.chosen)
            return try withExtendedLifetime(entry) { try body(entry.data) }
        }
        try withExtendedLifetime(p) { try weights.input(p.weight.data, pooled: false, scales: p.scale, body) }
    }
}

/// Convolution weights transformed into a Winograd layout, kept between calls for every chain in the
/// process, each under a fingerprint of the weight and scale it came from, with its layout: a call whose
/// weights differ in content (loaded, trained, another model of the same shapes) transforms them again, and
/// chains of other input shapes that choose the same layout share one copy. The transform (oneDNN's
/// `wino_reorder`, 64 ms for 512x512) is slower than the Winograd convolution it feeds; the fingerprint reads
/// the plain weights once (about 1 ms for those 9 MB). At most `capBytes` are kept (Cnn14's four Winograd
/// blocks take 75 MB), the least recently used dropped first.
enum WinogradWeights {
    final class Entry: @unchecked Sendable {
        let data: UnsafeMutableRawPointer, bytes: Int, layout: dnnl_memory_desc_t
        var lastUse = 0
        init(layout: dnnl_memory_desc_t) {
            self.layout = layout; bytes = DNNL.bytes(layout)
            data = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        }
        deinit { data.deallocate() }
    }
    static let capBytes = 128 << 20
    nonisolated(unsafe) private static var entries: [UInt64: Entry] = [:]
    nonisolated(unsafe) private static var keptBytes = 0, uses = 0
    private static let lock = NSLock()

    /// The weights (times the per-output-channel scale) in the `chosen` layout.
    static func entry(_ weight: Tensor, scale: Tensor?, plain: dnnl_memory_desc_t, chosen: dnnl_memory_desc_t) throws -> Entry {
        var key = Fingerprint.of(UnsafeRawPointer(weight.data), bytes: weight.count * 4, seed: UInt64(DNNL.bytes(chosen)))
        if let scale { key = Fingerprint.of(UnsafeRawPointer(scale.data), bytes: scale.count * 4, seed: key) }
        lock.lock(); defer { lock.unlock() }
        uses += 1
        if let kept = entries[key], DNNL.same(kept.layout, chosen) { kept.lastUse = uses; return kept }
        // The scale goes into a plain copy first: oneDNN 2.6's Winograd weight transform takes no runtime
        // scales, and with fixed ones its result was wrong here (off by the output's whole scale).
        let source = scale.map { weight.scaledPerOutputChannel($0) } ?? weight
        guard let transform = DNNLPrimitive.reorder(plain, chosen) else {
            throw EngineError("conv chain: oneDNN cannot transform \(weight.shape) weights into the Winograd layout")
        }
        let made = Entry(layout: chosen)
        try withExtendedLifetime(source) {
            try transform.execute([(DNNL_ARG_FROM, plain, UnsafeMutableRawPointer(source.data)), (DNNL_ARG_TO, chosen, made.data)])
        }
        made.lastUse = uses
        while keptBytes + made.bytes > capBytes, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            entries[oldest.key] = nil; keptBytes -= oldest.value.bytes   // a chain running with it holds it until done
        }
        if made.bytes <= capBytes {
            if let replaced = entries.updateValue(made, forKey: key) { keptBytes -= replaced.bytes }   // same weights, another layout
            keptBytes += made.bytes
        }
        return made
    }

    /// Bytes kept now (for tests).
    static var kept: Int { lock.lock(); defer { lock.unlock() }; return keptBytes }
}
