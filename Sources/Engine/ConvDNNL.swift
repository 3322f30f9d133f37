import CDNNL
import Foundation

/// conv2d through oneDNN: forward, backward data and backward weights, built once per shape and kept.
///
/// Tensors stay NCHW (OIHW weights) in the engine; each primitive is created with `format_tag_any` so
/// oneDNN picks its layout and kernel (on the AVX-512 hosts here: `brgconv:avx512_core` on channels-last
/// activations and Acdb32a/64a-blocked weights), and the plan reorders the plain tensors in and out
/// around the call (timings against im2col + GEMM and PyTorch: docs/PANNS.md). Shapes oneDNN rejects,
/// and grouped convolutions, keep the im2col path.
final class DNNLConvPlan: @unchecked Sendable {
    struct Backward {
        let data: DNNLPrimitive
        let dataDiffDst: DNNLStaging, dataWeights: DNNLStaging, diffSrc: DNNLStaging
        let weights: DNNLPrimitive
        let weightsSrc: DNNLStaging, weightsDiffDst: DNNLStaging, diffWeights: DNNLStaging
    }

    let shape: ConvShape
    let hasBias: Bool
    let forward: DNNLPrimitive
    let src: DNNLStaging, weights: DNNLStaging, dst: DNNLStaging
    let biasDesc: dnnl_memory_desc_t
    /// Built only for plans that record a graph (prop kind forward_training).
    let backward: Backward?

    private init?(_ s: ConvShape, bias: Bool, relu: Bool, training: Bool) {
        guard let ctx = DNNL.context else { return nil }
        guard let dims = Self.spatial(s) else { return nil }
        let padR = dims.padR
        shape = s; hasBias = bias
        let plainSrc = DNNL.desc([s.n, s.c, s.h, s.w], dnnl_nchw), plainDst = DNNL.desc([s.n, s.o, s.oh, s.ow], dnnl_nchw)
        let plainW = DNNL.desc([s.o, s.c, s.kh, s.kw], dnnl_oihw)
        biasDesc = DNNL.desc([s.o], dnnl_x)
        var srcAny = DNNL.desc([s.n, s.c, s.h, s.w], dnnl_format_tag_any)
        var wAny = DNNL.desc([s.o, s.c, s.kh, s.kw], dnnl_format_tag_any)
        var dstAny = DNNL.desc([s.n, s.o, s.oh, s.ow], dnnl_format_tag_any)
        // A zero descriptor disables the bias term.
        var biasMD = bias ? biasDesc : dnnl_memory_desc_t()

        var fd = dnnl_convolution_desc_t()
        guard dnnl_dilated_convolution_forward_desc_init(
            &fd, training ? dnnl_forward_training : dnnl_forward_inference, dnnl_convolution_direct,
            &srcAny, &wAny, &biasMD, &dstAny, dims.strides, dims.dilates, dims.padL, padR) == dnnl_success
        else { return nil }
        var attr: dnnl_primitive_attr_t?
        if relu {
            var postOps: dnnl_post_ops_t?
            guard dnnl_primitive_attr_create(&attr) == dnnl_success, dnnl_post_ops_create(&postOps) == dnnl_success else { return nil }
            _ = dnnl_post_ops_append_eltwise(postOps, 1, dnnl_eltwise_relu, 0, 0)
            _ = dnnl_primitive_attr_set_post_ops(attr, postOps)
            dnnl_post_ops_destroy(postOps)
        }
        defer { if let attr { dnnl_primitive_attr_destroy(attr) } }
        var fpd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&fpd, &fd, attr, ctx.engine, nil) == dnnl_success, let fwd = DNNLPrimitive(fpd) else { return nil }
        forward = fwd
        src = DNNLStaging(plain: plainSrc, chosen: fwd.desc(dnnl_query_src_md), input: true, output: false)
        weights = DNNLStaging(plain: plainW, chosen: fwd.desc(dnnl_query_weights_md), input: true, output: false)
        dst = DNNLStaging(plain: plainDst, chosen: fwd.desc(dnnl_query_dst_md), input: false, output: true)
        guard training else { backward = nil; return }

        var bd = dnnl_convolution_desc_t()
        guard dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &srcAny, &wAny, &dstAny,
                                                              dims.strides, dims.dilates, dims.padL, padR) == dnnl_success
        else { return nil }
        var bpd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&bpd, &bd, nil, ctx.engine, fwd.pd) == dnnl_success, let data = DNNLPrimitive(bpd) else { return nil }
        var wd = dnnl_convolution_desc_t()
        guard dnnl_dilated_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &srcAny, &wAny,
                                                                 &biasMD, &dstAny,
                                                                 dims.strides, dims.dilates, dims.padL, padR) == dnnl_success
        else { return nil }
        var wpd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&wpd, &wd, nil, ctx.engine, fwd.pd) == dnnl_success, let dw = DNNLPrimitive(wpd) else { return nil }
        backward = Backward(
            data: data,
            dataDiffDst: DNNLStaging(plain: plainDst, chosen: data.desc(dnnl_query_diff_dst_md), input: true, output: false),
            dataWeights: DNNLStaging(plain: plainW, chosen: data.desc(dnnl_query_weights_md), input: true, output: false),
            diffSrc: DNNLStaging(plain: plainSrc, chosen: data.desc(dnnl_query_diff_src_md), input: false, output: true),
            weights: dw,
            weightsSrc: DNNLStaging(plain: plainSrc, chosen: dw.desc(dnnl_query_src_md), input: true, output: false),
            weightsDiffDst: DNNLStaging(plain: plainDst, chosen: dw.desc(dnnl_query_diff_dst_md), input: true, output: false),
            diffWeights: DNNLStaging(plain: plainW, chosen: dw.desc(dnnl_query_diff_weights_md), input: false, output: true))
    }

    /// oneDNN's spatial arguments: dilations count the gaps (d − 1), and the right padding is what makes
    /// PyTorch's floor((H + 2p − d(k − 1) − 1) / s) + 1 outputs exact (nil if that would be negative).
    static func spatial(_ s: ConvShape) -> (strides: [Int64], dilates: [Int64], padL: [Int64], padR: [Int64])? {
        let g = s.g
        let r0 = (s.oh - 1) * g.stride.0 + (s.kh - 1) * g.dilation.0 + 1 - s.h - g.padding.0
        let r1 = (s.ow - 1) * g.stride.1 + (s.kw - 1) * g.dilation.1 + 1 - s.w - g.padding.1
        guard r0 >= 0 && r1 >= 0 else { return nil }
        return ([Int64(g.stride.0), Int64(g.stride.1)], [Int64(g.dilation.0 - 1), Int64(g.dilation.1 - 1)],
                [Int64(g.padding.0), Int64(g.padding.1)], [Int64(r0), Int64(r1)])
    }

    // MARK: Cache

    nonisolated(unsafe) private static var plans: [String: DNNLConvPlan?] = [:]
    private static let lock = NSLock()

    /// The plan for a shape (built on first use), or nil where oneDNN is off or rejects it: grouped
    /// convolutions keep im2col (none of the models here uses them on a hot path).
    static func plan(_ s: ConvShape, bias: Bool, relu: Bool = false, training: Bool) -> DNNLConvPlan? {
        guard DNNL.enabled, s.g.groups == 1 else { return nil }
        let key = "\(s.key) b\(bias) r\(relu) t\(training)"
        lock.lock(); defer { lock.unlock() }
        if let cached = plans[key] { return cached }
        let built = DNNLConvPlan(s, bias: bias, relu: relu, training: training)
        plans[key] = .some(built)
        return built
    }

    // MARK: Execution

    /// y = conv(x, w) + b (then ReLU if the plan fuses it), all plain NCHW / OIHW.
    func forward(x: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>?,
                 out: UnsafeMutablePointer<Float>) throws {
        try src.input(x) { xs in
            try weights.input(weight) { ws in
                try dst.output(out) { ys in
                    var args = [(DNNL_ARG_SRC, src.chosen, xs), (DNNL_ARG_WEIGHTS, weights.chosen, ws), (DNNL_ARG_DST, dst.chosen, ys)]
                    if let bias { args.append((DNNL_ARG_BIAS, biasDesc, UnsafeMutableRawPointer(bias))) }
                    try forward.execute(args)
                }
            }
        }
    }

    /// dL/dx from dL/dy and w.
    func backwardData(gradOut: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>, gradIn: UnsafeMutablePointer<Float>) throws {
        guard let b = backward else { throw EngineError("conv2d: oneDNN plan built without backward") }
        try b.dataDiffDst.input(gradOut) { gy in
            try b.dataWeights.input(weight) { ws in
                try b.diffSrc.output(gradIn) { gx in
                    try b.data.execute([(DNNL_ARG_DIFF_DST, b.dataDiffDst.chosen, gy), (DNNL_ARG_WEIGHTS, b.dataWeights.chosen, ws),
                                        (DNNL_ARG_DIFF_SRC, b.diffSrc.chosen, gx)])
                }
            }
        }
    }

    /// dL/dw (and dL/db) from x and dL/dy; overwrites `gradWeight` and `gradBias`.
    func backwardWeights(x: UnsafeMutablePointer<Float>, gradOut: UnsafeMutablePointer<Float>,
                         gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?) throws {
        guard let b = backward else { throw EngineError("conv2d: oneDNN plan built without backward") }
        let biasScratch = hasBias && gradBias == nil ? Tensor.empty([shape.o]) : nil
        try withExtendedLifetime(biasScratch) {
            try b.weightsSrc.input(x) { xs in
                try b.weightsDiffDst.input(gradOut) { gy in
                    try b.diffWeights.output(gradWeight) { gw in
                        var args = [(DNNL_ARG_SRC, b.weightsSrc.chosen, xs), (DNNL_ARG_DIFF_DST, b.weightsDiffDst.chosen, gy),
                                    (DNNL_ARG_DIFF_WEIGHTS, b.diffWeights.chosen, gw)]
                        if hasBias, let gb = gradBias ?? biasScratch?.data {
                            args.append((DNNL_ARG_DIFF_BIAS, biasDesc, UnsafeMutableRawPointer(gb)))
                        }
                        try b.weights.execute(args)
                    }
                }
            }
        }
    }

    /// Which kernels oneDNN chose (for benchmarks and docs).
    var implementations: String {
        [forward.implementation, backward?.data.implementation, backward?.weights.implementation].compactMap { $0 }.joined(separator: " / ")
    }
}

extension ConvShape {
    /// Identifies a convolution's shape and geometry (the primitive caches' key).
    var key: String {
        "\(n),\(c),\(h),\(w)>\(o),\(kh),\(kw) s\(g.stride) p\(g.padding) d\(g.dilation) g\(g.groups)"
    }
}

extension Tensor {
    /// ReLU(conv2d(x, w) + b) for inference (no graph is recorded): one oneDNN call with the ReLU as a
    /// post-op on the output while it is in cache, or conv2d then ReLU where oneDNN is off or declines.
    /// With a batch norm folded into `weight` and `bias` this is a whole conv → BN → ReLU in eval mode.
    public func conv2dReLUInference(weight: Tensor, bias: Tensor?, _ geometry: Conv2dGeometry = .init()) throws -> Tensor {
        let s = try convShape(weight: weight, bias: bias, geometry)
        return try GradMode.noGrad {
            if let plan = DNNLConvPlan.plan(s, bias: bias != nil, relu: true, training: false) {
                let out = Tensor.empty([s.n, s.o, s.oh, s.ow])
                if (try? plan.forward(x: data, weight: weight.data, bias: bias?.data, out: out.data)) != nil { return out }
            }
            return try conv2d(weight: weight, bias: bias, geometry).relu()
        }
    }
}
