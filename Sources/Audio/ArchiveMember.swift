import CSndfile
import Foundation

/// Audio read where it lies inside a tar archive. A path `<archive>.tar/<member>` names the member
/// `<member>` of the archive `<archive>.tar` when no file of that name exists and the archive is a regular
/// file: `/data/train/000000.tar/000000123.flac`. Every reader takes such a path (decoding, `info`, the
/// feature cache, manifests), so a WebDataset shard is read in place: no copy of its audio on disk.
public enum ArchivePath {
    /// (archive, member) when `path` names a member of a tar archive; nil for any other path.
    public static func split(_ path: String) -> (archive: String, member: String)? {
        guard path.range(of: ".tar/", options: .caseInsensitive) != nil, !FileManager.default.fileExists(atPath: path) else { return nil }
        var from = path.startIndex
        while let r = path.range(of: ".tar/", options: .caseInsensitive, range: from..<path.endIndex) {
            let archive = String(path[..<path.index(before: r.upperBound)])
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: archive, isDirectory: &isDirectory), !isDirectory.boolValue {
                return (archive, String(path[r.upperBound...]))
            }
            from = r.upperBound
        }
        return nil
    }

    /// The path that names `member` of `archive`.
    public static func join(archive: String, member: String) -> String { archive + "/" + normalized(member) }

    /// Member names as tar writes them may start with "./" (`tar -cf x.tar .`); they are looked up without it.
    static func normalized(_ member: String) -> String {
        var m = Substring(member)
        while m.hasPrefix("./") { m = m.dropFirst(2) }
        return String(m)
    }
}

/// The members of the archives read so far, indexed once per archive (again when its device, inode, size or
/// modification time changes) and shared by the loader's threads. Members are read with `pread`, never
/// through a mapping kept open: a shard rewritten or cut while a run reads it gives a decoding error naming
/// the member, not a bus error.
final class ArchiveIndex: @unchecked Sendable {
    static let shared = ArchiveIndex()

    struct Archive {
        let stamp: String
        /// In archive order; a name written twice is the later member (as tar extracts it).
        let members: [TarReader.Member]
        let byName: [String: Range<Int>]
        /// The damage (truncation, bad header) that ended the index early, if any.
        let damage: String?
    }

    private let lock = NSLock()
    private var archives: [String: Archive] = [:]
    private var order: [String] = []
    /// Indexes kept (a few hundred bytes per member): enough for a loader's shuffled reads over many shards.
    private let capacity = 256

    static func stamp(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return "\(st.st_dev) \(st.st_ino) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }

    /// The archive's index: the one kept while the file is unchanged, else read anew (always, with `fresh`).
    func archive(_ path: String, fresh: Bool = false) throws -> Archive {
        guard let stamp = Self.stamp(path) else { throw DatasetError("\(path): no such file") }
        lock.lock()
        if !fresh, let known = archives[path], known.stamp == stamp { lock.unlock(); return known }
        lock.unlock()
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw DatasetError("\(path): cannot read (\(error.localizedDescription))")
        }
        let (members, damage) = try TarReader.members(of: data, name: path)
        var byName: [String: Range<Int>] = [:]
        for m in members { byName[ArchivePath.normalized(m.path)] = m.bytes }
        let archive = Archive(stamp: stamp, members: members, byName: byName, damage: damage)
        lock.lock()
        defer { lock.unlock() }
        if archives.updateValue(archive, forKey: path) == nil { order.append(path) }
        if order.count > capacity { archives[order.removeFirst()] = nil }
        return archive
    }

    /// The bytes of `member` of the archive at `archivePath`.
    func member(_ member: String, of archivePath: String) throws -> Data {
        let archive: Archive
        do { archive = try self.archive(archivePath) } catch let e as DatasetError { throw AudioError(e.message) }
        let name = ArchivePath.join(archive: archivePath, member: member)
        guard let range = archive.byName[ArchivePath.normalized(member)] else {
            throw AudioError("\(name): no such member in the archive" + (archive.damage.map { " (read up to its damage: \($0))" } ?? ""))
        }
        let reader = try ArchiveReader(archivePath)
        return try reader.read(range, naming: name)
    }
}

/// An archive open for reading members by byte range.
final class ArchiveReader {
    let path: String
    private let fd: Int32

    init(_ path: String) throws {
        fd = Foundation.open(path, O_RDONLY)
        guard fd >= 0 else { throw AudioError("\(path): cannot open (\(String(cString: strerror(errno))))") }
        self.path = path
    }

    deinit { close(fd) }

    /// The bytes at `range`; a shorter read (the file cut since it was indexed) throws naming `name`.
    func read(_ range: Range<Int>, naming name: String) throws -> Data {
        var data = Data(count: range.count)
        let got = data.withUnsafeMutableBytes { raw -> Int in
            var done = 0
            while done < range.count {
                let n = pread(fd, raw.baseAddress! + done, range.count - done, off_t(range.lowerBound + done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                done += n
            }
            return done
        }
        guard got == range.count else {
            throw AudioError("\(name): the archive ends early (\(got) of \(range.count) bytes at byte \(range.lowerBound); changed since it was read?)")
        }
        return data
    }
}

/// An open libsndfile handle, closed when released: a file, or an archive member that libsndfile reads
/// through virtual I/O from the mapped archive (`source` stays alive as long as the handle).
final class SoundFileHandle {
    let pointer: OpaquePointer
    private let source: MemberSource?

    init(pointer: OpaquePointer, source: MemberSource? = nil) { (self.pointer, self.source) = (pointer, source) }
    deinit { sf_close(pointer) }

    /// Opens a member's bytes for reading.
    static func open(member bytes: Data, _ info: inout SF_INFO) -> SoundFileHandle? {
        let source = MemberSource(bytes)
        var io = MemberSource.io
        guard let pointer = sf_open_virtual(&io, Int32(SFM_READ), &info, Unmanaged.passUnretained(source).toOpaque()) else { return nil }
        return SoundFileHandle(pointer: pointer, source: source)
    }
}

/// A member's bytes as a seekable file for libsndfile's virtual I/O.
final class MemberSource {
    let data: Data
    var position = 0

    init(_ data: Data) { self.data = data }

    private static func of(_ user: UnsafeMutableRawPointer?) -> MemberSource { Unmanaged<MemberSource>.fromOpaque(user!).takeUnretainedValue() }

    /// libsndfile copies the callbacks when it opens; none captures anything (the source is `user_data`).
    static let io = SF_VIRTUAL_IO(
        get_filelen: { user in sf_count_t(MemberSource.of(user).data.count) },
        seek: { offset, whence, user in
            let s = MemberSource.of(user)
            let base = switch whence { case SEEK_CUR: s.position; case SEEK_END: s.data.count; default: 0 }
            let target = base + Int(offset)
            guard target >= 0 else { return -1 }
            s.position = target
            return sf_count_t(target)
        },
        read: { buffer, count, user in
            let s = MemberSource.of(user)
            let n = max(0, min(Int(count), s.data.count - s.position))
            guard n > 0, let buffer else { return 0 }
            s.data.withUnsafeBytes { raw in buffer.copyMemory(from: raw.baseAddress! + s.position, byteCount: n) }
            s.position += n
            return sf_count_t(n)
        },
        write: nil,
        tell: { user in sf_count_t(MemberSource.of(user).position) })
}
