import Foundation

/// The instruction-set features of the CPU this process runs on, as the operating system reports them.
///
/// Read from the `flags` line of /proc/cpuinfo rather than by executing `cpuid` (Swift has no inline
/// assembly, and the kernel's list already accounts for what the OS enables: it drops `avx512f` when
/// XSAVE does not enable the zmm state, which a bare `cpuid` would still report). Elsewhere (macOS,
/// no /proc) the set is empty and every check below stays silent.
public struct CPUFeatures: Sendable, Equatable {
    /// Flag names exactly as /proc/cpuinfo spells them (`avx2`, `fma`, `avx512f`, `avx512_bf16`, `amx_bf16`...).
    public var flags: Set<String>
    /// `GenuineIntel`, `AuthenticAMD`, or "" when unknown.
    public var vendor: String
    public var family: Int?, model: Int?
    /// lscpu's "Model name" (for reports only).
    public var modelName: String

    public init(flags: Set<String>, vendor: String = "", family: Int? = nil, model: Int? = nil, modelName: String = "") {
        self.flags = flags; self.vendor = vendor; self.family = family; self.model = model; self.modelName = modelName
    }

    public var hasAVX2: Bool { flags.contains("avx2") && flags.contains("fma") }
    /// The AVX-512 subset Earshot's wide kernels and OpenBLAS's SkylakeX kernels need (F, BW, VL, DQ).
    public var hasAVX512: Bool { ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) }
    public var hasAVX512BF16: Bool { flags.contains("avx512_bf16") }
    public var hasAMX: Bool { flags.contains("amx_tile") && flags.contains("amx_bf16") }
    public var hasVNNI: Bool { flags.contains("avx512_vnni") || flags.contains("avx_vnni") }

    /// The widest vector level, for messages: "avx512", "avx2", "avx" or "sse".
    public var vectorLevel: String {
        hasAVX512 ? "avx512" : hasAVX2 ? "avx2" : flags.contains("avx") ? "avx" : "sse"
    }

    /// Parses the first processor block of /proc/cpuinfo's text.
    public static func parse(cpuinfo text: String) -> CPUFeatures {
        var f = CPUFeatures(flags: [])
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { if !f.flags.isEmpty { break } else { continue } }  // end of the first processor
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "flags": f.flags = Set(value.split(separator: " ").map(String.init))
            case "vendor_id": f.vendor = value
            case "cpu family": f.family = Int(value)
            case "model": f.model = Int(value)
            case "model name": f.modelName = value
            default: break
            }
        }
        return f
    }

    /// This host's features (read once).
    public static let host: CPUFeatures = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return CPUFeatures(flags: []) }
        return parse(cpuinfo: text)
    }()

    /// The names of the features the engine cares about that this CPU has, for reports.
    public var summary: [String] {
        ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
         "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"].filter(flags.contains)
    }
}

/// Writes one line to standard error (the engine's notices; results go to standard output).
package func noticeOnStderr(_ line: String) {
    FileHandle.standardError.write(Data(("earshot: " + line + "\n").utf8))
}
