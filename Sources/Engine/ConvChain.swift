import CDNNL
import Foundation

/// One step of an inference chain of convolutions (`Tensor.convChainInference`).
public enum ConvChainStage {
    /// ReLU(conv2d(x, weight) + bias) (a batch norm may be folded into weight and bias).
    case convReLU(weight: Tensor, bias: Tensor?, geometry: Conv2dGeometry)
    /// The same with the weight ([O, C, kh, kw]) and bias made only when the stage runs and dropped after:
    /// a batch norm folded into each convolution then holds one layer's folded copy at a time, not the
    /// whole network's.
    case lazyConvReLU(weightShape: [Int], bias: Bool, geometry: Conv2dGeometry, parameters: () throws -> (weight: Tensor, bias: Tensor?))
    /// Average pooling over k x k windows with stride k (PyTorch's `avg_pool2d(x, k)`; a trailing row or
    /// column that does not fill a window is dropped).
    case avgPool(Int)
}

/// The convolution algorithm a chain's stages use.
public enum ConvChainAlgorithm: Sendable {
    /// Direct convolution, unless `EARSHOT_CONV_WINOGRAD=on` makes it `.winograd`.
    case automatic
    /// Direct convolution everywhere (what PyTorch's oneDNN path runs).
    case direct
    /// Winograd F(4x4, 3x3) for the 3x3 stride-1 convolutions it pays on (`DNNLConvChain`), direct elsewhere:
    /// faster, with more memory.
    case winograd
}

/// A chain of convolutions (ReLU fused) and average poolings run by oneDNN in its blocked layout from the
/// first stage to the last: the NCHW input is reordered once on the way in and the result once on the
/// way out, instead of around every convolution (ENGINE-NOTES: the reorders cost 25-40% of a blocked
/// convolution). Intermediates are malloc'd and freed as soon as the next stage has read them, so peak
/// memory is two feature maps, not the whole chain's.
///
/// With `.winograd`, 3x3 stride-1 convolutions of at least 16 channels whose transformed weights take at
/// most 16 MB run as oneDNN's `jit_wino_4x3` (F(4x4, 3x3): 36 multiplies per 4x4 output tile instead of
/// 144; AVX-512 only, elsewhere they stay direct). Measured on Zen 4 (docs/PANNS.md): 1.8-2.3x faster per
/// Cnn14 layer of 64-256 channels; but the weights are transformed on every call by a slow reorder (64 ms
/// for 512x512, more than the convolution), which is why larger layers stay direct, and oneDNN keeps a
/// scratchpad for the transformed tiles resident (357 MB for Cnn14's first block at batch 8 x 10 s), which
/// is why it is not the default. Fewer than 16 channels stay direct (oneDNN pads them to 16: Cnn14's
/// one-channel first convolution took 89 ms as Winograd, 37 ms direct). Where a stage wants another
/// activation layout than the previous one wrote (Winograd's nChw16c after brgconv's channels-last), a
/// reorder step sits between them.
final class DNNLConvChain: @unchecked Sendable {
    private enum Step {
        case conv(DNNLPrimitive, weights: DNNLStaging, bias: dnnl_memory_desc_t?, stage: Int)
        case pool(DNNLPrimitive)
        case reorder(DNNLPrimitive)
    }
    private let steps: [Step]
    private let input: DNNLStaging, output: DNNLStaging
    /// The layout each step writes (step i reads step i − 1's).
    private let layouts: [dnnl_memory_desc_t]
    let outputShape: [Int]
    /// The implementation of each convolution stage, in order (`brgconv:avx512_core`, `jit_wino_4x3:avx512_core`).
    let convImplementations: [String]
    /// The most bytes of transformed weights a Winograd stage may stage on every call.
    static let winogradWeightLimit = 16 << 20

    /// A stage's shapes: a convolution (with or without bias) or a k x k pooling, input and output [N, C, H, W].
    struct StageShape {
        let conv: ConvShape?, pool: Int, inShape: [Int], outShape: [Int], bias: Bool
        var key: String { conv.map { "\($0.key) b\(bias)" } ?? "pool\(pool) \(inShape)" }
    }

    /// A forward-inference convolution with ReLU post-op, its source layout left to oneDNN.
    private static func convolution(_ stage: StageShape, _ s: ConvShape, algorithm: dnnl_alg_kind_t) -> DNNLPrimitive? {
        guard let ctx = DNNL.context, let p = DNNLConvPlan.spatial(s) else { return nil }
        var src = DNNL.desc(stage.inShape, dnnl_format_tag_any), dst = DNNL.desc(stage.outShape, dnnl_format_tag_any)
        var w = DNNL.desc([s.o, s.c, s.kh, s.kw], dnnl_format_tag_any)
        var b = stage.bias ? DNNL.desc([s.o], dnnl_x) : dnnl_memory_desc_t()
        var d = dnnl_convolution_desc_t(), pd: dnnl_primitive_desc_t?
        guard dnnl_dilated_convolution_forward_desc_init(&d, dnnl_forward_inference, algorithm, &src, &w, &b, &dst,
                                                         p.strides, p.dilates, p.padL, p.padR) == dnnl_success else { return nil }
        var attr: dnnl_primitive_attr_t?, postOps: dnnl_post_ops_t?
        guard dnnl_primitive_attr_create(&attr) == dnnl_success, dnnl_post_ops_create(&postOps) == dnnl_success else { return nil }
        _ = dnnl_post_ops_append_eltwise(postOps, 1, dnnl_eltwise_relu, 0, 0)
        _ = dnnl_primitive_attr_set_post_ops(attr, postOps)
        dnnl_post_ops_destroy(postOps)
        defer { dnnl_primitive_attr_destroy(attr) }
        guard dnnl_primitive_desc_create(&pd, &d, attr, ctx.engine, nil) == dnnl_success else { return nil }
        return DNNLPrimitive(pd)
    }

    private init?(_ stages: [StageShape], algorithm: ConvChainAlgorithm) {
        guard let ctx = DNNL.context, let first = stages.first, let last = stages.last else { return nil }
        let winograd = algorithm == .winograd || (algorithm == .automatic && DNNL.winogradByDefault)
        var steps: [Step] = [], layouts: [dnnl_memory_desc_t] = [], implementations: [String] = []
        var current: dnnl_memory_desc_t? = nil        // the previous step's chosen output layout
        for (index, stage) in stages.enumerated() {
            if let s = stage.conv {
                var prim: DNNLPrimitive? = nil
                if winograd, s.kh == 3, s.kw == 3, s.g.stride == (1, 1), s.g.dilation == (1, 1), s.c >= 16, s.o >= 16,
                   let wino = Self.convolution(stage, s, algorithm: dnnl_convolution_winograd),
                   DNNL.bytes(wino.desc(dnnl_query_weights_md)) <= Self.winogradWeightLimit {
                    prim = wino
                }
                guard let prim = prim ?? Self.convolution(stage, s, algorithm: dnnl_convolution_direct) else { return nil }
                let wanted = prim.desc(dnnl_query_src_md)
                if let from = current, !DNNL.same(from, wanted) {
                    guard let move = DNNLPrimitive.reorder(from, wanted) else { return nil }
                    steps.append(.reorder(move)); layouts.append(wanted)
                }
                if current == nil { layouts.append(wanted) }
                let weights = DNNLStaging(plain: DNNL.desc([s.o, s.c, s.kh, s.kw], dnnl_oihw), chosen: prim.desc(dnnl_query_weights_md),
                                          input: true, output: false)
                steps.append(.conv(prim, weights: weights, bias: stage.bias ? DNNL.desc([s.o], dnnl_x) : nil, stage: index))
                implementations.append(prim.implementation)
                current = prim.desc(dnnl_query_dst_md)
            } else {
                var src = current ?? DNNL.desc(stage.inShape, dnnl_format_tag_any)
                var dst = DNNL.desc(stage.outShape, dnnl_format_tag_any)
                let k = Int64(stage.pool)
                var d = dnnl_pooling_desc_t(), pd: dnnl_primitive_desc_t?
                guard dnnl_pooling_forward_desc_init(&d, dnnl_forward_inference, dnnl_pooling_avg_include_padding, &src, &dst,
                                                     [k, k], [k, k], [0, 0], [0, 0]) == dnnl_success,
                      dnnl_primitive_desc_create(&pd, &d, nil, ctx.engine, nil) == dnnl_success, let prim = DNNLPrimitive(pd) else { return nil }
                if current == nil { current = prim.desc(dnnl_query_src_md); layouts.append(current!) }
                steps.append(.pool(prim))
                current = prim.desc(dnnl_query_dst_md)
            }
            layouts.append(current!)
        }
        self.steps = steps; self.layouts = layouts; convImplementations = implementations
        input = DNNLStaging(plain: DNNL.desc(first.inShape, dnnl_nchw), chosen: layouts[0], input: true, output: false)
        output = DNNLStaging(plain: DNNL.desc(last.outShape, dnnl_nchw), chosen: layouts[layouts.count - 1], input: false, output: true)
        outputShape = last.outShape
    }

    nonisolated(unsafe) private static var chains: [String: DNNLConvChain?] = [:]
    private static let lock = NSLock()

    static func chain(_ stages: [StageShape], algorithm: ConvChainAlgorithm = .automatic) -> DNNLConvChain? {
        guard DNNL.enabled, stages.allSatisfy({ $0.conv?.g.groups ?? 1 == 1 }) else { return nil }
        lock.lock(); defer { lock.unlock() }
        let key = "\(algorithm) " + stages.map(\.key).joined(separator: " | ")
        if let cached = chains[key] { return cached }
        let built = DNNLConvChain(stages, algorithm: algorithm)
        chains[key] = .some(built)
        return built
    }

    /// Runs the chain on plain NCHW `x`, writing plain NCHW `out`; `params` are the stages' (weight, bias).
    func run(_ x: UnsafeMutablePointer<Float>, params: [(() throws -> (weight: Tensor, bias: Tensor?))?],
             _ out: UnsafeMutablePointer<Float>) throws {
        func allocate(_ md: dnnl_memory_desc_t) -> UnsafeMutableRawPointer {
            UnsafeMutableRawPointer.allocate(byteCount: max(DNNL.bytes(md), 64), alignment: 64)
        }
        // `current` is owned (freed here) unless it is the caller's x.
        var current = UnsafeMutableRawPointer(x), owned = false
        if input.needsReorder {
            let staged = allocate(input.chosen)
            try input.toChosen?.execute([(DNNL_ARG_FROM, input.plain, current), (DNNL_ARG_TO, input.chosen, staged)])
            current = staged; owned = true
        }
        defer { if owned { current.deallocate() } }
        for (i, step) in steps.enumerated() {
            let isLast = i == steps.count - 1
            let next = isLast && !output.needsReorder ? UnsafeMutableRawPointer(out) : allocate(layouts[i + 1])
            do {
                switch step {
                case .conv(let prim, let weights, let biasDesc, let stage):
                    guard let make = params[stage] else { throw EngineError("conv chain: stage \(stage) has no weights") }
                    let (w, b) = try make()
                    try withExtendedLifetime((w, b)) {
                        try weights.input(w.data, pooled: false) { ws in
                            var args = [(DNNL_ARG_SRC, layouts[i], current), (DNNL_ARG_WEIGHTS, weights.chosen, ws), (DNNL_ARG_DST, layouts[i + 1], next)]
                            if let biasDesc, let b { args.append((DNNL_ARG_BIAS, biasDesc, UnsafeMutableRawPointer(b.data))) }
                            try prim.execute(args)
                        }
                    }
                case .pool(let prim):
                    try prim.execute([(DNNL_ARG_SRC, layouts[i], current), (DNNL_ARG_DST, layouts[i + 1], next)])
                case .reorder(let prim):
                    try prim.execute([(DNNL_ARG_FROM, layouts[i], current), (DNNL_ARG_TO, layouts[i + 1], next)])
                }
            } catch {
                if next != UnsafeMutableRawPointer(out) { next.deallocate() }
                throw error
            }
            if owned { current.deallocate() }
            current = next; owned = next != UnsafeMutableRawPointer(out)
        }
        if owned {
            try output.toPlain?.execute([(DNNL_ARG_FROM, output.chosen, current), (DNNL_ARG_TO, output.plain, UnsafeMutableRawPointer(out))])
        }
    }
}

extension Tensor {
    /// Runs `stages` on x [N, C, H, W] for inference (no graph): in one oneDNN chain in its blocked layout
    /// where oneDNN takes every stage, else stage by stage (`conv2dReLUInference`, `avgPool2d`).
    /// `algorithm`: `.automatic` (direct unless `EARSHOT_CONV_WINOGRAD=on`), `.direct` or `.winograd`
    /// (faster, more memory: `DNNLConvChain`).
    public func convChainInference(_ stages: [ConvChainStage], algorithm: ConvChainAlgorithm = .automatic) throws -> Tensor {
        var shapes: [DNNLConvChain.StageShape] = [], inShape = shape
        var params: [(() throws -> (weight: Tensor, bias: Tensor?))?] = []
        for stage in stages {
            switch stage {
            case .convReLU(let w, let b, let g):
                let s = try ConvShape.checked(input: inShape, weight: w, bias: b, g)
                shapes.append(.init(conv: s, pool: 1, inShape: inShape, outShape: [s.n, s.o, s.oh, s.ow], bias: b != nil))
                params.append({ (w, b) }); inShape = [s.n, s.o, s.oh, s.ow]
            case .lazyConvReLU(let ws, let hasBias, let g, let make):
                let s = try ConvShape.checked(input: inShape, weight: ws, bias: hasBias ? [ws.first ?? 0] : nil, g)
                shapes.append(.init(conv: s, pool: 1, inShape: inShape, outShape: [s.n, s.o, s.oh, s.ow], bias: hasBias))
                params.append({ try Self.made(ws, hasBias, make) })
                inShape = [s.n, s.o, s.oh, s.ow]
            case .avgPool(let k):
                if k == 1 { continue }
                try check(inShape.count == 4 && k >= 1 && inShape[2] >= k && inShape[3] >= k,
                          "convChainInference: \(k)x\(k) pooling of \(inShape)")
                let out = [inShape[0], inShape[1], inShape[2] / k, inShape[3] / k]
                shapes.append(.init(conv: nil, pool: k, inShape: inShape, outShape: out, bias: false))
                params.append(nil); inShape = out
            }
        }
        if let chain = DNNLConvChain.chain(shapes, algorithm: algorithm) {
            let out = Tensor.empty(chain.outputShape)
            if (try? chain.run(data, params: params, out.data)) != nil { return out }
        }
        return try GradMode.noGrad {
            var x = self
            for stage in stages {
                switch stage {
                case .convReLU(let w, let b, let g): x = try x.conv2dReLUInference(weight: w, bias: b, g)
                case .lazyConvReLU(let ws, let hasBias, let g, let make):
                    let (w, b) = try Self.made(ws, hasBias, make)
                    x = try x.conv2dReLUInference(weight: w, bias: b, g)
                case .avgPool(let k): if k > 1 { x = try x.avgPool2d(kernel: (k, k)) }
                }
            }
            return x
        }
    }

    /// A lazy stage's weights, checked against the shape it declared.
    private static func made(_ shape: [Int], _ hasBias: Bool, _ make: () throws -> (weight: Tensor, bias: Tensor?)) throws -> (weight: Tensor, bias: Tensor?) {
        let (w, b) = try make()
        try check(w.shape == shape && (b?.shape == [shape[0]]) == hasBias,
                  "convChainInference: a stage made weights \(w.shape) and bias \(b?.shape ?? []), declared \(shape)\(hasBias ? " with bias" : "")")
        return (w, b)
    }
}
