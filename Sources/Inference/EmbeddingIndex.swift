import Engine
import Foundation
import NN

/// Errors of the embedding index; each names the index folder, file, path or model.
public enum EmbeddingIndexError: Error, CustomStringConvertible, Equatable {
    /// A query (or added embeddings) from another model than the one the index was built with.
    case modelMismatch(index: String, indexModel: String, queryModel: String)
    case dimensionMismatch(index: String, expected: Int, got: Int)
    case badIndex(String)
    case badInput(String)

    public var description: String {
        switch self {
        case let .modelMismatch(index, indexModel, queryModel):
            return "\(index): built by model \(indexModel), the query is embedded by model \(queryModel): embeddings of different models are not comparable (rebuild the index or use its model)"
        case let .dimensionMismatch(index, expected, got):
            return "\(index): embeddings have dimension \(expected), got \(got)"
        case let .badIndex(m), let .badInput(m): return m
        }
    }
}

/// A searchable set of unit embeddings (CLAP audio clips, any encoder's clip embeddings), one per path,
/// scored by inner product (cosine similarity for unit vectors) with exact search
/// (`InnerProductSearch`: the engine's GEMM and a top-k selection).
///
/// On disk a folder: `index.json` (format, model hash, model, dimension, the paths in row order, the
/// name of the embeddings file) and `embeddings-<id>.safetensors` (one F32 tensor "embeddings"
/// [count, dim], the model hash in its metadata). A save writes a new embeddings file, then replaces
/// index.json by rename (the commit point), then deletes the old file: a crash leaves the old index or
/// the new one, never a mix.
public final class EmbeddingIndex {
    public static let format = "earshot-embedding-index"
    public static let version = 1

    public let dim: Int
    /// Identifies the model that embedded the items (`CLAP.modelHash`); queries must come from it.
    public let modelHash: String
    /// Where the model came from (a path, for the command line to load it again); informational.
    public var model: String
    /// What else loading that model needs (for CLAP from a .pt: "tokenizer", "text_heads"); informational.
    public var modelOptions: [String: String] = [:]
    public private(set) var paths: [String] = []
    /// The rows, row-major [count, dim] (`RowStore`: grown by remapping, not copying).
    private let rows = RowStore()
    /// A copy of the rows, row-major [count, dim].
    public var vectors: [Float] { rows.array }
    private var rowOfPath: [String: Int] = [:]
    /// Where the index was read from or last saved (for messages).
    public private(set) var location: String

    public var count: Int { paths.count }

    public init(dim: Int, modelHash: String, model: String = "", location: String = "(in memory)") throws {
        guard dim > 0 else { throw EmbeddingIndexError.badInput("embedding index: dimension \(dim) must be positive") }
        guard !modelHash.isEmpty else { throw EmbeddingIndexError.badInput("embedding index: an empty model hash") }
        self.dim = dim; self.modelHash = modelHash; self.model = model; self.location = location
    }

    /// Throws `modelMismatch` unless `hash` is the index's model's.
    public func checkModel(_ hash: String) throws {
        guard hash == modelHash else { throw EmbeddingIndexError.modelMismatch(index: location, indexModel: modelHash, queryModel: hash) }
    }

    /// Adds (or, for a path already in the index, replaces) one embedding per path; `embeddings` is
    /// row-major [paths.count, dim] from the model `modelHash` names. Returns how many were new.
    /// New paths (the common case) cost one pass over the rows, copied into the index and screened for
    /// NaN and infinity as they go, and one dictionary insertion per path.
    @discardableResult
    public func add(paths newPaths: [String], embeddings: [Float], modelHash hash: String) throws -> Int {
        try checkModel(hash)
        guard embeddings.count == newPaths.count * dim else {
            throw EmbeddingIndexError.dimensionMismatch(index: location, expected: dim,
                                                        got: newPaths.isEmpty ? embeddings.count : embeddings.count / newPaths.count)
        }
        func notFinite() -> EmbeddingIndexError {
            let bad = embeddings.firstIndex { !$0.isFinite }!
            return .badInput("\(location): the embedding of \(newPaths[bad / dim]) is not finite")
        }
        let start = paths.count
        rowOfPath.reserveCapacity(start + newPaths.count)
        var inserted = 0
        for path in newPaths {
            // One hash per path; a known (or repeated) path gets its row back and stops the fast path.
            if let known = rowOfPath.updateValue(start + inserted, forKey: path) { rowOfPath[path] = known; break }
            inserted += 1
        }
        if inserted == newPaths.count {
            // All new: one pass over the rows, copied and screened together (refused rows are dropped again).
            let finite = embeddings.withUnsafeBufferPointer { rows.append($0.baseAddress!, $0.count) }
            guard finite else {
                rows.truncate(to: start * dim)
                for p in newPaths { rowOfPath[p] = nil }
                throw notFinite()
            }
            paths += newPaths
            return newPaths.count
        }
        // Some paths are known, or repeated: undo the insertions above and go path by path.
        for p in newPaths[..<inserted] { rowOfPath[p] = nil }
        var seen = Set<String>()
        for (i, path) in newPaths.enumerated() where !seen.insert(path).inserted {
            throw EmbeddingIndexError.badInput("\(location): \(path) is given twice (items \(newPaths.firstIndex(of: path)! + 1) and \(i + 1))")
        }
        if embeddings.contains(where: { !$0.isFinite }) { throw notFinite() }
        var added = 0
        embeddings.withUnsafeBufferPointer { e in
            for (i, path) in newPaths.enumerated() {
                let row = e.baseAddress! + i * dim
                if let r = rowOfPath[path] {
                    (rows.base! + r * dim).update(from: row, count: dim)
                } else {
                    rowOfPath[path] = paths.count
                    paths.append(path)
                    _ = rows.append(row, dim)
                    added += 1
                }
            }
        }
        return added
    }

    /// Removes these paths; returns the ones that were not in the index. The remaining rows keep their
    /// order (one compaction pass).
    @discardableResult
    public func remove(paths gone: [String]) -> [String] {
        let goneSet = Set(gone)
        let missing = gone.filter { rowOfPath[$0] == nil }
        guard goneSet.contains(where: { rowOfPath[$0] != nil }) else { return missing }
        var keptPaths: [String] = [], write = 0
        let v = rows.base!
        for (r, path) in paths.enumerated() where !goneSet.contains(path) {
            if write != r { (v + write * dim).update(from: v + r * dim, count: dim) }
            keptPaths.append(path)
            write += 1
        }
        rows.truncate(to: write * dim)
        paths = keptPaths
        rowOfPath = Dictionary(uniqueKeysWithValues: paths.enumerated().map { ($1, $0) })
        return missing
    }

    public struct Match: Equatable, Sendable {
        public let path: String
        public let score: Float
    }

    /// The `top` items with the largest inner product for each query; `queries` is row-major
    /// [q, dim] from the model `modelHash` names (a query from another model is refused).
    public func search(queries: [Float], modelHash hash: String, top: Int) throws -> [[Match]] {
        try checkModel(hash)
        guard top > 0 else { throw EmbeddingIndexError.badInput("search: --top \(top) must be positive") }
        guard !queries.isEmpty, queries.count % dim == 0 else {
            throw EmbeddingIndexError.dimensionMismatch(index: location, expected: dim, got: queries.count)
        }
        let nq = queries.count / dim
        let hits = queries.withUnsafeBufferPointer { q in
            InnerProductSearch.search(queries: q.baseAddress!, queryCount: nq, database: rows.base.map { UnsafePointer($0) } ?? q.baseAddress!,
                                      rows: count, dim: dim, k: top)
        }
        return hits.map { $0.map { Match(path: paths[$0.index], score: $0.score) } }
    }

    // MARK: files

    struct Metadata: Codable {
        var format: String
        var version: Int
        var modelHash: String
        var model: String
        var modelOptions: [String: String]?
        var dim: Int
        var count: Int
        var embeddings: String
        var paths: [String]
    }

    static func metadataURL(_ folder: URL) -> URL { folder.appendingPathComponent("index.json") }

    /// Writes the index into `folder` (created if needed), atomically as described above.
    public func save(to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let old = try? Self.readMetadata(folder)
        let name = "embeddings-\(String(UInt64.random(in: 0...UInt64.max), radix: 16)).safetensors"
        let tensor = try Tensor(rows.array, shape: [count, dim])
        try SafeTensors.write(["embeddings": tensor], to: folder.appendingPathComponent(name),
                              metadata: ["model_hash": modelHash, "format": Self.format])
        let meta = Metadata(format: Self.format, version: Self.version, modelHash: modelHash, model: model, modelOptions: modelOptions.isEmpty ? nil : modelOptions, dim: dim,
                            count: count, embeddings: name, paths: paths)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try encoder.encode(meta), to: Self.metadataURL(folder))
        if let old, old.embeddings != name { try? FileManager.default.removeItem(at: folder.appendingPathComponent(old.embeddings)) }
        location = folder.path
    }

    static func readMetadata(_ folder: URL) throws -> Metadata {
        let url = metadataURL(folder)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw EmbeddingIndexError.badIndex("\(folder.path): not an embedding index (no readable index.json)")
        }
        let meta: Metadata
        do { meta = try JSONDecoder().decode(Metadata.self, from: data) } catch {
            throw EmbeddingIndexError.badIndex("\(url.path): not an earshot index file (\(error))")
        }
        guard meta.format == format else { throw EmbeddingIndexError.badIndex("\(url.path): format '\(meta.format)', expected '\(format)'") }
        guard meta.version <= version else {
            throw EmbeddingIndexError.badIndex("\(url.path): version \(meta.version) is newer than this earshot reads (\(version))")
        }
        return meta
    }

    /// Reads an index folder written by `save`, checking the embeddings file against index.json.
    public static func load(_ folder: URL) throws -> EmbeddingIndex {
        let meta = try readMetadata(folder)
        let file = folder.appendingPathComponent(meta.embeddings)
        var st: SafeTensors.File
        do { st = try SafeTensors.read(file) } catch { throw EmbeddingIndexError.badIndex("\(file.path): \(error)") }
        guard let e = st.tensors["embeddings"] else { throw EmbeddingIndexError.badIndex("\(file.path): no tensor 'embeddings'") }
        guard e.shape == [meta.count, meta.dim], meta.paths.count == meta.count else {
            throw EmbeddingIndexError.badIndex("\(file.path): embeddings \(e.shape), index.json says \(meta.count) paths (\(meta.paths.count) listed) of dimension \(meta.dim)")
        }
        guard st.metadata["model_hash"] == meta.modelHash else {
            throw EmbeddingIndexError.badIndex("\(file.path): model hash \(st.metadata["model_hash"] ?? "missing") differs from index.json's \(meta.modelHash)")
        }
        guard Set(meta.paths).count == meta.paths.count else { throw EmbeddingIndexError.badIndex("\(folder.path): index.json lists a path twice") }
        let index = try EmbeddingIndex(dim: meta.dim, modelHash: meta.modelHash, model: meta.model, location: folder.path)
        index.modelOptions = meta.modelOptions ?? [:]
        guard index.rows.append(e.data, e.count) else { throw EmbeddingIndexError.badIndex("\(file.path): an embedding is not finite") }
        st.tensors = [:]
        index.paths = meta.paths
        index.rowOfPath = Dictionary(uniqueKeysWithValues: meta.paths.enumerated().map { ($1, $0) })
        return index
    }
}
