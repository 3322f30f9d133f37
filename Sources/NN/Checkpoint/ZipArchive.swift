import Foundation

/// A minimal reader for the uncompressed ("stored") zip archives `torch.save` writes, zip64 included.
struct ZipArchive {
    struct Entry { let name: String; let offset: Int; let size: Int; let method: Int }
    let data: Data
    let entries: [String: Entry]
    let name: String

    init(_ data: Data, name: String) throws {
        self.data = data; self.name = name
        func u16(_ o: Int) -> Int { Int(data[data.startIndex + o]) | Int(data[data.startIndex + o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> Int { u32(o) | u32(o + 4) << 32 }
        let n = data.count
        guard n >= 22 else { throw NNError("\(name): not a zip archive (\(n) bytes)") }
        var eocd = -1
        var i = n - 22
        while i >= max(0, n - 65_557) { if u32(i) == 0x0605_4B50 { eocd = i; break }; i -= 1 }
        guard eocd >= 0 else { throw NNError("\(name): not a zip archive or truncated (no end-of-directory record)") }
        var count = u16(eocd + 10), dirOffset = u32(eocd + 16)
        if (count == 0xFFFF || dirOffset == 0xFFFF_FFFF), eocd >= 20, u32(eocd - 20) == 0x0706_4B50 {
            let z64 = u64(eocd - 20 + 8)
            guard z64 + 56 <= n, u32(z64) == 0x0606_4B50 else { throw NNError("\(name): corrupt zip64 directory") }
            count = u64(z64 + 32); dirOffset = u64(z64 + 48)
        }
        var entries: [String: Entry] = [:]
        var p = dirOffset
        for _ in 0..<count {
            guard p + 46 <= n, u32(p) == 0x0201_4B50 else { throw NNError("\(name): corrupt zip directory") }
            let method = u16(p + 10)
            var size = u32(p + 24), local = u32(p + 42)
            let nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32)
            guard p + 46 + nameLen <= n else { throw NNError("\(name): corrupt zip directory") }
            let entryName = String(decoding: data[(data.startIndex + p + 46)..<(data.startIndex + p + 46 + nameLen)], as: UTF8.self)
            // Zip64 extended sizes live in the extra field (id 0x0001) when the 32-bit fields are saturated.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = u16(e), len = u16(e + 2)
                if id == 1 {
                    var q = e + 4
                    if u32(p + 24) == 0xFFFF_FFFF { size = u64(q); q += 8 }
                    if u32(p + 20) == 0xFFFF_FFFF { q += 8 }
                    if u32(p + 42) == 0xFFFF_FFFF { local = u64(q) }
                }
                e += 4 + len
            }
            guard local + 30 <= n, u32(local) == 0x0403_4B50 else { throw NNError("\(name): corrupt zip entry \(entryName)") }
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            guard start + size <= n else { throw NNError("\(name): truncated: entry \(entryName) runs past the end of the file") }
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
