import Foundation
import NN

/// Encoders pretrained here and committed under `pretrained/` (float16 safetensors, a card beside
/// each), usable by name wherever a model path is taken: `earshot embed --model earshot-ssast-tiny`,
/// `finetune --init-from earshot-ssast-tiny`, `probe --model earshot-ssast-tiny`.
///
/// A path that exists always wins over a name, so a user's folder called `earshot-ssast-tiny` is read
/// as that folder.
public enum ShippedModels {
    public struct Entry: Sendable {
        public let name: String
        /// File name inside the `pretrained/` folder.
        public let file: String
        public let summary: String
    }

    public static let all: [Entry] = [
        Entry(name: "earshot-ssast-tiny", file: "earshot-ssast-tiny.safetensors",
              summary: "SSAST-tiny (frame), pretrained here without labels on 4.1 h of real audio (pretrained/earshot-ssast-tiny.md)"),
    ]

    public static func entry(named name: String) -> Entry? { all.first { $0.name == name } }

    /// Folders searched for shipped files, in order: `EARSHOT_PRETRAINED`, the repository this code
    /// was built from (a SwiftPM checkout or dependency keeps its sources), and beside the executable
    /// (`.build/release/earshot` three levels under the repository; an install's `share/earshot`).
    public static func searchFolders() -> [URL] {
        var folders: [URL] = []
        if let env = ProcessInfo.processInfo.environment["EARSHOT_PRETRAINED"], !env.isEmpty {
            folders.append(URL(fileURLWithPath: env))
        }
        // This file is Sources/Models/Core/ShippedModels.swift.
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        folders.append(repo.appendingPathComponent("pretrained"))
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        folders.append(exe.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("pretrained"))
        folders.append(exe.deletingLastPathComponent().appendingPathComponent("share/earshot/pretrained"))
        var seen = Set<String>()
        return folders.filter { seen.insert($0.standardizedFileURL.path).inserted }
    }

    /// The file of a shipped model; throws naming every folder looked in when it is not there.
    public static func file(_ entry: Entry) throws -> URL {
        let folders = searchFolders()
        for folder in folders {
            let url = folder.appendingPathComponent(entry.file)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        throw ModelError("\(entry.name): shipped encoder file \(entry.file) not found (looked in "
                         + folders.map(\.path).joined(separator: ", ") + "); set EARSHOT_PRETRAINED to the folder that holds it")
    }

    /// What a `--model` / `--init-from` argument names: an existing path as it is, else a shipped
    /// model's file, else the path (so the reader reports it missing by its own name).
    public static func resolve(_ argument: String) throws -> URL {
        let url = URL(fileURLWithPath: argument)
        if FileManager.default.fileExists(atPath: url.path) { return url }
        if let entry = entry(named: argument) { return try file(entry) }
        return url
    }
}
