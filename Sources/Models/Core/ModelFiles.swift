import Audio
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
        // Audio given where a model belongs (arguments swapped) is named as such, not as a safetensors header
        // of 10^14 bytes: libsndfile recognises it from its header ("WAV (Microsoft)" gives "WAV").
        if let audio = try? AudioFile.info(file) {
            let kind = audio.format.split(separator: " ").first.map(String.init) ?? audio.format
            throw NNError("\(file.path): a \(kind) audio file, not a model (a run folder, a checkpoint or a released model)")
        }
        if ["pth", "pt", "bin", "ckpt"].contains(file.pathExtension.lowercased()) && !isZipArchive(file) {
            throw NNError("\(file.path): a PyTorch checkpoint here must be a zip archive (torch.save's format since PyTorch 1.6); "
                          + "this one is not: damaged, or the legacy format (load and re-save it with a current torch.save)")
        }
        return file
    }

    /// Whether `url` is a file that starts like a zip archive (`torch.save`'s format); false for folders.
    public static func isZipArchive(_ url: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data([0x50, 0x4B, 0x03, 0x04])
    }
}
