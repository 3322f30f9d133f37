import Foundation

/// A minimal reader for the uncompressed ("stored") zip archives `torch.save` writes, zip64 included.
struct ZipArchive {
    struct Entry { let name: String; let offset: Int; let size: Int; let method: Int }
    let data: Data
    let entries: [String: Entry]
    let name: String

    init(_ data: Data, name: String) throws {
        self.data = data; self.name = name
        let n = data.count
        // Every field is read through these: an offset or length from a damaged file that points outside
        // the data is a named error, not an out-of-bounds read. 64-bit values past 2^62 are no offset
        // into any file (and would overflow the arithmetic after them).
        let corrupt = NNError("\(name): corrupt zip archive (a field points outside the file)")
        func u16(_ o: Int) throws -> Int {
            guard o >= 0, o <= n - 2 else { throw corrupt }
            return Int(data[data.startIndex + o]) | Int(data[data.startIndex + o + 1]) << 8
        }
        func u32(_ o: Int) throws -> Int { try u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) throws -> Int {
            let high = try u32(o + 4)
            guard high < 1 << 30 else { throw corrupt }
            return try u32(o) | high << 32
        }
        guard n >= 22 else { throw NNError("\(name): not a zip archive (\(n) bytes)") }
        var eocd = -1
        var i = n - 22
        while i >= max(0, n - 65_557) { if try u32(i) == 0x0605_4B50 { eocd = i; break }; i -= 1 }
        guard eocd >= 0 else { throw NNError("\(name): not a zip archive or truncated (no end-of-directory record)") }
        var count = try u16(eocd + 10), dirOffset = try u32(eocd + 16)
        if count == 0xFFFF || dirOffset == 0xFFFF_FFFF, eocd >= 20, try u32(eocd - 20) == 0x0706_4B50 {
            let z64 = try u64(eocd - 20 + 8)
            guard z64 + 56 <= n, try u32(z64) == 0x0606_4B50 else { throw NNError("\(name): corrupt zip64 directory") }
            count = try u64(z64 + 32); dirOffset = try u64(z64 + 48)
        }
        var entries: [String: Entry] = [:]
        var p = dirOffset
        for _ in 0..<count {
            guard p + 46 <= n, try u32(p) == 0x0201_4B50 else { throw NNError("\(name): corrupt zip directory") }
            let method = try u16(p + 10)
            var size = try u32(p + 24), local = try u32(p + 42)
            let nameLen = try u16(p + 28), extraLen = try u16(p + 30), commentLen = try u16(p + 32)
            guard p + 46 + nameLen <= n else { throw NNError("\(name): corrupt zip directory") }
            let entryName = String(decoding: data[(data.startIndex + p + 46)..<(data.startIndex + p + 46 + nameLen)], as: UTF8.self)
            // Zip64 extended sizes live in the extra field (id 0x0001) when the 32-bit fields are saturated.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = try u16(e), len = try u16(e + 2)
                if id == 1 {
                    var q = e + 4
                    if try u32(p + 24) == 0xFFFF_FFFF { size = try u64(q); q += 8 }
                    if try u32(p + 20) == 0xFFFF_FFFF { q += 8 }
                    if try u32(p + 42) == 0xFFFF_FFFF { local = try u64(q) }
                }
                e += 4 + len
            }
            guard local + 30 <= n, try u32(local) == 0x0403_4B50 else { throw NNError("\(name): corrupt zip entry \(entryName)") }
            let start = local + 30 + (try u16(local + 26)) + (try u16(local + 28))
            guard size <= n, start <= n - size else { throw NNError("\(name): truncated: entry \(entryName) runs past the end of the file") }
            entries[entryName] = Entry(name: entryName, offset: start, size: size, method: method)
            p += 46 + nameLen + extraLen + commentLen
        }
        self.entries = entries
    }

    func contents(_ entryName: String) throws -> Data {
        guard let e = entries[entryName] else { throw NNError("\(name): archive has no entry \(entryName)") }
        guard e.method == 0 else { throw NNError("\(name): entry \(entryName) is compressed (method \(e.method)); only stored entries are supported") }
        // A slice, not a copy: over a mapped archive the bytes stay in the file until read.
        return data[(data.startIndex + e.offset)..<(data.startIndex + e.offset + e.size)]
    }
}
