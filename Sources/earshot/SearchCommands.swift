import ArgumentParser
import Audio
import CLAP
import Foundation
import Inference

/// `earshot index build|add|remove`: a folder of CLAP audio embeddings to search by text or by example.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Build and update a search index of CLAP audio embeddings (earshot search queries it).",
        discussion: """
        An index is a folder: index.json (model hash, model, dimension, the clips' paths) and one safetensors \
        file of unit embeddings. Every change is written to a new embeddings file and committed by renaming \
        index.json over the old one, so an interrupted write leaves the previous index intact.
        """,
        subcommands: [IndexBuild.self, IndexAdd.self, IndexRemove.self])
}

/// Embeds `paths` into `index` (new paths added, known ones re-embedded), reporting skipped files.
private func embedInto(_ index: EmbeddingIndex, _ paths: [String], clap: CLAP, hash: String, json: Bool, out: String, verb: String) throws {
    var progress = Progress(total: paths.count, label: "index", onlyIfSlow: true, log: progressLine)
    let embedded = try CLAPFileEmbedder(clap: clap).embed(files: paths) { done, _ in progress.update(done) }
    let added = try index.add(paths: embedded.paths, embeddings: embedded.embeddings, modelHash: hash)
    if embedded.paths.isEmpty && !paths.isEmpty { throw AudioError(noClipReadMessage(embedded.skipped, total: paths.count) + "; \(out) not written") }
    try index.save(to: URL(fileURLWithPath: out))
    let summary: [String: Any] = ["index": out, "items": index.count, "added": added, "updated": embedded.paths.count - added,
                                  "dim": index.dim, "model_hash": index.modelHash,
                                  "skipped": embedded.skipped.map { ["file": $0.path, "reason": $0.reason] }]
    if json { try printJSONLine(["summary": summary]); return }
    for (file, reason) in embedded.skipped { print("\(file): skipped (\(reason))") }
    print("\(verb) \(out): \(index.count) clips (\(added) new, \(embedded.paths.count - added) re-embedded, \(embedded.skipped.count) skipped), dimension \(index.dim), model \(index.modelHash)")
}

struct IndexBuild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "build", abstract: "Embed every clip of folders, files or manifests into a new index.")
    @Argument(help: "Audio folders, files or manifests.") var inputs: [String]
    @OptionGroup var clap: CLAPModelArguments
    @Option(help: "The index folder to write.") var out: String
    @Flag(help: "A JSON summary line.") var json = false

    func run() throws {
        let paths = try audioFiles(inputs).map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let model = try clap.load(), hash = model.modelHash()
        let index = try EmbeddingIndex(dim: model.model.projectionDim, modelHash: hash,
                                       model: URL(fileURLWithPath: clap.model).standardizedFileURL.path, location: out)
        index.modelOptions = clap.indexOptions
        try embedInto(index, paths, clap: model, hash: hash, json: json, out: out, verb: "built")
    }
}

struct IndexAdd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add clips to an index (clips already in it are re-embedded).")
    @Argument(help: "The index folder.") var index: String
    @Argument(help: "Audio folders, files or manifests.") var inputs: [String]
    @OptionGroup var clap: IndexModelArguments
    @Flag(help: "A JSON summary line.") var json = false

    func run() throws {
        let idx = try EmbeddingIndex.load(URL(fileURLWithPath: index))
        let model = try clap.load(for: idx)
        let paths = try audioFiles(inputs).map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        try embedInto(idx, paths, clap: model, hash: model.modelHash(), json: json, out: index, verb: "updated")
    }
}

struct IndexRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove clips from an index.")
    @Argument(help: "The index folder.") var index: String
    @Argument(help: "Paths of clips to remove (as listed by search), or folders/manifests whose clips to remove.") var inputs: [String]
    @Flag(help: "A JSON summary line.") var json = false

    func run() throws {
        let idx = try EmbeddingIndex.load(URL(fileURLWithPath: index))
        // A path no longer on disk is still removable, so plain paths are taken as they are.
        let paths = try inputs.flatMap { input -> [String] in
            var isDir: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: input, isDirectory: &isDir)
            return exists && (isDir.boolValue || ["csv", "jsonl", "json", "tar"].contains((input as NSString).pathExtension.lowercased()))
                ? try audioFiles([input]) : [input]
        }.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let before = idx.count
        let missing = idx.remove(paths: paths)
        if before != idx.count { try idx.save(to: URL(fileURLWithPath: index)) }
        if json {
            try printJSONLine(["summary": ["index": index, "removed": before - idx.count, "items": idx.count, "not_in_index": missing]])
            return
        }
        for m in missing { print("\(m): not in the index") }
        print("removed \(before - idx.count) clips from \(index): \(idx.count) left")
    }
}

/// `earshot search`: the clips of an index closest to a text, or to an example clip.
struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search an index by text (\"a dog barking\") or by an example clip (--like clip.wav).",
        discussion: """
        The query is embedded by the index's own model (or --model, which must be the same model: an index \
        refuses queries from another, checked by model hash) and the clips ranked by cosine similarity, \
        exactly (no approximation).
        """)
    @Argument(help: "The index folder.") var index: String
    @Argument(help: "Text queries (one result list each).") var queries: [String] = []
    @Option(help: "An audio clip as the query (repeatable).") var like: [String] = []
    @OptionGroup var clap: IndexModelArguments
    @Option(help: "Results per query.") var top = 10
    @Flag(help: "One JSON object per query (query, files, scores).") var json = false

    func validate() throws {
        guard !queries.isEmpty || !like.isEmpty else { throw ValidationError("give a text query or --like clip.wav") }
        guard top > 0 else { throw ValidationError("--top \(top) must be positive") }
    }

    func run() throws {
        let idx = try EmbeddingIndex.load(URL(fileURLWithPath: index))
        let clap = try self.clap.load(for: idx)
        let hash = clap.modelHash()
        try idx.checkModel(hash)
        var labels: [String] = [], rows: [Float] = []
        if !queries.isEmpty {
            let (e, cut) = try clap.embed(texts: queries)
            noteTruncation(cut, of: queries.count, limit: clap.tokenizer.maxLength)
            labels += queries; rows += e.toArray()
        }
        let embedder = CLAPFileEmbedder(clap: clap)
        for file in like {
            do { rows += try embedder.embed(file: file) } catch let e as AudioError { throw AudioError("--like \(e.message)") }
            labels.append(file)
        }
        let results = try idx.search(queries: rows, modelHash: hash, top: top)
        for (query, matches) in zip(labels, results) {
            if json {
                try printJSONLine(["query": query, "files": matches.map(\.path), "scores": matches.map { Double($0.score) }])
            } else {
                print("\(query):")
                for (i, m) in matches.enumerated() { print(String(format: "  %2d. %.4f  %@", i + 1, m.score, m.path)) }
            }
        }
    }
}
