import Audio
import Foundation

/// On-disk clip embeddings keyed by the clip's bytes and the embedder's key: FNV-1a 64 of the file,
/// continued over `ClipEmbedder.cacheKey`, as `FeatureCache` keys features. Edited audio or other
/// weights never reuse a stale entry; a renamed file still hits. An entry is [count] as Int32 then the
/// floats, written to a temporary name and renamed, so a killed run leaves no half-written entry.
public struct EmbeddingCache: Sendable {
    public let directory: URL

    public init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// `$XDG_CACHE_HOME/earshot/probe`, else `~/.cache/earshot/probe`.
    public static var defaultDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        let root = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return root.appendingPathComponent("earshot/probe")
    }

    public func entry(for path: String, embedderKey: String) throws -> URL {
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        var h = data.withUnsafeBytes { FeatureCache.fnv1a($0) }
        h = Array(embedderKey.utf8).withUnsafeBytes { FeatureCache.fnv1a($0, seed: h) }
        return directory.appendingPathComponent(String(format: "%016llx", h) + ".emb")
    }

    /// Embeddings of `paths`: cached ones read back, the rest computed by `embedder` in one call and
    /// stored. `computed` counts the clips the embedder was asked for.
    public func embeddings(of paths: [String], with embedder: any ClipEmbedder, progress: ((String) -> Void)? = nil) throws
        -> (embeddings: [String: [Float]], report: SkipReport, computed: Int) {
        let key = embedder.cacheKey
        var out: [String: [Float]] = [:], missing: [(path: String, entry: URL)] = []
        let report = SkipReport()
        for path in paths {
            let entry: URL
            do { entry = try self.entry(for: path, embedderKey: key) } catch { report.recordSkip(path, "cannot read (\(error.localizedDescription))"); continue }
            if let v = Self.read(entry) { out[path] = v } else { missing.append((path, entry)) }
        }
        guard !missing.isEmpty else { return (out, report, 0) }
        let (fresh, skips) = try embedder.embed(missing.map(\.path), progress: progress)
        for (path, reason) in skips.skipped { report.recordSkip(path, reason) }
        for t in skips.truncated { report.recordTruncated(t.path, AudioTruncation(promised: t.promised, read: t.read)) }
        for (path, entry) in missing {
            guard let v = fresh[path] else { continue }
            out[path] = v
            Self.write(v, to: entry)
        }
        return (out, report, missing.count)
    }

    static func read(_ entry: URL) -> [Float]? {
        guard let data = try? Data(contentsOf: entry), data.count >= 4 else { return nil }
        let count = Int(data.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) })
        guard count >= 0, data.count == 4 + 4 * count else { return nil }
        return data.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 + 4 * $0, as: Float.self) } }
    }

    static func write(_ v: [Float], to entry: URL) {
        var out = Data()
        withUnsafeBytes(of: Int32(v.count)) { out.append(contentsOf: $0) }
        v.withUnsafeBytes { out.append(contentsOf: $0) }
        let tmp = entry.deletingLastPathComponent().appendingPathComponent(".\(entry.lastPathComponent).\(UUID().uuidString)")
        // A cache that cannot be written only costs the next run the time to recompute.
        if (try? out.write(to: tmp)) != nil { _ = rename(tmp.path, entry.path) }
    }
}
