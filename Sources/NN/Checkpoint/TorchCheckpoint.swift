import Engine
import Foundation

/// Reads PyTorch `.pth`/`.pt` state dicts (`torch.save` zip format) without Python, through a
/// restricted unpickler: it understands dicts, OrderedDicts, tuples, lists, numbers, strings and
/// tensors rebuilt from storages, and rejects any other global (code execution in a pickle is how
/// malicious checkpoints work), naming it.
public enum TorchCheckpoint {
    public static func read(_ url: URL) throws -> [String: Tensor] {
        let file = try MappedFile.map(url, what: "PyTorch checkpoint")
        let zip = try ZipArchive(file.data, name: url.path)
        guard let pkl = zip.entries.keys.first(where: { $0.hasSuffix("/data.pkl") || $0 == "data.pkl" }) else {
            throw NNError("\(url.path): no data.pkl in the archive (legacy non-zip torch.save files are not supported)")
        }
        let prefix = String(pkl.dropLast("data.pkl".count))
        var unpickler = Unpickler(bytes: [UInt8](try zip.contents(pkl)), name: url.path, releaseCopiedPages: file.mapped) { key, dtype, numel in
            let raw = try zip.contents("\(prefix)data/\(key)")
            guard raw.count >= numel * dtype.size else {
                throw NNError("\(url.path): storage \(key) holds \(raw.count) bytes, expected \(numel * dtype.size)")
            }
            return (raw, dtype)
        }
        let root = try unpickler.run()
        var out: [String: Tensor] = [:]
        func collect(_ v: PickleValue, _ path: String) throws {
            switch v {
            case .tensor(let t): out[path] = t
            case .dict(let pairs):
                for (k, value) in pairs {
                    guard case .string(let key) = k else { continue }
                    try collect(value, path.isEmpty ? key : "\(path).\(key)")
                }
            default: break
            }
        }
        try collect(root, "")
        // Checkpoints that wrap the state dict ({"model": ..., "optimizer": ...}) keep their prefix;
        // a plain state dict comes back with its own keys.
        guard !out.isEmpty else { throw NNError("\(url.path): the pickle holds no tensors") }
        return out
    }
}

enum TorchDType {
    case f32, f64, f16, bf16, i64, i32, i16, i8, u8, bool
    var size: Int { switch self { case .f64, .i64: 8; case .f32, .i32: 4; case .f16, .bf16, .i16: 2; case .i8, .u8, .bool: 1 } }

    init?(storage name: String) {
        switch name {
        case "FloatStorage": self = .f32
        case "DoubleStorage": self = .f64
        case "HalfStorage": self = .f16
        case "BFloat16Storage": self = .bf16
        case "LongStorage": self = .i64
        case "IntStorage": self = .i32
        case "ShortStorage": self = .i16
        case "CharStorage": self = .i8
        case "ByteStorage": self = .u8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }

    func read(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        switch self {
        case .f32: Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        case .f64: Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
        case .f16: SafeTensors.halfToFloat(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .bf16: Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
        case .i64: Float(Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
        case .i32: Float(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
        case .i16: Float(Int16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
        case .i8: Float(p.load(fromByteOffset: i, as: Int8.self))
        case .u8, .bool: Float(p.load(fromByteOffset: i, as: UInt8.self))
        }
    }
}

indirect enum PickleValue {
    case none, bool(Bool), int(Int), float(Double), string(String)
    case tuple([PickleValue]), list([PickleValue]), dict([(PickleValue, PickleValue)])
    case global(String, String)
    case storage(Data, TorchDType)
    case tensor(Tensor)
    case mark
}

/// The pickle VM subset that `torch.save` state dicts use (protocols 2-5).
struct Unpickler {
    let bytes: [UInt8]
    let name: String
    let loadStorage: (String, TorchDType, Int) throws -> (Data, TorchDType)
    var pos = 0
    var stack: [PickleValue] = []
    var memo: [Int: PickleValue] = [:]

    /// Storages are slices of a `MappedFile`: a tensor's pages are handed back once copied.
    let releaseCopiedPages: Bool

    init(bytes: [UInt8], name: String, releaseCopiedPages: Bool = false,
         loadStorage: @escaping (String, TorchDType, Int) throws -> (Data, TorchDType)) {
        self.bytes = bytes; self.name = name; self.releaseCopiedPages = releaseCopiedPages; self.loadStorage = loadStorage
    }

    static let allowedGlobals: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_tensor", "builtins.dict",
    ]

    func fail(_ message: String) -> NNError { NNError("\(name): \(message) (pickle byte \(pos))") }

    mutating func byte() throws -> UInt8 {
        guard pos < bytes.count else { throw fail("truncated pickle") }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, pos + n <= bytes.count else { throw fail("truncated pickle") }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }

    mutating func uint(_ n: Int) throws -> Int {
        try take(n).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    }

    mutating func line() throws -> String {
        guard let end = bytes[pos...].firstIndex(of: 0x0A) else { throw fail("truncated pickle") }
        defer { pos = end + 1 }
        return String(decoding: bytes[pos..<end], as: UTF8.self)
    }

    mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw fail("stack underflow") }
        return v
    }

    mutating func popMark() throws -> [PickleValue] {
        guard let m = stack.lastIndex(where: { if case .mark = $0 { return true }; return false }) else { throw fail("no mark") }
        let items = Array(stack[(m + 1)...])
        stack.removeSubrange(m...)
        return items
    }

    mutating func run() throws -> PickleValue {
        while true {
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()                                   // PROTO
            case 0x95: _ = try take(8)                                  // FRAME
            case 0x2E: return try pop()                                 // STOP
            case 0x7D: stack.append(.dict([]))                          // EMPTY_DICT
            case 0x5D: stack.append(.list([]))                          // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))                         // EMPTY_TUPLE
            case 0x28: stack.append(.mark)                              // MARK
            case 0x4E: stack.append(.none)                              // NONE
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x4B: stack.append(.int(try uint(1)))                  // BININT1
            case 0x4D: stack.append(.int(try uint(2)))                  // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))  // BININT
            case 0x8A:                                                  // LONG1
                let n = Int(try byte())
                let raw = try take(n)
                var v = 0
                for (i, b) in raw.enumerated() where i < 8 { v |= Int(b) << (8 * i) }
                if n > 0, n < 8, raw.last! & 0x80 != 0 { v -= 1 << (8 * n) }
                stack.append(.int(v))
            case 0x47:                                                  // BINFLOAT (big-endian)
                let raw = try take(8)
                stack.append(.float(Double(bitPattern: raw.reduce(0) { $0 << 8 | UInt64($1) })))
            case 0x58: stack.append(.string(String(decoding: try take(try uint(4)), as: UTF8.self)))   // BINUNICODE
            case 0x8C: stack.append(.string(String(decoding: try take(Int(try byte())), as: UTF8.self)))  // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(String(decoding: try take(try uint(8)), as: UTF8.self)))   // BINUNICODE8
            case 0x55: stack.append(.string(String(decoding: try take(Int(try byte())), as: UTF8.self)))  // SHORT_BINSTRING
            case 0x71: memo[try uint(1)] = stack.last                   // BINPUT
            case 0x72: memo[try uint(4)] = stack.last                   // LONG_BINPUT
            case 0x94: memo[memo.count] = stack.last                    // MEMOIZE
            case 0x68: stack.append(try memoValue(try uint(1)))         // BINGET
            case 0x6A: stack.append(try memoValue(try uint(4)))         // LONG_BINGET
            case 0x74: stack.append(.tuple(try popMark()))              // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))                // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))
            case 0x63:                                                  // GLOBAL
                let module = try line(), attr = try line()
                try checkGlobal(module, attr)
                stack.append(.global(module, attr))
            case 0x93:                                                  // STACK_GLOBAL
                guard case .string(let attr) = try pop(), case .string(let module) = try pop() else { throw fail("bad STACK_GLOBAL") }
                try checkGlobal(module, attr)
                stack.append(.global(module, attr))
            case 0x51:                                                  // BINPERSID
                stack.append(try persistentLoad(try pop()))
            case 0x52:                                                  // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args))
            case 0x62: _ = try pop()                                    // BUILD: object state (e.g. _metadata) is dropped
            case 0x73:                                                  // SETITEM
                let v = try pop(), k = try pop()
                guard case .dict(var pairs) = try pop() else { throw fail("SETITEM on a non-dict") }
                pairs.append((k, v)); stack.append(.dict(pairs))
            case 0x75:                                                  // SETITEMS
                let items = try popMark()
                guard case .dict(var pairs) = try pop() else { throw fail("SETITEMS on a non-dict") }
                guard items.count % 2 == 0 else { throw fail("odd SETITEMS") }
                for i in stride(from: 0, to: items.count, by: 2) { pairs.append((items[i], items[i + 1])) }
                stack.append(.dict(pairs))
            case 0x61:                                                  // APPEND
                let v = try pop()
                guard case .list(var l) = try pop() else { throw fail("APPEND on a non-list") }
                l.append(v); stack.append(.list(l))
            case 0x65:                                                  // APPENDS
                let items = try popMark()
                guard case .list(var l) = try pop() else { throw fail("APPENDS on a non-list") }
                l += items; stack.append(.list(l))
            default:
                throw fail(String(format: "unsupported pickle opcode 0x%02x (only state dicts are accepted)", op))
            }
        }
    }

    func memoValue(_ i: Int) throws -> PickleValue {
        guard let v = memo[i] else { throw fail("memo \(i) missing") }
        return v
    }

    func checkGlobal(_ module: String, _ attr: String) throws {
        let full = "\(module).\(attr)"
        if Self.allowedGlobals.contains(full) { return }
        if module == "torch", TorchDType(storage: attr) != nil { return }
        throw fail("refusing global \(full): only state dicts (tensors, dicts, numbers, strings) are accepted")
    }

    mutating func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case .tuple(let t) = pid, t.count >= 5, case .string("storage") = t[0],
              case .global(_, let typeName) = t[1], case .string(let key) = t[2], case .int(let numel) = t[4],
              let dtype = TorchDType(storage: typeName) else {
            throw fail("unsupported persistent id (expected a torch storage)")
        }
        let (data, dt) = try loadStorage(key, dtype, numel)
        return .storage(data, dt)
    }

    func ints(_ v: PickleValue) throws -> [Int] {
        guard case .tuple(let items) = v else { throw fail("expected a tuple of sizes") }
        return try items.map { guard case .int(let i) = $0 else { throw fail("expected an integer size") }; return i }
    }

    func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let module, let attr) = callable, case .tuple(let a) = args else { throw fail("unsupported REDUCE") }
        switch "\(module).\(attr)" {
        case "collections.OrderedDict", "builtins.dict": return .dict([])
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let first = a.first else { throw fail("empty _rebuild_parameter") }
            return first
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard a.count >= 4, case .storage(let data, let dtype) = a[0], case .int(let offset) = a[1] else {
                throw fail("malformed _rebuild_tensor_v2 arguments")
            }
            let size = try ints(a[2]), stride = try ints(a[3])
            guard size.count == stride.count, size.allSatisfy({ $0 >= 0 }) else { throw fail("tensor size \(size) and stride \(stride) disagree") }
            let t = Tensor.pageBacked(size)   // released to the system, not the pool, once a model has copied it
            let count = t.count
            // Highest element index touched must lie inside the storage.
            let last = offset + zip(size, stride).reduce(0) { $0 + max($1.0 - 1, 0) * $1.1 }
            guard count == 0 || (offset >= 0 && last < data.count / dtype.size) else { throw fail("tensor view exceeds its storage") }
            // Row-major stride: the usual layout of a saved parameter.
            var contiguous = true, expected = 1
            for d in size.indices.reversed() where size[d] > 1 {
                if stride[d] != expected { contiguous = false }
                expected *= size[d]
            }
            data.withUnsafeBytes { raw in
                let base = raw.baseAddress!
                if contiguous && dtype == .f32 && count > 0 {
                    // A float32 run copies as it is (little-endian, like every platform this builds for):
                    // the element loop below cost a base AST a second of loading.
                    UnsafeMutableRawPointer(t.data).copyMemory(from: base + 4 * offset, byteCount: 4 * count)
                    if releaseCopiedPages { MappedFile.releasePages(base + 4 * offset, count: 4 * count) }
                    return
                }
                var index = [Int](repeating: 0, count: size.count)
                for i in 0..<count {
                    var src = offset
                    for d in 0..<size.count { src += index[d] * stride[d] }
                    t.data[i] = dtype.read(base, src)
                    var d = size.count - 1
                    while d >= 0 { index[d] += 1; if index[d] < size[d] { break }; index[d] = 0; d -= 1 }
                }
            }
            return .tensor(t)
        default:
            throw fail("refusing to call \(module).\(attr)")
        }
    }
}
