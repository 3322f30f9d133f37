import CDNNL
import Foundation

/// One step of an inference chain of convolutions (`Tensor.convChainInference`).
public enum ConvChainStage {
    /// ReLU(conv2d(x, weight) + bias).
    case convReLU(weight: Tensor, bias: Tensor?, geometry: Conv2dGeometry)
    /// ReLU(conv2d(x, scale ⊙ weight) + bias), `scale` [O] multiplying each output channel's filter: a batch
    /// norm folded into the convolution (`BatchNorm.foldingScale(into:)`) without a folded copy of the
    /// weight, since the chain applies the scale as oneDNN reorders the weight into its layout (Cnn14's
    /// last layer: 151 MB less at the peak, and no single-threaded pass over 80 M weights per call).
    case scaledConvReLU(weight: Tensor, scale: Tensor, bias: Tensor?, geometry: Conv2dGeometry)
    /// Average pooling over k x k windows with stride k (PyTorch's `avg_pool2d(x, k)`; a trailing row or
    /// column that does not fill a window is dropped).
    case avgPool(Int)
}

/// The convolution algorithm a chain's stages use.
public enum ConvChainAlgorithm: Sendable {
    /// `.winograd`, unless `EARSHOT_CONV_WINOGRAD=off` makes it `.direct`.
    case automatic
    /// Direct convolution everywhere (what PyTorch's oneDNN path runs).
    case direct
    /// Winograd F(4x4, 3x3) for the 3x3 stride-1 convolutions it pays on (`DNNLConvChain`), direct elsewhere:
    /// Cnn14 1.3x faster than `.direct`, keeping 75 MB of transformed weights (docs/PANNS.md).
    case winograd
}

/// A chain of convolutions (ReLU fused) and average poolings run by oneDNN in its blocked layout from the
/// first stage to the last: the NCHW input is reordered once on the way in and the result once on the
/// way out, instead of around every convolution (ENGINE-NOTES: the reorders cost 25-40% of a blocked
/// convolution). Intermediates are malloc'd and freed as soon as the next stage has read them, so peak
/// memory is two feature maps, not the whole chain's.
///
/// With `.winograd`, 3x3 stride-1 convolutions of at least 16 channels whose transformed weights take at
/// most `winogradWeightLimit` run as oneDNN's `jit_wino_4x3` (F(4x4, 3x3): 36 multiplies per 4x4 output
/// tile instead of 144; AVX-512 only, elsewhere they stay direct). Measured on Zen 4 (docs/PANNS.md), one
/// Cnn14 layer of 64-512 channels at a time: 2.5-2.9x faster than direct. Two costs come with it, and
/// each is bounded here:
/// - the weight transform (`wino_reorder`) is slower than the convolution (64 ms for 512x512 against
///   54 ms), so the transformed weights are kept between calls (`WinogradWeights`: transformed again only
///   when the weights' content changes), which is why the limit is per layer (36 MB for 512x512; the
///   1024-channel layers would keep 144 MB and stay direct);
/// - oneDNN's scratchpad holds a whole layer's transformed tiles (289 MB for Cnn14's 128x128 layer at
///   batch 8 x 10 s, and oneDNN keeps it), so a layer runs on slices of the batch small enough that its
///   scratchpad stays under `winogradScratchpadLimit` (one clip at a time there: 43 MB, as fast).
/// Fewer than 16 channels stay direct (oneDNN pads them to 16: Cnn14's one-channel first convolution took
/// 89 ms as Winograd, 37 ms direct). Where a stage wants another activation layout than the previous one
/// wrote (Winograd's nChw16c after brgconv's channels-last), a reorder step sits between them.
final class DNNLConvChain: @unchecked Sendable {
    private enum Step {
        case conv(ConvChainStep)
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
    /// How many slices of the batch each convolution stage runs on (1: the whole batch at once).
    let convChunks: [Int]
    /// The most bytes of transformed weights a Winograd stage may keep.
    static let winogradWeightLimit = 40 << 20
    /// The most bytes of scratchpad a Winograd stage may ask for (it runs on smaller slices of the batch until
    /// it fits, or one clip at a time).
    nonisolated(unsafe) static var winogradScratchpadLimit = 64 << 20

    /// A stage's shapes: a convolution (with or without bias, its weight scaled per output channel or
    /// not) or a k x k pooling, input and output [N, C, H, W].
    struct StageShape {
        let conv: ConvShape?, pool: Int, inShape: [Int], outShape: [Int], bias: Bool
        var scaled = false
        var key: String { conv.map { "\($0.key) b\(bias) s\(scaled)" } ?? "pool\(pool) \(inShape)" }
    }

    /// One convolution stage's weights and bias as the caller holds them.
    struct StageWeights {
        let weight: Tensor, scale: Tensor?, bias: Tensor?
    }

    /// A forward-inference convolution with ReLU post-op over `batch` clips, its layouts left to oneDNN;
    /// with `userScratchpad` only to ask how much scratchpad it needs.
    private static func convolutionDesc(_ stage: StageShape, _ s: ConvShape, algorithm: dnnl_alg_kind_t, batch: Int,
                                        type: dnnl_data_type_t = dnnl_f32, userScratchpad: Bool = false) -> dnnl_primitive_desc_t? {
        guard let ctx = DNNL.context, let p = DNNLConvPlan.spatial(s) else { return nil }
        func batched(_ shape: [Int]) -> [Int] { [batch] + shape.dropFirst() }
        var src = DNNL.desc(batched(stage.inShape), dnnl_format_tag_any, type: type)
        var dst = DNNL.desc(batched(stage.outShape), dnnl_format_tag_any, type: type)
        var w = DNNL.desc([s.o, s.c, s.kh, s.kw], dnnl_format_tag_any, type: type)
        var b = stage.bias ? DNNL.desc([s.o], dnnl_x) : dnnl_memory_desc_t()
        var d = dnnl_convolution_desc_t(), pd: dnnl_primitive_desc_t?
        guard dnnl_dilated_convolution_forward_desc_init(&d, dnnl_forward_inference, algorithm, &src, &w, &b, &dst,
                                                         p.strides, p.dilates, p.padL, p.padR) == dnnl_success else { return nil }
        var attr: dnnl_primitive_attr_t?, postOps: dnnl_post_ops_t?
        guard dnnl_primitive_attr_create(&attr) == dnnl_success, dnnl_post_ops_create(&postOps) == dnnl_success else { return nil }
        _ = dnnl_post_ops_append_eltwise(postOps, 1, dnnl_eltwise_relu, 0, 0)
        _ = dnnl_primitive_attr_set_post_ops(attr, postOps)
        if userScratchpad { _ = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) }
        dnnl_post_ops_destroy(postOps)
        defer { dnnl_primitive_attr_destroy(attr) }
        guard dnnl_primitive_desc_create(&pd, &d, attr, ctx.engine, nil) == dnnl_success else { return nil }
        return pd
    }

    /// The stage as Winograd, on the largest slice of the batch (a divisor of it) whose scratchpad fits
    /// `winogradScratchpadLimit`; nil where oneDNN has no Winograd for it or its weights would not fit.
    private static func winograd(_ stage: StageShape, _ s: ConvShape) -> (DNNLPrimitive, chunk: Int)? {
        let n = stage.inShape[0]
        for chunk in stride(from: n, through: 1, by: -1) where n % chunk == 0 {
            guard let probe = convolutionDesc(stage, s, algorithm: dnnl_convolution_winograd, batch: chunk, userScratchpad: true) else { return nil }
            let scratchpad = DNNL.bytes(dnnl_primitive_desc_query_md(probe, dnnl_query_scratchpad_md, 0).pointee)
            dnnl_primitive_desc_destroy(probe)
            guard scratchpad <= winogradScratchpadLimit || chunk == 1 else { continue }
            guard let prim = DNNLPrimitive(convolutionDesc(stage, s, algorithm: dnnl_convolution_winograd, batch: chunk)),
                  DNNL.bytes(prim.desc(dnnl_query_weights_md)) <= winogradWeightLimit else { return nil }
            return (prim, chunk)
        }
        return nil
    }

    private init?(_ stages: [StageShape], algorithm: ConvChainAlgorithm, precision: Precision) {
        guard let ctx = DNNL.context, let first = stages.first, let last = stages.last else { return nil }
        let winograd = algorithm == .winograd || (algorithm == .automatic && DNNL.winogradByDefault)
        var steps: [Step] = [], layouts: [dnnl_memory_desc_t] = [], implementations: [String] = [], chunks: [Int] = []
        var current: dnnl_memory_desc_t? = nil        // the previous step's chosen output layout
        for (index, stage) in stages.enumerated() {
            if let s = stage.conv {
                // Candidates in order of preference; the first oneDNN builds a step for is taken (a Winograd
                // whose layout cannot be sliced by batch, or a bf16 kernel this CPU lacks, falls through).
                var candidates: [() -> (DNNLPrimitive, chunk: Int)?] = []
                if winograd, s.kh == 3, s.kw == 3, s.g.stride == (1, 1), s.g.dilation == (1, 1), s.c >= 16, s.o >= 16 {
                    candidates.append { Self.winograd(stage, s) }
                }
                if precision == .bf16 {
                    candidates.append {
                        guard let direct = DNNLPrimitive(Self.convolutionDesc(stage, s, algorithm: dnnl_convolution_direct, batch: s.n, type: dnnl_bf16)),
                              direct.implementation.contains("bf16") else { return nil }
                        return (direct, s.n)
                    }
                }
                candidates.append { DNNLPrimitive(Self.convolutionDesc(stage, s, algorithm: dnnl_convolution_direct, batch: s.n)).map { ($0, s.n) } }
                var built: ConvChainStep? = nil
                for candidate in candidates {
                    guard let (prim, chunk) = candidate() else { continue }
                    if let step = ConvChainStep(prim, chunks: s.n / chunk, stage: index, shape: stage) { built = step; break }
                }
                guard let step = built else { return nil }
                if let from = current, !DNNL.same(from, step.batchSrc) {
                    guard let move = DNNLPrimitive.reorder(from, step.batchSrc) else { return nil }
                    steps.append(.reorder(move)); layouts.append(step.batchSrc)
                }
                if current == nil { layouts.append(step.batchSrc) }
                steps.append(.conv(step))
                implementations.append(step.primitive.implementation); chunks.append(step.chunks)
                current = step.batchDst
            } else {
                var src = current ?? DNNL.desc(stage.inShape, dnnl_format_tag_any)
                var dst = DNNL.desc(stage.outShape, dnnl_format_tag_any, type: src.data_type)   // pooled in the type it comes in
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
        self.steps = steps; self.layouts = layouts; convImplementations = implementations; convChunks = chunks
        input = DNNLStaging(plain: DNNL.desc(first.inShape, dnnl_nchw), chosen: layouts[0], input: true, output: false)
        output = DNNLStaging(plain: DNNL.desc(last.outShape, dnnl_nchw), chosen: layouts[layouts.count - 1], input: false, output: true)
        outputShape = last.outShape
    }

    nonisolated(unsafe) private static var chains: [String: DNNLConvChain?] = [:]
    private static let lock = NSLock()

    static func chain(_ stages: [StageShape], algorithm: ConvChainAlgorithm = .automatic, precision: Precision = .fp32) -> DNNLConvChain? {
        guard DNNL.enabled, stages.allSatisfy({ $0.conv?.g.groups ?? 1 == 1 }) else { return nil }
        lock.lock(); defer { lock.unlock() }
        let key = "\(algorithm) \(precision) \(winogradScratchpadLimit) " + stages.map(\.key).joined(separator: " | ")
        if let cached = chains[key] { return cached }
        let built = DNNLConvChain(stages, algorithm: algorithm, precision: precision)
        chains[key] = .some(built)
        return built
    }

    /// Runs the chain on plain NCHW `x`, writing plain NCHW `out`; `params` are the convolution stages'
    /// weights (nil for poolings).
    func run(_ x: UnsafeMutablePointer<Float>, params: [StageWeights?], _ out: UnsafeMutablePointer<Float>) throws {
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
                case .conv(let conv):
                    guard let p = params[conv.stage] else { throw EngineError("conv chain: stage \(conv.stage) has no weights") }
                    try conv.run(src: current, dst: next, p)
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
    /// `algorithm`: `.automatic` (Winograd where it pays unless `EARSHOT_CONV_WINOGRAD=off`), `.direct` or
    /// `.winograd` (`DNNLConvChain`).
    ///
    /// `precision: .bf16` runs the direct convolutions (and the poolings after them) in bf16 where oneDNN has
    /// a bf16 kernel for this CPU (AVX512-BF16, AMX), weights rounded as they are reordered, activations
    /// between stages in bf16, fp32 accumulation, bias and output; Winograd stages stay fp32 (oneDNN has no
    /// bf16 Winograd, and on Zen 4 its fp32 Winograd is the faster of the two). Elsewhere, and for `.int8`, fp32.
    public func convChainInference(_ stages: [ConvChainStage], algorithm: ConvChainAlgorithm = .automatic,
                                   precision: Precision = .fp32) throws -> Tensor {
        var shapes: [DNNLConvChain.StageShape] = [], inShape = shape
        var params: [DNNLConvChain.StageWeights?] = []
        for stage in stages {
            switch stage {
            case .convReLU(let w, let b, let g), .scaledConvReLU(let w, _, let b, let g):
                let s = try ConvShape.checked(input: inShape, weight: w, bias: b, g)
                var scale: Tensor? = nil
                if case .scaledConvReLU(_, let sc, _, _) = stage {
                    try check(sc.shape == [s.o], "convChainInference: a scale of \(sc.shape) for a convolution of \(s.o) output channels")
                    scale = sc
                }
                shapes.append(.init(conv: s, pool: 1, inShape: inShape, outShape: [s.n, s.o, s.oh, s.ow], bias: b != nil, scaled: scale != nil))
                params.append(.init(weight: w, scale: scale, bias: b)); inShape = [s.n, s.o, s.oh, s.ow]
            case .avgPool(let k):
                if k == 1 { continue }
                try check(inShape.count == 4 && k >= 1 && inShape[2] >= k && inShape[3] >= k,
                          "convChainInference: \(k)x\(k) pooling of \(inShape)")
                let out = [inShape[0], inShape[1], inShape[2] / k, inShape[3] / k]
                shapes.append(.init(conv: nil, pool: k, inShape: inShape, outShape: out, bias: false))
                params.append(nil); inShape = out
            }
        }
        if let chain = DNNLConvChain.chain(shapes, algorithm: algorithm, precision: precision) {
            let out = Tensor.empty(chain.outputShape)
            if (try? chain.run(data, params: params, out.data)) != nil { return out }
        }
        return try GradMode.noGrad {
            var x = self
            for stage in stages {
                switch stage {
                case .convReLU(let w, let b, let g): x = try x.conv2dReLUInference(weight: w, bias: b, g)
                case .scaledConvReLU(let w, let scale, let b, let g):
                    x = try x.conv2dReLUInference(weight: w.scaledPerOutputChannel(scale), bias: b, g)
                case .avgPool(let k): if k > 1 { x = try x.avgPool2d(kernel: (k, k)) }
                }
            }
            return x
        }
    }
}

extension Tensor {
    /// W'_o = scale_o · W_o for a weight [O, ...] and scale [O], in pages of its own (returned to the system when
    /// dropped: the pool would keep every layer's size), no graph: a batch norm folded into a copy of a
    /// convolution's weight where no oneDNN reorder can apply the scale (`BatchNorm.folded(into:)`, the
    /// Winograd transform, the chain's stage-by-stage fallback).
    public func scaledPerOutputChannel(_ scale: Tensor) -> Tensor {
        let o = shape[0], perOutput = count / o
        precondition(scale.count == o, "scaledPerOutputChannel: \(scale.count) scales for \(o) outputs")
        let w = Tensor.pageBacked(shape)
        for c in 0..<o {
            let s = scale.data[c], from = data + c * perOutput, to = w.data + c * perOutput
            for i in 0..<perOutput { to[i] = from[i] * s }
        }
        return w
    }
}
