import CDNNL
import Foundation

/// oneDNN (Debian's libdnnl 2.6) through its C API: one CPU engine and stream for the process, primitives
/// built once per shape and kept. oneDNN picks its kernels at run time from the CPU's features (AVX2,
/// AVX-512, AMX), so a baseline build of the engine still gets vector convolutions.
///
/// Its OpenMP pool is sized to `Threading.threads` before each call (the engine's own kernels and
/// oneDNN's never run at once, so the two pools do not compete).
enum DNNL {
    /// The engine and stream, or nil where oneDNN cannot start (then callers use their own kernels).
    nonisolated(unsafe) static let context: (engine: dnnl_engine_t, stream: dnnl_stream_t)? = {
        var engine: dnnl_engine_t?, stream: dnnl_stream_t?
        guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine,
              dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue) == dnnl_success, let stream else { return nil }
        return (engine, stream)
    }()

    /// `EARSHOT_CONV=im2col` turns the oneDNN path off (to compare, or to rule it out).
    static let enabled: Bool = ProcessInfo.processInfo.environment["EARSHOT_CONV"] != "im2col" && context != nil

    /// Inference chains use Winograd where it pays (`ConvChainAlgorithm.automatic`) unless
    /// `EARSHOT_CONV_WINOGRAD=off` (to compare, or to rule it out) or the caller asks for `.direct`.
    static let winogradByDefault = !["off", "0", "no"].contains(ProcessInfo.processInfo.environment["EARSHOT_CONV_WINOGRAD"]?.lowercased() ?? "")

    /// libgomp's `omp_set_num_threads`, found in the process (oneDNN loads it) rather than linked, so the
    /// module map names only oneDNN.
    private typealias SetThreads = @convention(c) (Int32) -> Void
    nonisolated(unsafe) private static let ompSetNumThreads: SetThreads? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads") else { return nil }
        return unsafeBitCast(symbol, to: SetThreads.self)
    }()
    nonisolated(unsafe) private static var ompThreads = 0

    static func syncThreads() {
        let n = Threading.threads
        if n != ompThreads, let set = ompSetNumThreads { set(Int32(n)); ompThreads = n }
    }

    /// A plain memory descriptor (`tag` e.g. `dnnl_nchw`, `dnnl_oihw`, `dnnl_x`) or `dnnl_format_tag_any`, fp32 unless `type` says.
    static func desc(_ dims: [Int], _ tag: dnnl_format_tag_t, type: dnnl_data_type_t = dnnl_f32) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let d = dims.map { Int64($0) }
        _ = dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), d, type, tag)
        return md
    }

    static func same(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    static func bytes(_ md: dnnl_memory_desc_t) -> Int { var md = md; return dnnl_memory_desc_get_size(&md) }
}

/// A primitive and its descriptor, destroyed together.
final class DNNLPrimitive: @unchecked Sendable {
    let pd: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t

    /// Takes ownership of `pd`; nil (and `pd` destroyed) when oneDNN cannot build the primitive.
    init?(_ pd: dnnl_primitive_desc_t?) {
        guard let pd else { return nil }
        var p: dnnl_primitive_t?
        guard dnnl_primitive_create(&p, pd) == dnnl_success, let p else { dnnl_primitive_desc_destroy(pd); return nil }
        self.pd = pd; primitive = p
    }

    /// A reorder between two layouts of the same tensor; nil when they are the same layout.
    static func reorder(_ from: dnnl_memory_desc_t, _ to: dnnl_memory_desc_t) -> DNNLPrimitive? {
        guard !DNNL.same(from, to) else { return nil }
        return reorder(from, to, attributes: nil)
    }

    /// A reorder that also multiplies by per-index scales along the dimensions in `runtimeScalesMask` (bit
    /// i: dimension i), given at each execution as `DNNL_ARG_ATTR_OUTPUT_SCALES` (f32, one per index);
    /// made even between equal layouts.
    static func reorder(_ from: dnnl_memory_desc_t, _ to: dnnl_memory_desc_t, runtimeScalesMask: Int32) -> DNNLPrimitive? {
        var attr: dnnl_primitive_attr_t?
        guard dnnl_primitive_attr_create(&attr) == dnnl_success else { return nil }
        defer { dnnl_primitive_attr_destroy(attr) }
        var runtime = Float(bitPattern: 0x7fc0_00d0)   // DNNL_RUNTIME_F32_VAL
        guard dnnl_primitive_attr_set_output_scales(attr, 1, runtimeScalesMask, &runtime) == dnnl_success else { return nil }
        return reorder(from, to, attributes: attr)
    }

    private static func reorder(_ from: dnnl_memory_desc_t, _ to: dnnl_memory_desc_t, attributes: dnnl_primitive_attr_t?) -> DNNLPrimitive? {
        guard let ctx = DNNL.context else { return nil }
        var pd: dnnl_primitive_desc_t?, a = from, b = to
        guard dnnl_reorder_primitive_desc_create(&pd, &a, ctx.engine, &b, ctx.engine, attributes) == dnnl_success else { return nil }
        return DNNLPrimitive(pd)
    }

    deinit { dnnl_primitive_destroy(primitive); dnnl_primitive_desc_destroy(pd) }

    /// The layout the primitive chose for an argument (`dnnl_query_src_md`, ...).
    func desc(_ query: dnnl_query_t) -> dnnl_memory_desc_t { dnnl_primitive_desc_query_md(pd, query, 0).pointee }

    var implementation: String {
        var s: UnsafePointer<CChar>?
        _ = withUnsafeMutablePointer(to: &s) { dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, $0) }
        return s.map { String(cString: $0) } ?? "?"
    }

    /// Runs the primitive on buffers given as (argument, layout, pointer) and waits for it.
    func execute(_ args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)]) throws {
        guard let ctx = DNNL.context else { throw EngineError("oneDNN: no CPU engine") }
        DNNL.syncThreads()
        try execute(args, on: ctx.stream)
    }

    /// The same on `stream`, the execution call wrapped by `around` (a single-threaded primitive runs
    /// under `OpenMP.withOneThread`, on a stream of its caller's own).
    func execute(_ args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)], on stream: dnnl_stream_t,
                 around: (() -> dnnl_status_t) -> dnnl_status_t = { $0() }) throws {
        guard let ctx = DNNL.context else { throw EngineError("oneDNN: no CPU engine") }
        var memories: [dnnl_memory_t] = []
        defer { for m in memories { dnnl_memory_destroy(m) } }
        var execArgs: [dnnl_exec_arg_t] = []
        for (arg, md, pointer) in args {
            var m: dnnl_memory_t?, md = md
            guard dnnl_memory_create(&m, &md, ctx.engine, pointer) == dnnl_success, let m else {
                throw EngineError("oneDNN: cannot wrap argument \(arg) as memory")
            }
            memories.append(m)
            execArgs.append(dnnl_exec_arg_t(arg: arg, memory: m))
        }
        let status = around { dnnl_primitive_execute(primitive, stream, Int32(execArgs.count), execArgs) }
        guard status == dnnl_success else { throw EngineError("oneDNN: \(implementation) failed (status \(status.rawValue))") }
        _ = dnnl_stream_wait(stream)
    }
}

/// A tensor's plain layout and the one a primitive chose for it, with the reorders between them.
struct DNNLStaging {
    let plain: dnnl_memory_desc_t, chosen: dnnl_memory_desc_t
    let toChosen: DNNLPrimitive?, toPlain: DNNLPrimitive?

    init(plain: dnnl_memory_desc_t, chosen: dnnl_memory_desc_t, input: Bool, output: Bool) {
        self.plain = plain; self.chosen = chosen
        toChosen = input ? DNNLPrimitive.reorder(plain, chosen) : nil
        toPlain = output ? DNNLPrimitive.reorder(chosen, plain) : nil
    }

    /// An input staging whose reorder also multiplies dimension 0 by per-index scales given to each
    /// `input(_:pooled:scales:_:)` (a batch norm's scale folded in as the weights are staged); it reorders
    /// even between equal layouts. Nil where oneDNN cannot build such a reorder.
    static func scaledInput(plain: dnnl_memory_desc_t, chosen: dnnl_memory_desc_t) -> DNNLStaging? {
        guard let reorder = DNNLPrimitive.reorder(plain, chosen, runtimeScalesMask: 1) else { return nil }
        return DNNLStaging(plain: plain, chosen: chosen, toChosen: reorder)
    }

    private init(plain: dnnl_memory_desc_t, chosen: dnnl_memory_desc_t, toChosen: DNNLPrimitive) {
        self.plain = plain; self.chosen = chosen; self.toChosen = toChosen; toPlain = nil
    }

    var needsReorder: Bool { !DNNL.same(plain, chosen) }

    /// Runs `body` with the data at `plain` in the chosen layout (reordered into a temporary when they differ).
    /// The temporary comes from the buffer pool (`pooled`: training reuses the same sizes every step) or is
    /// malloc'd and freed at once (inference: a model's worth of differently sized weight copies would
    /// otherwise stay pooled).
    /// `scales`: dimension 0's scales for a staging made by `scaledInput`.
    func input<R>(_ plainData: UnsafeMutablePointer<Float>, pooled: Bool = true, scales: Tensor? = nil,
                  _ body: (UnsafeMutableRawPointer) throws -> R) throws -> R {
        guard let toChosen else { return try body(plainData) }
        let bytes = DNNL.bytes(chosen)
        let tensor = pooled ? Tensor.empty([(bytes + 3) / 4]) : nil
        let staged = tensor.map { UnsafeMutableRawPointer($0.data) } ?? UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { if tensor == nil { staged.deallocate() } }
        var args = [(DNNL_ARG_FROM, plain, UnsafeMutableRawPointer(plainData)), (DNNL_ARG_TO, chosen, staged)]
        if let scales { args.append((DNNL_ARG_ATTR_OUTPUT_SCALES, DNNL.desc([scales.count], dnnl_x), UnsafeMutableRawPointer(scales.data))) }
        try withExtendedLifetime(scales) { try toChosen.execute(args) }
        return try withExtendedLifetime(tensor) { try body(staged) }
    }

    /// Runs `body` writing the chosen layout, then leaves the result at `plainData`.
    func output(_ plainData: UnsafeMutablePointer<Float>, _ body: (UnsafeMutableRawPointer) throws -> Void) throws {
        guard let toPlain else { return try body(plainData) }
        let staged = Tensor.empty([(DNNL.bytes(chosen) + 3) / 4])
        try body(staged.data)
        try toPlain.execute([(DNNL_ARG_FROM, chosen, UnsafeMutableRawPointer(staged.data)), (DNNL_ARG_TO, plain, UnsafeMutableRawPointer(plainData))])
    }
}
