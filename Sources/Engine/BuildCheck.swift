import Foundation

/// What this build of the engine was compiled for, against what the CPU has.
///
/// Without `-target-cpu` swiftc emits baseline x86-64 (SSE2): the engine's SIMD kernels then split every
/// vector into SSE registers and cannot fuse multiply-adds, and the GEMM micro-kernel is off
/// (`PackedWeight.isUsable`). A plain `swift build -c release`, which is what a package that depends on
/// Earshot gets, measured 4-8x slower than the tuned build (docs/BENCHMARKS.md). SwiftPM forbids
/// `unsafeFlags` in dependencies, so the flags cannot travel with the package; the engine says once, at
/// first use, which flags this CPU wants.
public enum BuildCheck {
    /// The vector level the build was compiled for (scripts/build-flags.sh defines these with -target-cpu):
    /// 3 AVX-512 (EARSHOT_AVX512), 2 AVX2 + FMA (EARSHOT_FMA), 0 baseline.
    public static var compiledLevel: Int {
        #if EARSHOT_AVX512
        return 3
        #elseif EARSHOT_FMA
        return 2
        #else
        return 0
        #endif
    }

    /// The compile-time switches, for reports.
    public static var compiledFeatures: [String] {
        var f: [String] = []
        #if arch(x86_64)
        f.append("x86_64")
        #elseif arch(arm64)
        f.append("arm64")
        #endif
        #if EARSHOT_FMA
        f.append("EARSHOT_FMA")
        #endif
        #if EARSHOT_AVX512
        f.append("EARSHOT_AVX512")
        #endif
        return f
    }

    /// The -target-cpu scripts/build-flags.sh picks for these features (nil: baseline is all there is).
    public static func targetCPU(for features: CPUFeatures) -> String? {
        if features.flags.contains("avx512f") && features.flags.contains("avx512bw") { return "skylake-avx512" }
        if features.hasAVX2 { return "haswell" }
        return nil
    }

    /// The `swift build` flags scripts/build-flags.sh prints on a CPU with these features (kept in step with it).
    public static func buildFlags(for features: CPUFeatures) -> String {
        guard let cpu = targetCPU(for: features) else { return "-c release" }
        var flags = "-c release -Xswiftc -target-cpu -Xswiftc \(cpu) -Xswiftc -DEARSHOT_FMA"
        if cpu == "skylake-avx512" { flags += " -Xswiftc -DEARSHOT_AVX512" }
        return flags
    }

    /// The notice for a build compiled at `compiledLevel` on a CPU with `features`, or nil when the build
    /// already uses what the CPU has (or the CPU is not x86).
    public static func notice(compiledLevel: Int, features: CPUFeatures) -> String? {
        guard let cpu = targetCPU(for: features) else { return nil }
        let wanted = cpu == "skylake-avx512" ? 3 : 2
        guard compiledLevel < wanted else { return nil }
        let built = compiledLevel == 0 ? "for baseline x86-64 (no -target-cpu)" : "for AVX2 only"
        return "this build of Earshot was compiled \(built), but the CPU has \(features.vectorLevel): its own kernels run several"
            + " times slower. Build with `swift build \(buildFlags(for: features))` (scripts/build-flags.sh prints these flags;"
            + " README, \"As a Swift dependency\")."
    }

    /// Said once per process, at the engine's first matrix product.
    static let checkOnce: Void = {
        #if arch(x86_64)
        if let line = notice(compiledLevel: compiledLevel, features: .host) { noticeOnStderr(line) }
        #endif
    }()
}

/// Everything the engine checks about its host once, at its first matrix product.
enum EngineChecks {
    static let once: Void = {
        BuildCheck.checkOnce
        BLASCore.checkOnce
    }()
}
