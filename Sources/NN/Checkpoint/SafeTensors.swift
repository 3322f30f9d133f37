import Engine
import Foundation

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping names to
/// {dtype, shape, data_offsets} (plus optional "__metadata__" of strings), then raw little-endian data.
/// Reading memory-maps the file; every malformed case is an error naming the file and the key.
public enum SafeTensors {
    public struct File {
        public var tensors: [String: Tensor]
        public let metadata: [String: String]
        /// Keys in file order of their data.
        public let keys: [String]

        /// The tensors, left out of the file from now on, so a consuming load (`Module.load(consuming:)`)
        /// frees each as soon as it is copied.
        public mutating func takeTensors() -> [String: Tensor] {
            defer { tensors = [:] }
            return tensors
        }
    }

    enum DType: String {
        case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
        var size: Int {
            switch self { case .f64, .i64: 8; case .f32, .i32: 4; case .f16, .bf16, .i16: 2; case .i8, .u8, .bool: 1 }
        }
    }

    public static func read(_ url: URL) throws -> File {
        let file = try MappedFile.map(url, what: "safetensors file")
        return try parse(file.data, name: url.path, releaseCopiedPages: file.mapped)
    }

    /// `releaseCopiedPages` only for data that is a `MappedFile` (`read`): the pages of each tensor are
    /// dropped after it is copied.
    public static func parse(_ data: Data, name: String, releaseCopiedPages: Bool = false) throws -> File {
        guard data.count >= 8 else { throw NNError("\(name): not a safetensors file: \(data.count) bytes, too short for a header") }
        let headerLength = data.withUnsafeBytes { raw in UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(data.count - 8), headerLength < 100_000_000 else {
            throw NNError("\(name): truncated or corrupt safetensors: header claims \(headerLength) bytes, file has \(data.count - 8) after the length")
        }
        let headerData = data.subdata(in: 8..<(8 + Int(headerLength)))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw NNError("\(name): corrupt safetensors: header is not a JSON object")
        }
        let base = 8 + Int(headerLength)
        let available = data.count - base
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        var order: [(Int, String)] = []
        for (key, value) in header {
            if key == "__metadata__" {
                guard let m = value as? [String: Any] else { throw NNError("\(name): __metadata__ is not an object") }
                for (k, v) in m { metadata[k] = v as? String ?? "\(v)" }
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shapeAny = entry["shape"] as? [Any],
                  let offsetsAny = entry["data_offsets"] as? [Any], offsetsAny.count == 2 else {
                throw NNError("\(name): tensor '\(key)': header entry needs dtype, shape and two data_offsets")
            }
            guard let dtype = DType(rawValue: dtypeName) else { throw NNError("\(name): tensor '\(key)': unsupported dtype \(dtypeName)") }
            let shape = shapeAny.compactMap { ($0 as? NSNumber)?.intValue }
            let offsets = offsetsAny.compactMap { ($0 as? NSNumber)?.intValue }
            guard shape.count == shapeAny.count, shape.allSatisfy({ $0 >= 0 }), offsets.count == 2 else {
                throw NNError("\(name): tensor '\(key)': shape and data_offsets must be non-negative integers")
            }
            let n = shape.reduce(1, *)
            guard offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] - offsets[0] == n * dtype.size else {
                throw NNError("\(name): tensor '\(key)': data_offsets \(offsets) do not hold \(n) \(dtypeName) values for shape \(shape)")
            }
            guard offsets[1] <= available else {
                throw NNError("\(name): truncated safetensors: tensor '\(key)' ends at byte \(offsets[1]) of data but only \(available) are present")
            }
            let t = Tensor.pageBacked(shape)   // released to the system, not the pool, once a model has copied it
            data.withUnsafeBytes { raw in
                let src = raw.baseAddress! + base + offsets[0]
                convert(src, dtype, t.data, n)
                if releaseCopiedPages { MappedFile.releasePages(src, count: offsets[1] - offsets[0]) }
            }
            tensors[key] = t
            order.append((offsets[0], key))
        }
        return File(tensors: tensors, metadata: metadata, keys: order.sorted { $0.0 < $1.0 }.map(\.1))
    }

    static func convert(_ src: UnsafeRawPointer, _ dtype: DType, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        switch dtype {
        #if _endian(little)
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: 4 * n)   // the file's layout is ours
        #else
        case .f32: for i in 0..<n { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        #endif
        case .f64: for i in 0..<n { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case .f16: for i in 0..<n { dst[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .bf16: for i in 0..<n { dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
        case .i64: for i in 0..<n { dst[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .i32: for i in 0..<n { dst[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .i16: for i in 0..<n { dst[i] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .i8: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .u8, .bool: for i in 0..<n { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        }
    }

    /// IEEE half to single, including subnormals, infinities and NaN.
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int(h >> 10) & 0x1F
        let mant = UInt32(h & 0x3FF)
        if exp == 0 {
            let v = Float(mant) * Float(sign == 0 ? 1 : -1) / 16_777_216  // mant * 2^-24
            return v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | UInt32(exp + 112) << 23 | (mant << 13))
    }

    /// Serialises tensors (F32; keys in `integerKeys` as I64, e.g. BatchNorm's num_batches_tracked).
    /// `float16` stores the floating-point tensors as IEEE half (F16, round to nearest even): half the
    /// bytes, for weights that ship (`pretrained/`); readers widen them back to Float32.
    public static func serialize(_ tensors: [String: Tensor], metadata: [String: String] = [:],
                                 integerKeys: Set<String> = [], float16: Bool = false) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let keys = tensors.keys.sorted()
        let floatType = float16 ? "F16" : "F32", floatSize = float16 ? 2 : 4
        for key in keys {
            let t = tensors[key]!
            let integer = integerKeys.contains(key)
            let size = t.count * (integer ? 8 : floatSize)
            header[key] = ["dtype": integer ? "I64" : floatType, "shape": t.shape, "data_offsets": [offset, offset + size]] as [String: Any]
            offset += size
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (json.count + 8) % 8 != 0 { json.append(0x20) }  // pad so data starts 8-byte aligned
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for key in keys {
            let t = tensors[key]!
            if integerKeys.contains(key) {
                for i in 0..<t.count { withUnsafeBytes(of: Int64(t.data[i]).littleEndian) { out.append(contentsOf: $0) } }
            } else if float16 {
                // Converted into one buffer and appended once, as the F32 path appends its tensor whole.
                var half = [UInt16](repeating: 0, count: t.count)
                for i in 0..<t.count {
                    guard t.data[i].isNaN || abs(t.data[i]) <= Float(Float16.greatestFiniteMagnitude) else {
                        throw NNError("tensor '\(key)': value \(t.data[i]) at \(i) does not fit in float16 (largest 65504)")
                    }
                    half[i] = Float16(t.data[i]).bitPattern.littleEndian
                }
                half.withUnsafeBytes { out.append(contentsOf: $0) }
            } else {
                out.append(UnsafeBufferPointer(start: t.data, count: t.count))
            }
        }
        return out
    }

    /// Writes atomically: a temporary file in the same folder, fsync, then rename over the target, so
    /// a crash leaves either the old file or the new one, never a torn one.
    public static func write(_ tensors: [String: Tensor], to url: URL, metadata: [String: String] = [:],
                             integerKeys: Set<String> = [], float16: Bool = false) throws {
        let data = try serialize(tensors, metadata: metadata, integerKeys: integerKeys, float16: float16)
        try AtomicFile.write(data, to: url)
    }
}

public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else {
            throw NNError("\(url.path): cannot create temporary file in \(dir.path)")
        }
        do {
            let handle = try FileHandle(forWritingTo: tmp)
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
            guard rename(tmp.path, url.path) == 0 else { throw NNError("\(url.path): rename failed (errno \(errno))") }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw error is NNError ? error : NNError("\(url.path): write failed (\(error.localizedDescription))")
        }
        let fd = open(dir.path, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}

extension Module {
    /// Saves the state dict (and `metadata`, e.g. config JSON and step) atomically as safetensors.
    public func save(to url: URL, metadata: [String: String] = [:]) throws {
        if let refusal = inferenceOnlyRefusal("be saved") { throw NNError("\(url.path): \(refusal)") }
        let state = stateDict()
        let ints = Set(state.keys.filter { $0.hasSuffix("num_batches_tracked") })
        try SafeTensors.write(state, to: url, metadata: metadata, integerKeys: ints)
    }

    /// Loads a safetensors checkpoint; returns its metadata.
    @discardableResult
    public func load(from url: URL, strict: Bool = true) throws -> [String: String] {
        var file = try SafeTensors.read(url)
        var tensors = file.takeTensors()
        do { try load(consuming: &tensors, strict: strict) } catch let e as NNError {
            throw NNError("\(url.path): \(e.message)")
        }
        return file.metadata
    }
}
