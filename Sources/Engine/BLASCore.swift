import CBLAS
import Foundation

/// Which of OpenBLAS's kernels runs, and whether it fits the CPU.
///
/// Debian's OpenBLAS (DYNAMIC_ARCH) picks its kernel set when the library loads, from a table of CPU
/// family/model numbers. A CPU newer than the table gets the oldest set: on a Sapphire Rapids guest
/// (family 6 model 207) 0.3.21 ran `sgemm_kernel_PRESCOTT` (SSE3), 61% of a training step, and
/// `OPENBLAS_CORETYPE=Cooperlake` made that step 2.4x faster (docs/BENCHMARKS.md). The variable is read only
/// at load time, so a library can only say what to set; the `earshot` CLI sets it and restarts itself
/// (`reexecIfOpenBLASFallsBack`).
public enum BLASCore {
    /// The kernel set OpenBLAS chose (`openblas_get_corename`), e.g. "Cooperlake", "Haswell", "Prescott".
    public static var coreName: String { String(cString: openblas_get_corename()) }
    /// OpenBLAS's build description (`openblas_get_config`): version, DYNAMIC_ARCH, core, MAX_THREADS.
    public static var config: String { String(cString: openblas_get_config()) }

    /// The widest vector instructions a core's kernels use: 3 AVX-512, 2 AVX2 + FMA, 1 AVX, 0 SSE only
    /// (Katmai, Prescott, Core2, Nehalem, Barcelona, Atom... and names this table does not know).
    public static func vectorLevel(ofCore name: String) -> Int {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 3
        case "haswell", "zen", "excavator": return 2
        case "sandybridge", "bulldozer", "piledriver", "steamroller": return 1
        default: return 0
        }
    }

    /// The features' vector level on the same scale as `vectorLevel(ofCore:)`.
    static func vectorLevel(of features: CPUFeatures) -> Int {
        features.hasAVX512 ? 3 : features.hasAVX2 ? 2 : features.flags.contains("avx") ? 1 : 0
    }

    /// The `OPENBLAS_CORETYPE` to use when OpenBLAS's choice `coreName` uses narrower vectors than the CPU
    /// has, else nil. AVX-512: Cooperlake where the CPU has AVX512-BF16 (its bf16 kernels need it; sgemm is
    /// SkylakeX's), SkylakeX otherwise; AVX2 + FMA: Zen on AMD, Haswell elsewhere; AVX only: Sandybridge.
    /// Pure, so the decision is tested on the hosts we do not have.
    public static func recommendedCoreType(features: CPUFeatures, coreName: String) -> String? {
        let host = vectorLevel(of: features)
        guard vectorLevel(ofCore: coreName) < host else { return nil }
        switch host {
        case 3: return features.hasAVX512BF16 ? "Cooperlake" : "SkylakeX"
        case 2: return features.vendor == "AuthenticAMD" ? "Zen" : "Haswell"
        case 1: return "Sandybridge"
        default: return nil
        }
    }

    /// The variable the CLI sets before restarting itself, so it restarts at most once.
    public static let reexecMarker = "EARSHOT_BLAS_REEXEC"

    /// The core type to restart with, or nil to go on: only when the user set neither `OPENBLAS_CORETYPE`
    /// nor the restart marker, and the loaded core is narrower than the CPU (`recommendedCoreType`).
    public static func coreTypeForRestart(features: CPUFeatures, coreName: String, environment: [String: String]) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil, environment[reexecMarker] == nil else { return nil }
        return recommendedCoreType(features: features, coreName: coreName)
    }

    /// For executables: when OpenBLAS loaded a fallback core, sets `OPENBLAS_CORETYPE` from the CPU's features
    /// and replaces the process with a fresh copy of itself (same arguments), once. Call first thing in `main`,
    /// before any thread starts. Returns only if no restart was needed or the restart failed.
    public static func reexecIfOpenBLASFallsBack() {
        #if os(Linux)
        let env = ProcessInfo.processInfo.environment
        let core = coreName
        guard let coreType = coreTypeForRestart(features: .host, coreName: core, environment: env) else { return }
        noticeOnStderr("OpenBLAS chose its \(core) kernels on a CPU with \(CPUFeatures.host.vectorLevel); restarting with OPENBLAS_CORETYPE=\(coreType)")
        setenv("OPENBLAS_CORETYPE", coreType, 1)
        setenv(reexecMarker, "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv returned: it failed; go on with the slow core (the notice at first BLAS use says so again).
        unsetenv(reexecMarker)
        #endif
    }

    /// Said once, at the first BLAS call, when the loaded core is narrower than the CPU (see `recommendedCoreType`).
    static let checkOnce: Void = {
        let core = coreName
        if let coreType = recommendedCoreType(features: .host, coreName: core) {
            let set = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"]
            noticeOnStderr("OpenBLAS runs its \(core) kernels on a CPU with \(CPUFeatures.host.vectorLevel)"
                + (set.map { " (OPENBLAS_CORETYPE is \($0))" } ?? "")
                + ": matrix products in training run up to 2x slower. Start the process with OPENBLAS_CORETYPE=\(coreType) in its environment"
                + " (it is read when the library loads).")
        }
    }()
}
