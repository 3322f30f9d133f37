import Foundation

/// A family's config as checkpoints record it: compact, key-sorted JSON in the `config` metadata
/// (sorted so the same config always gives the same bytes, and so the same content hash).
public protocol CheckpointConfig: Codable {
    /// What the config is called in error messages ("AST", "AMBA", "PANNs").
    static var configName: String { get }
}

extension CheckpointConfig {
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(data: (try? encoder.encode(self)) ?? Data(), encoding: .utf8) ?? "{}"
    }

    /// Decodes `json`, throwing a message that names `what` (a file or field).
    public static func decode(_ json: String, _ what: String) throws -> Self {
        do { return try JSONDecoder().decode(Self.self, from: Data(json.utf8)) } catch {
            throw ModelError("\(what): not \(configName.first.map { "AEIOU".contains($0) } == true ? "an" : "a") \(configName) config (\(error))")
        }
    }
}
