import CDNNL
import Foundation

/// The number format of an inference's linear layers: fp32 (the engine's own kernels, the default),
/// bf16 (bfloat16 operands, fp32 accumulation and output) or int8 (8-bit operands, int32 accumulation).
///
/// Reduced precision runs through oneDNN's matmul, which picks its kernel at run time from the CPU:
/// bf16 needs AVX512-BF16 (`brg:avx512_core_bf16`) or AMX (`brg:avx512_core_amx_bf16`); int8 needs
/// VNNI (`brg:avx512_core_vnni`) or AMX-INT8. Where the CPU lacks them, `resolved` says so once on
/// standard error and returns fp32: oneDNN would otherwise emulate them, slower than fp32 (docs/PRECISION.md).
public enum Precision: String, CaseIterable, Sendable, Codable {
    case fp32, bf16, int8

    /// Why this CPU cannot run `self` on hardware units, nil where it can (fp32 always can).
    public func unavailability(on cpu: CPUFeatures = .host) -> String? {
        switch self {
        case .fp32: return nil
        case .bf16 where !(cpu.hasAVX512BF16 || cpu.hasAMX):
            return "bf16 needs avx512_bf16 or amx_bf16, and this CPU has none (\(cpu.summary.joined(separator: " ")))"
        case .int8 where !(cpu.hasVNNI && cpu.hasAVX512 || cpu.flags.contains("amx_int8")):
            return "int8 needs avx512_vnni or amx_int8, and this CPU has none (\(cpu.summary.joined(separator: " ")))"
        default:
            return DNNL.context == nil ? "\(rawValue) needs oneDNN, which could not start a CPU engine" : nil
        }
    }

    nonisolated(unsafe) private static var noticed: Set<Precision> = []
    private static let noticeLock = NSLock()

    /// The precision that runs on this CPU: `self` where it can, else fp32, saying why to `notice`, or by
    /// default on standard error once per precision and process (a batch job converts many models).
    public func resolved(on cpu: CPUFeatures = .host, notice: ((String) -> Void)? = nil) -> Precision {
        guard let reason = unavailability(on: cpu) else { return self }
        let line = "--precision \(rawValue) is unavailable here: \(reason); running fp32"
        if let notice { notice(line) } else {
            Self.noticeLock.lock()
            let first = Self.noticed.insert(self).inserted
            Self.noticeLock.unlock()
            if first { noticeOnStderr(line) }
        }
        return .fp32
    }
}

/// y = x · Wᵀ + b in bf16 or int8 through oneDNN's matmul, for inference.
///
/// The weight is converted once, at construction, into the layout oneDNN's kernel reads (its blocked
/// "any" layout: for bf16 on AVX512-BF16, pairs of k interleaved for `vdpbf16ps`). Each call converts
/// the activations: bf16 by oneDNN's round-to-nearest-even reorder; int8 by a dynamic symmetric
/// quantisation per row, s_r = max_k |x_rk| / 127, q_rk = round(x_rk / s_r), with per-output-channel
/// weight scales s_n = max_k |W_nk| / 127, so y_rn = s_r · s_n · Σ_k q_rk q_nk + b_n (int32 sums).
/// Accumulation is fp32 (bf16) or int32 (int8) and the output fp32 either way.
///
/// A primitive is built per row count (a model sees few: one per window length) and kept.
package final class LowPrecisionMatmul: @unchecked Sendable {
    package let precision: Precision
    package let outFeatures: Int, inFeatures: Int
    /// The converted weight in `weightDesc`'s layout.
    private let weights: UnsafeMutableRawPointer
    private let weightDesc: dnnl_memory_desc_t
    /// fp32 bias, [1, N]; the int8 path adds it after the row scales instead of inside the primitive.
    private let bias: UnsafeMutablePointer<Float>?
    private let biasDesc: dnnl_memory_desc_t
    /// int8: the per-output-channel weight scales s_n.
    private let weightScales: [Float]

    private struct Plan {
        let matmul: DNNLPrimitive
        let src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t
        /// fp32 [M, K] → bf16 [M, K] (bf16 only).
        let toBF16: DNNLPrimitive?
        let plainSrc: dnnl_memory_desc_t
        /// A copy of the weight for a row count whose kernel chose another layout (nil: `weights`).
        let weights: UnsafeMutableRawPointer?
    }
    private var plans: [Int: Plan] = [:]
    private let lock = NSLock()
    /// The kernel oneDNN chose (e.g. `brg:avx512_core_bf16`), for reports.
    package let implementation: String

    /// Converts `weight` [N, K] (and `bias` [N]); throws where oneDNN has no hardware kernel for
    /// `precision` here (it would fall back to its reference code, far slower than fp32).
    package init(weight: Tensor, bias: Tensor?, precision: Precision) throws {
        guard precision != .fp32 else { throw EngineError("LowPrecisionMatmul: fp32 runs on the engine's own kernels") }
        guard weight.rank == 2 else { throw EngineError("LowPrecisionMatmul: weight must be [out, in], got \(weight.shape)") }
        guard let ctx = DNNL.context else { throw EngineError("oneDNN: no CPU engine") }
        let (n, k) = (weight.shape[0], weight.shape[1])
        if let bias, bias.shape != [n] { throw EngineError("LowPrecisionMatmul: bias shape \(bias.shape), expected [\(n)]") }
        self.precision = precision; outFeatures = n; inFeatures = k
        biasDesc = Self.desc([1, n], dnnl_f32, dnnl_ab)
        if let bias {
            self.bias = .allocate(capacity: n); self.bias!.update(from: bias.data, count: n)
        } else { self.bias = nil }

        // The weight in its own precision, plain [K, N] with N-major rows (W [N, K] read transposed: tag ba).
        let wType = precision == .bf16 ? dnnl_bf16 : dnnl_s8
        let plainW = Self.desc([k, n], wType, dnnl_ba)
        var scales = [Float](repeating: 1, count: n)
        let plainBytes = DNNL.bytes(plainW)
        let plain = UnsafeMutableRawPointer.allocate(byteCount: max(plainBytes, 64), alignment: 64)
        defer { plain.deallocate() }
        if precision == .bf16 {
            guard let cvt = DNNLPrimitive.reorder(Self.desc([k, n], dnnl_f32, dnnl_ba), plainW) else {
                throw EngineError("oneDNN: no fp32 → bf16 reorder")
            }
            try cvt.execute([(DNNL_ARG_FROM, Self.desc([k, n], dnnl_f32, dnnl_ba), UnsafeMutableRawPointer(weight.data)),
                             (DNNL_ARG_TO, plainW, plain)])
        } else {
            let q = plain.assumingMemoryBound(to: Int8.self)
            for o in 0..<n { scales[o] = Self.quantizeRow(weight.data + o * k, k, into: q + o * k) }
        }
        weightScales = scales

        // The layout the kernel wants, from a primitive for a typical row count.
        let probe = try Self.primitive(rows: 1024, k: k, n: n, precision: precision, weights: Self.desc([k, n], wType, dnnl_format_tag_any),
                                       hasBias: bias != nil, scales: scales, biasDesc: biasDesc, engine: ctx.engine)
        implementation = probe.implementation
        if implementation.hasPrefix("ref") {
            throw EngineError("oneDNN has no \(precision.rawValue) kernel for this CPU (it chose \(implementation))")
        }
        weightDesc = probe.desc(dnnl_query_weights_md)
        weights = .allocate(byteCount: max(DNNL.bytes(weightDesc), 64), alignment: 64)
        if let toChosen = DNNLPrimitive.reorder(plainW, weightDesc) {
            try toChosen.execute([(DNNL_ARG_FROM, plainW, plain), (DNNL_ARG_TO, weightDesc, weights)])
        } else {
            weights.copyMemory(from: plain, byteCount: plainBytes)
        }
    }

    deinit {
        weights.deallocate(); bias?.deallocate()
        for plan in plans.values { plan.weights?.deallocate() }
    }

    /// out [rows, N] = x [rows, K] · Wᵀ + b, fp32 in and out.
    package func apply(rows m: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) throws {
        guard m > 0 else { return }
        let plan = try plan(rows: m)
        let (k, n) = (inFeatures, outFeatures)
        let src = UnsafeMutableRawPointer.allocate(byteCount: max(DNNL.bytes(plan.src), 64), alignment: 64)
        defer { src.deallocate() }
        var rowScales: [Float] = []
        if let toBF16 = plan.toBF16 {
            try toBF16.execute([(DNNL_ARG_FROM, plan.plainSrc, UnsafeMutableRawPointer(mutating: x)), (DNNL_ARG_TO, plan.src, src)])
        } else {
            rowScales = [Float](repeating: 1, count: m)
            let q = UnsafeSendable(value: src.assumingMemoryBound(to: Int8.self)), px = UnsafeSendable(value: x)
            rowScales.withUnsafeMutableBufferPointer { s in
                let ps = UnsafeSendable(value: s.baseAddress!)
                parallelFor(m, costPerItem: k) { range in
                    for r in range { ps.value[r] = Self.quantizeRow(px.value + r * k, k, into: q.value + r * k) }
                }
            }
        }
        var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] = [
            (DNNL_ARG_SRC, plan.src, src), (DNNL_ARG_WEIGHTS, weightDesc, plan.weights ?? weights), (DNNL_ARG_DST, plan.dst, UnsafeMutableRawPointer(out))]
        if precision == .bf16, let bias { args.append((DNNL_ARG_BIAS, biasDesc, UnsafeMutableRawPointer(bias))) }
        try plan.matmul.execute(args)
        if precision == .int8 {
            // y_rn = s_r · (s_n Σ q q) + b_n; the primitive applied s_n.
            let po = UnsafeSendable(value: out), pb = UnsafeSendable(value: bias)
            rowScales.withUnsafeBufferPointer { s in
                let ps = UnsafeSendable(value: s.baseAddress!)
                parallelFor(m, costPerItem: n) { range in
                    for r in range {
                        let row = po.value + r * n, sr = ps.value[r]
                        if let b = pb.value { for j in 0..<n { row[j] = row[j] * sr + b[j] } } else { for j in 0..<n { row[j] *= sr } }
                    }
                }
            }
        }
    }

    /// s = max |x| / 127 (1 for a zero row), q = round(x / s); returns s.
    static func quantizeRow(_ x: UnsafePointer<Float>, _ k: Int, into q: UnsafeMutablePointer<Int8>) -> Float {
        var peak: Float = 0
        for i in 0..<k { peak = Swift.max(peak, Swift.abs(x[i])) }
        let s: Float = peak > 0 ? peak / 127 : 1, inv = 1 / s
        for i in 0..<k { q[i] = Int8(Swift.max(-127, Swift.min(127, (x[i] * inv).rounded(.toNearestOrEven)))) }
        return s
    }

    private func plan(rows m: Int) throws -> Plan {
        lock.lock(); defer { lock.unlock() }
        if let p = plans[m] { return p }
        guard let ctx = DNNL.context else { throw EngineError("oneDNN: no CPU engine") }
        let (k, n) = (inFeatures, outFeatures)
        // The converted weight's layout first; another only if this row count's kernel refuses it.
        var weightsCopy: UnsafeMutableRawPointer? = nil
        let matmul: DNNLPrimitive
        if let p = try? Self.primitive(rows: m, k: k, n: n, precision: precision, weights: weightDesc, hasBias: bias != nil,
                                       scales: weightScales, biasDesc: biasDesc, engine: ctx.engine) {
            matmul = p
        } else {
            let wType = precision == .bf16 ? dnnl_bf16 : dnnl_s8
            matmul = try Self.primitive(rows: m, k: k, n: n, precision: precision, weights: Self.desc([k, n], wType, dnnl_format_tag_any),
                                        hasBias: bias != nil, scales: weightScales, biasDesc: biasDesc, engine: ctx.engine)
            let chosen = matmul.desc(dnnl_query_weights_md)
            let copy = UnsafeMutableRawPointer.allocate(byteCount: max(DNNL.bytes(chosen), 64), alignment: 64)
            guard let r = DNNLPrimitive.reorder(weightDesc, chosen) else { copy.deallocate(); throw EngineError("oneDNN: no weight reorder") }
            try r.execute([(DNNL_ARG_FROM, weightDesc, weights), (DNNL_ARG_TO, chosen, copy)])
            weightsCopy = copy
        }
        let plainSrc = Self.desc([m, k], dnnl_f32, dnnl_ab)
        let src = Self.desc([m, k], precision == .bf16 ? dnnl_bf16 : dnnl_s8, dnnl_ab)
        let plan = Plan(matmul: matmul, src: src, dst: Self.desc([m, n], dnnl_f32, dnnl_ab),
                        toBF16: precision == .bf16 ? DNNLPrimitive.reorder(plainSrc, src) : nil, plainSrc: plainSrc, weights: weightsCopy)
        if plans.count >= 16 { for p in plans.values { p.weights?.deallocate() }; plans.removeAll() }  // bounded: lengths vary
        plans[m] = plan
        return plan
    }

    /// A matmul primitive: src [M, K] (bf16 or s8, plain), weights as given, dst fp32 [M, N]; bf16 with
    /// the bias inside, int8 with the weight scales as per-column output scales.
    private static func primitive(rows m: Int, k: Int, n: Int, precision: Precision, weights: dnnl_memory_desc_t, hasBias: Bool,
                                  scales: [Float], biasDesc: dnnl_memory_desc_t, engine: dnnl_engine_t) throws -> DNNLPrimitive {
        var src = desc([m, k], precision == .bf16 ? dnnl_bf16 : dnnl_s8, dnnl_ab)
        var dst = desc([m, n], dnnl_f32, dnnl_ab)
        var w = weights
        var b = precision == .bf16 && hasBias ? biasDesc : dnnl_memory_desc_t()
        var md = dnnl_matmul_desc_t()
        guard dnnl_matmul_desc_init(&md, &src, &w, &b, &dst) == dnnl_success else {
            throw EngineError("oneDNN: cannot describe a \(precision.rawValue) matmul [\(m), \(k)] x [\(k), \(n)]")
        }
        var attr: dnnl_primitive_attr_t?
        guard dnnl_primitive_attr_create(&attr) == dnnl_success else { throw EngineError("oneDNN: cannot create attributes") }
        defer { dnnl_primitive_attr_destroy(attr) }
        if precision == .int8 { _ = dnnl_primitive_attr_set_output_scales(attr, Int64(n), 1 << 1, scales) }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &md, attr, engine, nil) == dnnl_success, let p = DNNLPrimitive(pd) else {
            throw EngineError("oneDNN: no \(precision.rawValue) matmul for [\(m), \(k)] x [\(k), \(n)]")
        }
        return p
    }

    static func desc(_ dims: [Int], _ type: dnnl_data_type_t, _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        _ = dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), dims.map { Int64($0) }, type, tag)
        return md
    }
}
