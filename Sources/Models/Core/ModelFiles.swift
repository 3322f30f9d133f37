import Foundation
import NN

/// Where a model path points: a run folder stands for its best checkpoint, a file for itself.
public enum ModelFiles {
    public static func checkpointFile(_ path: URL) -> URL {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path.path, isDirectory: &isDir)
        return isDir.boolValue ? path.appendingPathComponent("best.safetensors") : path
    }

    /// `checkpointFile(path)`, with the two ways a path goes wrong named before any reader meets them: a
    /// folder that holds no model, and a PyTorch checkpoint that is not the zip archive the reader parses
    /// (a damaged file would otherwise be reported as a corrupt safetensors header).
    public static func modelFile(_ path: URL) throws -> URL {
        guard FileManager.default.fileExists(atPath: path.path) else { throw NNError("\(path.path): no such file or folder") }
        let file = checkpointFile(path)
        if file != path && !FileManager.default.fileExists(atPath: file.path) {
            throw NNError("\(path.path): not a model folder: no best.safetensors (an Earshot run) and no config.json (a Hugging Face model)")
        }
        if let kind = audioKind(file) {
            throw NNError("\(file.path): a \(kind) audio file, not a model (a run folder, a checkpoint or a released model)")
        }
        if ["pth", "pt", "bin", "ckpt"].contains(file.pathExtension.lowercased()) && !isZipArchive(file) {
            throw NNError("\(file.path): a PyTorch checkpoint here must be a zip archive (torch.save's format since PyTorch 1.6); "
                          + "this one is not: damaged, or the legacy format (load and re-save it with a current torch.save)")
        }
        return file
    }

    /// The container an audio file starts with (its magic bytes), nil for anything else: audio given where a
    /// model belongs (arguments swapped) is named as such, not as a safetensors header of 10^14 bytes.
    static func audioKind(_ url: URL) -> String? {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 12), head.count >= 4 else { return nil }
        let bytes = [UInt8](head)
        func starts(_ s: String) -> Bool { bytes.starts(with: Array(s.utf8)) }
        if starts("RIFF"), bytes.count >= 12, Array(bytes[8..<12]) == Array("WAVE".utf8) { return "WAV" }
        if starts("fLaC") { return "FLAC" }
        if starts("OggS") { return "Ogg" }
        if starts("ID3") || (bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0) { return "MP3" }
        if starts("FORM") { return "AIFF" }
        return nil
    }

    /// Whether `url` is a file that starts like a zip archive (`torch.save`'s format); false for folders.
    public static func isZipArchive(_ url: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data([0x50, 0x4B, 0x03, 0x04])
    }
}
