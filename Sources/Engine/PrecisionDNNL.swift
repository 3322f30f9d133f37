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
/// the activations: bf16 by round-to-nearest-even; int8 by a dynamic symmetric quantisation per row,
/// s_r = max_k |x_rk| / 127, q_rk = round(x_rk / s_r), with per-output-channel weight scales
/// s_n = max_k |W_nk| / 127, so y_rn = s_r · s_n · Σ_k q_rk q_nk + b_n (int32 sums). Accumulation is fp32
/// (bf16) or int32 (int8), the output fp32 either way.
///
/// Threads: the rows are split across the engine's own threads, each converting its rows and running a
/// single-threaded primitive on them (built with one OpenMP thread, a scratchpad per call). oneDNN's
/// OpenMP team is never started here: its threads spin for milliseconds after each parallel region, and
/// between the transformer's many small products the engine's threads (LayerNorm, GELU, attention) then
/// shared the 2 cores with spinning ones: bf16 ran 2x *slower* than fp32 that way (docs/PRECISION.md).
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

    /// What a primitive does after the product and bias (oneDNN post-ops, applied while the output tile
    /// is still in registers): nothing; GELU with a bf16 output (fc1 of a fused MLP, read as fc2's bf16
    /// input); or adding the product to what the destination holds (a residual, `sum` post-op).
    package enum Epilogue: Hashable, Sendable {
        case none
        case geluToBF16(approximate: Bool)
        case accumulate
    }

    private struct KernelKey: Hashable { let rows: Int, epilogue: Epilogue }

    /// A single-threaded primitive for one row count and epilogue.
    private struct Kernel: @unchecked Sendable {  // immutable; the primitive runs from several threads
        let matmul: DNNLPrimitive
        let src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, scratchpad: dnnl_memory_desc_t
        /// A copy of the weight for a row count whose kernel chose another layout (nil: `weights`).
        let weights: UnsafeMutableRawPointer?
    }
    private var kernels: [KernelKey: Kernel] = [:]
    private let lock = NSLock()
    /// The kernel oneDNN chose (e.g. `brg:avx512_core_bf16`), for reports.
    package let implementation: String

    private var srcType: dnnl_data_type_t { precision == .bf16 ? dnnl_bf16 : dnnl_s8 }

    /// Converts `weight` [N, K] (and `bias` [N]); throws where oneDNN has no hardware kernel for
    /// `precision` here (it would fall back to its reference code, far slower than fp32).
    package init(weight: Tensor, bias: Tensor?, precision: Precision) throws {
        guard precision != .fp32 else { throw EngineError("LowPrecisionMatmul: fp32 runs on the engine's own kernels") }
        guard weight.rank == 2 else { throw EngineError("LowPrecisionMatmul: weight must be [out, in], got \(weight.shape)") }
        guard DNNL.context != nil else { throw EngineError("oneDNN: no CPU engine") }
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
            Self.toBF16(weight.data, plain.assumingMemoryBound(to: UInt16.self), n * k)
        } else {
            let q = plain.assumingMemoryBound(to: Int8.self)
            for o in 0..<n { scales[o] = Self.quantizeRow(weight.data + o * k, k, into: q + o * k) }
        }
        weightScales = scales

        // The layout the kernel wants, from a primitive for a typical row count.
        let probe = try Self.primitive(rows: 512, k: k, n: n, precision: precision, weights: Self.desc([k, n], wType, dnnl_format_tag_any),
                                       hasBias: bias != nil, scales: scales, biasDesc: biasDesc)
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
        for kernel in kernels.values { kernel.weights?.deallocate() }
    }

    /// A LayerNorm over each row of x, applied while the row is converted (LN(x) · Wᵀ + b without the
    /// normalised fp32 tensor ever being written).
    package struct RowNorm: @unchecked Sendable {
        package let weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, eps: Float
        package init(weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, eps: Float) {
            self.weight = weight; self.bias = bias; self.eps = eps
        }
    }

    /// out [rows, N] = x [rows, K] · Wᵀ + b, fp32 in and out; with `norm`, LN(x) · Wᵀ + b; with
    /// `accumulate` (bf16 only), out += x · Wᵀ + b (oneDNN's sum post-op: a residual joins in the store).
    package func apply(rows m: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                       norm: RowNorm? = nil, accumulate: Bool = false) throws {
        guard m > 0 else { return }
        guard !accumulate || precision == .bf16 else { throw EngineError("LowPrecisionMatmul: accumulate runs in bf16 only") }
        let epilogue: Epilogue = accumulate ? .accumulate : .none
        let (k, n) = (inFeatures, outFeatures)
        // One piece of rows per thread (at least 32 rows each: below that one thread is faster).
        let pieces = max(1, min(Threading.threads, m / 32))
        let size = (m + pieces - 1) / pieces
        let sizes = (0..<pieces).map { min(size, m - $0 * size) }.filter { $0 > 0 }
        let chosen = try Dictionary(uniqueKeysWithValues: Set(sizes).map { ($0, try kernel(rows: $0, epilogue: epilogue)) })
        let px = UnsafeSendable(value: x), po = UnsafeSendable(value: out), pb = UnsafeSendable(value: bias)
        let failure = FirstErrorBox()
        DispatchQueue.concurrentPerform(iterations: sizes.count) { piece in
            let r0 = piece * size, rows = sizes[piece], kernel = chosen[rows]!
            let xs = px.value + r0 * k, os = po.value + r0 * n
            let elementBytes = self.precision == .bf16 ? 2 : 1
            let src = UnsafeMutableRawPointer.allocate(byteCount: max(rows * k * elementBytes, 64), alignment: 64)
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(DNNL.bytes(kernel.scratchpad), 64), alignment: 64)
            // One normalised fp32 row at a time, converted at once: the LN output never leaves L1.
            let normed = norm == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: k)
            defer { src.deallocate(); scratch.deallocate(); normed?.deallocate() }
            var rowScales = [Float](repeating: 1, count: self.precision == .int8 ? rows : 0)
            for r in 0..<rows {
                var row = UnsafePointer(xs + r * k)
                if let norm, let normed {
                    _ = Kernels.layerNormRow(row, normed, k, weight: norm.weight, bias: norm.bias, eps: norm.eps)
                    row = UnsafePointer(normed)
                }
                if self.precision == .bf16 {
                    Self.toBF16(row, src.assumingMemoryBound(to: UInt16.self) + r * k, k)
                } else {
                    rowScales[r] = Self.quantizeRow(row, k, into: src.assumingMemoryBound(to: Int8.self) + r * k)
                }
            }
            var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] = [
                (DNNL_ARG_SRC, kernel.src, src), (DNNL_ARG_WEIGHTS, self.weightDesc, kernel.weights ?? self.weights),
                (DNNL_ARG_DST, kernel.dst, UnsafeMutableRawPointer(os)), (DNNL_ARG_SCRATCHPAD, kernel.scratchpad, scratch)]
            if self.precision == .bf16, let b = pb.value { args.append((DNNL_ARG_BIAS, self.biasDesc, UnsafeMutableRawPointer(b))) }
            do { try Self.executeSerially(kernel.matmul, args) } catch { failure.record(error); return }
            if self.precision == .int8 {
                // y_rn = s_r · (s_n Σ q q) + b_n; the primitive applied s_n.
                for r in 0..<rows {
                    let row = os + r * n, sr = rowScales[r]
                    if let b = pb.value { for j in 0..<n { row[j] = row[j] * sr + b[j] } } else { for j in 0..<n { row[j] *= sr } }
                }
            }
        }
        if let error = failure.error { throw error }
    }

    /// bf16 bits of each float, rounded to nearest even (NaN stays NaN: its top bits carry a payload bit).
    static func toBF16(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, _ count: Int) {
        x.withMemoryRebound(to: UInt32.self, capacity: count) { bits in
            for i in 0..<count {
                let b = bits[i]
                y[i] = (b & 0x7FFF_FFFF) > 0x7F80_0000 ? UInt16(b >> 16) | 0x40 : UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
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

    /// Runs on the calling thread: dst [rows, N] = src [rows, K] (bf16, converted by the caller) · Wᵀ + b,
    /// then `epilogue`; dst is fp32, or bf16 for `.geluToBF16`. For fused passes that split rows themselves.
    package func runSerially(rows: Int, bf16Source src: UnsafeRawPointer, destination dst: UnsafeMutableRawPointer,
                             epilogue: Epilogue) throws {
        guard precision == .bf16 else { throw EngineError("LowPrecisionMatmul.runSerially: bf16 only") }
        guard rows > 0 else { return }
        let kernel = try kernel(rows: rows, epilogue: epilogue)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(DNNL.bytes(kernel.scratchpad), 64), alignment: 64)
        defer { scratch.deallocate() }
        var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] = [
            (DNNL_ARG_SRC, kernel.src, UnsafeMutableRawPointer(mutating: src)),
            (DNNL_ARG_WEIGHTS, weightDesc, kernel.weights ?? weights),
            (DNNL_ARG_DST, kernel.dst, dst), (DNNL_ARG_SCRATCHPAD, kernel.scratchpad, scratch)]
        if let bias { args.append((DNNL_ARG_BIAS, biasDesc, UnsafeMutableRawPointer(bias))) }
        try Self.executeSerially(kernel.matmul, args)
    }

    private func kernel(rows m: Int, epilogue: Epilogue) throws -> Kernel {
        lock.lock(); defer { lock.unlock() }
        let key = KernelKey(rows: m, epilogue: epilogue)
        if let kernel = kernels[key] { return kernel }
        let (k, n) = (inFeatures, outFeatures)
        // The converted weight's layout first; another only if this row count's kernel refuses it.
        var weightsCopy: UnsafeMutableRawPointer? = nil
        let matmul: DNNLPrimitive
        if let p = try? Self.primitive(rows: m, k: k, n: n, precision: precision, weights: weightDesc, hasBias: bias != nil,
                                       scales: weightScales, biasDesc: biasDesc, epilogue: epilogue) {
            matmul = p
        } else {
            matmul = try Self.primitive(rows: m, k: k, n: n, precision: precision, weights: Self.desc([k, n], srcType, dnnl_format_tag_any),
                                        hasBias: bias != nil, scales: weightScales, biasDesc: biasDesc, epilogue: epilogue)
            let chosen = matmul.desc(dnnl_query_weights_md)
            let copy = UnsafeMutableRawPointer.allocate(byteCount: max(DNNL.bytes(chosen), 64), alignment: 64)
            guard let r = DNNLPrimitive.reorder(weightDesc, chosen) else { copy.deallocate(); throw EngineError("oneDNN: no weight reorder") }
            try r.execute([(DNNL_ARG_FROM, weightDesc, weights), (DNNL_ARG_TO, chosen, copy)])
            weightsCopy = copy
        }
        let kernel = Kernel(matmul: matmul, src: Self.desc([m, k], srcType, dnnl_ab), dst: Self.desc([m, n], Self.dstType(epilogue), dnnl_ab),
                            scratchpad: matmul.desc(dnnl_query_scratchpad_md), weights: weightsCopy)
        if kernels.count >= 32 { for c in kernels.values { c.weights?.deallocate() }; kernels.removeAll() }  // bounded: lengths vary
        kernels[key] = kernel
        return kernel
    }

    /// A single-threaded matmul primitive: src [M, K] (bf16 or s8, plain), weights as given, dst fp32
    /// [M, N], a user scratchpad; bf16 with the bias inside, int8 with the weight scales as per-column
    /// output scales; `epilogue` as post-ops.
    private static func primitive(rows m: Int, k: Int, n: Int, precision: Precision, weights: dnnl_memory_desc_t, hasBias: Bool,
                                  scales: [Float], biasDesc: dnnl_memory_desc_t, epilogue: Epilogue = .none) throws -> DNNLPrimitive {
        guard let ctx = DNNL.context else { throw EngineError("oneDNN: no CPU engine") }
        var src = desc([m, k], precision == .bf16 ? dnnl_bf16 : dnnl_s8, dnnl_ab)
        var dst = desc([m, n], dstType(epilogue), dnnl_ab)
        var w = weights
        var b = precision == .bf16 && hasBias ? biasDesc : dnnl_memory_desc_t()
        var md = dnnl_matmul_desc_t()
        guard dnnl_matmul_desc_init(&md, &src, &w, &b, &dst) == dnnl_success else {
            throw EngineError("oneDNN: cannot describe a \(precision.rawValue) matmul [\(m), \(k)] x [\(k), \(n)]")
        }
        var attr: dnnl_primitive_attr_t?
        guard dnnl_primitive_attr_create(&attr) == dnnl_success else { throw EngineError("oneDNN: cannot create attributes") }
        defer { dnnl_primitive_attr_destroy(attr) }
        _ = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)
        if precision == .int8 { _ = dnnl_primitive_attr_set_output_scales(attr, Int64(n), 1 << 1, scales) }
        if epilogue != .none {
            var postOps: dnnl_post_ops_t?
            guard dnnl_post_ops_create(&postOps) == dnnl_success else { throw EngineError("oneDNN: cannot create post-ops") }
            defer { dnnl_post_ops_destroy(postOps) }
            switch epilogue {
            case .geluToBF16(let approximate):
                // The model's GELU: erf by default (nn.GELU()), tanh where it was built approximate.
                _ = dnnl_post_ops_append_eltwise(postOps, 1, approximate ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf, 0, 0)
            case .accumulate: _ = dnnl_post_ops_append_sum(postOps, 1)
            case .none: break
            }
            guard dnnl_primitive_attr_set_post_ops(attr, postOps) == dnnl_success else { throw EngineError("oneDNN: cannot set post-ops") }
        }
        var pd: dnnl_primitive_desc_t?
        // Built for one thread: oneDNN sizes its work split from the OpenMP thread count at creation.
        let status = OpenMP.withOneThread { dnnl_primitive_desc_create(&pd, &md, attr, ctx.engine, nil) }
        guard status == dnnl_success, let p = DNNLPrimitive(pd) else {
            throw EngineError("oneDNN: no \(precision.rawValue) matmul for [\(m), \(k)] x [\(k), \(n)]")
        }
        return p
    }

    /// Runs a single-threaded primitive on the calling thread, on a stream of its own (calls from the
    /// engine's threads run at once).
    private static func executeSerially(_ p: DNNLPrimitive, _ args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)]) throws {
        guard let ctx = DNNL.context else { throw EngineError("oneDNN: no CPU engine") }
        var stream: dnnl_stream_t?
        guard dnnl_stream_create(&stream, ctx.engine, dnnl_stream_default_flags.rawValue) == dnnl_success, let stream else {
            throw EngineError("oneDNN: cannot create a stream")
        }
        defer { dnnl_stream_destroy(stream) }
        try p.execute(args, on: stream, around: { OpenMP.withOneThread($0) })
    }

    private static func dstType(_ epilogue: Epilogue) -> dnnl_data_type_t {
        if case .geluToBF16 = epilogue { return dnnl_bf16 }
        return dnnl_f32
    }

    static func desc(_ dims: [Int], _ type: dnnl_data_type_t, _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        _ = dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), dims.map { Int64($0) }, type, tag)
        return md
    }
}

/// libgomp's thread count of the calling thread (found in the process, as `DNNL.syncThreads` finds it).
enum OpenMP {
    private typealias SetThreads = @convention(c) (Int32) -> Void
    private typealias GetThreads = @convention(c) () -> Int32
    private static let set: SetThreads? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads").map { unsafeBitCast($0, to: SetThreads.self) }
    private static let get: GetThreads? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_get_max_threads").map { unsafeBitCast($0, to: GetThreads.self) }

    /// Runs `body` with this thread's OpenMP thread count at 1, then restores it (the count is per thread).
    static func withOneThread<R>(_ body: () throws -> R) rethrows -> R {
        guard let set, let get else { return try body() }
        let before = get()
        set(1)
        defer { set(before) }
        return try body()
    }
}

