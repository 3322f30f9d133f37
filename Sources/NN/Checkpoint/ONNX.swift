import Engine
import Foundation

/// Writing ONNX models (the `onnx.proto` wire format, opset 17) without a protobuf library: a model
/// is a few nested messages of varints, strings and raw little-endian tensors, so an encoder of those
/// is all it takes. `ONNXGraph` collects nodes and initialisers as a model family's exporter walks its
/// forward pass; `model(...)` serialises the whole `ModelProto`.
///
/// Field numbers are onnx.proto's: ModelProto {ir_version 1, producer_name 2, producer_version 3,
/// graph 7, opset_import 8, metadata_props 14}; GraphProto {node 1, name 2, initializer 5, input 11,
/// output 12}; NodeProto {input 1, output 2, name 3, op_type 4, attribute 5}; AttributeProto {name 1,
/// f 2, i 3, s 4, g 6, ints 8, type 20}; TensorProto {dims 1, data_type 2, name 8, raw_data 9}; ValueInfoProto
/// {name 1, type 2}; TypeProto {tensor_type 1}; TypeProto.Tensor {elem_type 1, shape 2};
/// TensorShapeProto {dim 1}; Dimension {dim_value 1, dim_param 2}; StringStringEntryProto {key 1, value 2}.
public final class ONNXGraph {
    /// ONNX's opset this writer's nodes follow (LayerNormalization needs 17; ReduceMean still takes
    /// `axes` as an attribute there).
    public static let opset = 17
    /// IR version 8 goes with opset 17.
    public static let irVersion = 8

    public enum Attribute {
        case float(String, Float)
        case int(String, Int)
        case ints(String, [Int])
        case string(String, String)
        /// A subgraph (a Scan's body): the serialised `GraphProto` of `ONNXGraph.graph(...)`.
        case graph(String, Data)
    }

    /// A dimension of a graph input or output: fixed, or named and free (the batch).
    public enum Dimension { case fixed(Int), named(String) }

    /// Outputs an exporter adds beside the logits and the embedding (a decision-level PANNs' frame-wise
    /// scores): name, value and dimensions; the model writer declares them after those two.
    public var extraOutputs: [(name: String, value: String, dims: [Dimension])] = []
    /// Each node's serialised proto with the values it reads and writes (for pruning what no output needs).
    /// Graph inputs that are int64 (token ids, masks) rather than float32, by name.
    public var int64Inputs: Set<String> = []
    private var nodes: [(proto: Data, inputs: [String], outputs: [String])] = []
    private var initialisers: [(proto: Data, name: String)] = []
    private var counter = 0
    private var names: Set<String> = []
    /// In front of every fresh name: a subgraph's names must differ from its outer graph's (ONNX values
    /// are named once across all scopes).
    private let prefix: String

    public init() { prefix = "" }

    /// A graph to serialise as a subgraph (`graph(...)`) of this one: its fresh names are set apart
    /// from this graph's (and every other subgraph's) by a prefix, `hint` in it.
    public func subgraph(_ hint: String) -> ONNXGraph {
        ONNXGraph(prefix: fresh(hint) + "/")
    }

    /// A fresh name for a value no node of this graph writes: a subgraph's input.
    public func input(_ hint: String) -> String { fresh(hint) }

    private init(prefix: String) { self.prefix = prefix }

    /// A fresh value name with `hint` in it.
    private func fresh(_ hint: String) -> String {
        counter += 1
        return "\(prefix)\(hint)_\(counter)"
    }

    /// A float initialiser holding `tensor`'s values (contiguous, row-major), named `name` where that is
    /// free (the checkpoint key, so a reader can tell which weight it is), else a fresh name.
    @discardableResult
    public func weight(_ tensor: Tensor, name: String) -> String {
        initialiser(tensor, fullName: names.contains(prefix + name) ? fresh(name) : prefix + name)
    }

    private func initialiser(_ tensor: Tensor, fullName n: String) -> String {
        names.insert(n)
        let raw = Data(bytes: tensor.data, count: tensor.count * MemoryLayout<Float>.size)   // x86 and arm64 are little-endian, as ONNX's raw_data
        initialisers.append((Self.tensorProto(name: n, dims: tensor.shape, type: 1, raw: raw), n))
        return n
    }

    /// An int64 initialiser (shapes, axes, indices).
    public func int64s(_ values: [Int], dims: [Int]? = nil, name: String = "const") -> String {
        let n = fresh(name)
        names.insert(n)
        var raw = Data(capacity: values.count * 8)
        for v in values { withUnsafeBytes(of: Int64(v).littleEndian) { raw.append(contentsOf: $0) } }
        initialisers.append((Self.tensorProto(name: n, dims: dims ?? [values.count], type: 7, raw: raw), n))
        return n
    }

    /// A float scalar initialiser.
    public func scalar(_ value: Float, name: String = "scalar") -> String {
        initialiser(Tensor.scalar(value), fullName: fresh(name))
    }

    /// Appends a node and returns its (first) output's name.
    @discardableResult
    public func node(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], outputs count: Int = 1, name hint: String? = nil) -> String {
        nodes(op, inputs, attributes, outputs: count, name: hint)[0]
    }

    /// Appends a node with `count` outputs and returns their names.
    public func nodes(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], outputs count: Int, name hint: String? = nil) -> [String] {
        let outs = (0..<count).map { _ in fresh(hint ?? op.lowercased()) }
        var m = Data()
        for i in inputs { m.field(1, string: i) }
        for o in outs { m.field(2, string: o) }
        m.field(3, string: fresh("node"))
        m.field(4, string: op)
        for a in attributes { m.field(5, message: Self.attributeProto(a)) }
        nodes.append((m, inputs, outs))
        return outs
    }

    /// Renames a value by an Identity node (graph outputs get the names a user reads them by).
    public func output(_ value: String, as name: String) {
        var m = Data()
        m.field(1, string: value)
        m.field(2, string: name)
        m.field(3, string: fresh("node"))
        m.field(4, string: "Identity")
        nodes.append((m, [value], [name]))
    }

    /// The serialised `ModelProto`: float32 inputs and outputs with the given shapes, metadata as
    /// string pairs (`metadata_props`).
    public func model(name: String, inputs: [(String, [Dimension])], outputs: [(String, [Dimension])], metadata: [String: String],
                      producer: String = "earshot") -> Data {
        let graph = graph(name: name, inputs: inputs, outputs: outputs)
        var opset = Data()
        opset.field(1, string: "")
        opset.field(2, varint: UInt64(Self.opset))
        var model = Data()
        model.field(1, varint: UInt64(Self.irVersion))
        model.field(2, string: producer)
        model.field(3, string: "1")
        model.field(7, message: graph)
        model.field(8, message: opset)
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) {
            var entry = Data()
            entry.field(1, string: k)
            entry.field(2, string: v)
            model.field(14, message: entry)
        }
        return model
    }

    /// The serialised `GraphProto` alone: the model's graph, or a subgraph for an attribute
    /// (`Attribute.graph`), whose inputs and outputs are named as its nodes read and write them.
    public func graph(name: String, inputs: [(String, [Dimension])], outputs: [(String, [Dimension])]) -> Data {
        // Only what the outputs need: an exporter may write nodes a graph then leaves unread (an encoder-only
        // export's head). A subgraph (a Scan body) reads its own inputs only, so its node's inputs say all.
        var needed = Set(outputs.map(\.0))
        var kept: [Data] = []
        for n in nodes.reversed() where n.outputs.contains(where: needed.contains) {
            kept.append(n.proto)
            needed.formUnion(n.inputs)
        }
        var graph = Data()
        for n in kept.reversed() { graph.field(1, message: n) }
        graph.field(2, string: name)
        for t in initialisers where needed.contains(t.name) { graph.field(5, message: t.proto) }
        for (n, dims) in inputs { graph.field(11, message: Self.valueInfo(n, dims, type: int64Inputs.contains(n) ? 7 : 1)) }
        for (n, dims) in outputs { graph.field(12, message: Self.valueInfo(n, dims)) }
        return graph
    }

    static func tensorProto(name: String, dims: [Int], type: Int, raw: Data) -> Data {
        var t = Data()
        for d in dims { t.field(1, varint: UInt64(d)) }
        t.field(2, varint: UInt64(type))
        t.field(8, string: name)
        t.field(9, bytes: raw)
        return t
    }

    static func attributeProto(_ a: Attribute) -> Data {
        var m = Data()
        switch a {
        case .float(let name, let f):
            m.field(1, string: name)
            m.tag(2, wire: 5)
            withUnsafeBytes(of: f.bitPattern.littleEndian) { m.append(contentsOf: $0) }
            m.field(20, varint: 1)
        case .int(let name, let i):
            m.field(1, string: name)
            m.field(3, varint: UInt64(bitPattern: Int64(i)))
            m.field(20, varint: 2)
        case .ints(let name, let values):
            m.field(1, string: name)
            for v in values { m.field(8, varint: UInt64(bitPattern: Int64(v))) }
            m.field(20, varint: 7)
        case .string(let name, let value):
            m.field(1, string: name)
            m.field(4, string: value)
            m.field(20, varint: 3)
        case .graph(let name, let body):
            m.field(1, string: name)
            m.field(6, message: body)
            m.field(20, varint: 5)
        }
        return m
    }

    /// `type`: ONNX's element type (1 FLOAT, 7 INT64).
    static func valueInfo(_ name: String, _ dims: [Dimension], type elementType: Int = 1) -> Data {
        var shape = Data()
        for d in dims {
            var dim = Data()
            switch d {
            case .fixed(let n): dim.field(1, varint: UInt64(n))
            case .named(let s): dim.field(2, string: s)
            }
            shape.field(1, message: dim)
        }
        var tensorType = Data()
        tensorType.field(1, varint: UInt64(elementType))
        tensorType.field(2, message: shape)
        var type = Data()
        type.field(1, message: tensorType)
        var info = Data()
        info.field(1, string: name)
        info.field(2, message: type)
        return info
    }
}

/// Protocol-buffer wire encoding: a key is (field << 3) | wire type; 0 = varint, 2 = length-delimited,
/// 5 = 32-bit.
extension Data {
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        append(UInt8(v))
    }

    mutating func tag(_ field: Int, wire: Int) { varint(UInt64(field << 3 | wire)) }

    mutating func field(_ number: Int, varint value: UInt64) { tag(number, wire: 0); varint(value) }

    mutating func field(_ number: Int, bytes: Data) { tag(number, wire: 2); varint(UInt64(bytes.count)); append(bytes) }

    mutating func field(_ number: Int, string: String) { field(number, bytes: Data(string.utf8)) }

    mutating func field(_ number: Int, message: Data) { field(number, bytes: message) }
}

// MARK: Stock layers as ONNX nodes

extension ONNXGraph {
    /// x · Wᵀ + b (`Linear`), the weight stored transposed ([in, out]) for MatMul; `key` names it.
    /// A subclass (an unmerged LoRA, a reduced-precision copy) is refused: its extra terms would be lost.
    public func linear(_ x: String, _ layer: Linear, key: String) throws -> String {
        guard type(of: layer) == Linear.self else {
            throw NNError("ONNX export: \(key) is a \(type(of: layer)), not a plain Linear (a run's LoRA is merged when it loads; export the loaded run)")
        }
        let w = weight(try layer.weight.transpose(0, 1), name: key + ".weight")
        let y = node("MatMul", [x, w])
        guard let bias = layer.bias else { return y }
        return node("Add", [y, weight(bias, name: key + ".bias")])
    }

    /// LayerNormalization over the last axis with the layer's eps.
    public func layerNorm(_ x: String, _ layer: LayerNorm, key: String, width: Int) -> String {
        let scale = weight(layer.weight ?? Tensor.ones([width]), name: key + ".weight")
        let shift = weight(layer.bias ?? Tensor.zeros([width]), name: key + ".bias")
        return node("LayerNormalization", [x, scale, shift], [.int("axis", -1), .float("epsilon", layer.eps)])
    }

    /// Exact GELU, x · ½(1 + erf(x / √2)) (ONNX's own Gelu needs opset 20).
    public func gelu(_ x: String) -> String {
        let e = node("Erf", [node("Div", [x, scalar(Float(2).squareRoot())])])
        return node("Mul", [node("Mul", [x, node("Add", [e, scalar(1)])]), scalar(0.5)])
    }

    /// Multi-head self-attention with a fused qkv projection on x [B, L, D]:
    /// softmax(Q Kᵀ / √d_head) V, heads concatenated, then the output projection.
    public func selfAttention(_ x: String, _ attn: MultiHeadAttention, key: String, width: Int) throws -> String {
        guard let qkv = attn.qkv else { throw NNError("\(key): ONNX export needs a fused qkv projection") }
        let heads = attn.heads, dh = width / heads
        let packed = node("Reshape", [try linear(x, qkv, key: key + ".qkv"), int64s([0, 0, 3, heads, dh])])
        let split = node("Transpose", [packed], [.ints("perm", [2, 0, 3, 1, 4])])   // [3, B, H, L, dh]
        let (q, k, v) = (node("Gather", [split, int64s([0], dims: [])], [.int("axis", 0)]),
                         node("Gather", [split, int64s([1], dims: [])], [.int("axis", 0)]),
                         node("Gather", [split, int64s([2], dims: [])], [.int("axis", 0)]))
        let scores = node("MatMul", [node("Mul", [q, scalar(1 / Float(dh).squareRoot())]), node("Transpose", [k], [.ints("perm", [0, 1, 3, 2])])])
        let mixed = node("MatMul", [node("Softmax", [scores], [.int("axis", -1)]), v])
        let joined = node("Reshape", [node("Transpose", [mixed], [.ints("perm", [0, 2, 1, 3])]), int64s([0, 0, width])])
        return try linear(joined, attn.proj, key: key + ".proj")
    }

    /// The tanh approximation, ½x(1 + tanh(√(2/π)(x + 0.044715 x³))), as `gelu(approximate: true)`.
    public func approximateGELU(_ x: String) -> String {
        let cubic = node("Mul", [node("Mul", [node("Mul", [x, x]), x]), scalar(0.044715)])
        let inner = node("Mul", [node("Add", [x, cubic]), scalar(Float((2 / Double.pi).squareRoot()))])
        return node("Mul", [node("Mul", [x, node("Add", [node("Tanh", [inner]), scalar(1)])]), scalar(0.5)])
    }
}

extension ONNXGraph {
    /// `Conv2d` as Conv (NCHW, its stride, padding, dilation and groups).
    public func conv2d(_ x: String, _ layer: Conv2d, key: String) -> String {
        let g = layer.geometry, w = layer.weight
        var inputs = [x, weight(w, name: key + ".weight")]
        if let bias = layer.bias { inputs.append(weight(bias, name: key + ".bias")) }
        return node("Conv", inputs, [.ints("kernel_shape", [w.shape[2], w.shape[3]]), .ints("strides", [g.stride.0, g.stride.1]),
                                     .ints("pads", [g.padding.0, g.padding.1, g.padding.0, g.padding.1]),
                                     .ints("dilations", [g.dilation.0, g.dilation.1]), .int("group", g.groups)])
    }

    /// `BatchNorm` at inference (its running statistics) over axis 1, as BatchNormalization.
    public func batchNorm(_ x: String, _ layer: BatchNorm, key: String) -> String {
        node("BatchNormalization", [x, weight(layer.weight, name: key + ".weight"), weight(layer.bias, name: key + ".bias"),
                                    weight(layer.runningMean, name: key + ".running_mean"), weight(layer.runningVar, name: key + ".running_var")],
             [.float("epsilon", layer.eps)])
    }
}
