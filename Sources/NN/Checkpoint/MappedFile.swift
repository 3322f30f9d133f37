import Foundation

/// Checkpoint files mapped read-only and private: pages come from the page cache on first touch, and a
/// range already copied into tensors can be handed back, so a checkpoint is not held twice while it
/// loads (a base AST: 344 MB of file beside 344 MB of tensors). Read again, a released page comes back
/// from the file, so releasing is safe even where two tensors share bytes.
enum MappedFile {
    /// The whole file: `Data` over a private mapping (`mapped`), or read into memory where the file system
    /// cannot map it (then nothing may be released); `what` names the file kind in errors.
    static func map(_ url: URL, what: String) throws -> (data: Data, mapped: Bool) {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw NNError("\(url.path): cannot open \(what) (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw NNError("\(url.path): cannot read the size of \(what) (\(String(cString: strerror(errno))))") }
        let size = Int(info.st_size)
        guard size > 0 else { return (Data(), false) }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            do { return (try Data(contentsOf: url), false) } catch {
                throw NNError("\(url.path): cannot read \(what) (\(error.localizedDescription))")
            }
        }
        return (Data(bytesNoCopy: base, count: size, deallocator: .custom { pointer, count in munmap(pointer, count) }), true)
    }

    /// Drops the whole pages inside [start, start + count) from this process (MADV_DONTNEED). Only for
    /// memory inside a `map` result with `mapped` true: on memory that was read in, it would zero it.
    static func releasePages(_ start: UnsafeRawPointer, count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: start) + page - 1) / page * page, end = (Int(bitPattern: start) + count) / page * page
        guard end > first, let p = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(p, end - first, Int32(MADV_DONTNEED))
    }
}
