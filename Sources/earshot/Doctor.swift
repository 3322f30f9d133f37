import ArgumentParser
import Engine
import Foundation

/// `earshot doctor`: what this build was compiled for, what the CPU has, and which BLAS kernels run.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the build's compiled features, the host CPU's features and the BLAS kernel in use (JSON).",
        discussion: """
            "build_notice" and "blas_recommended_coretype" are null when the build and OpenBLAS already use what the \
            CPU has. The earshot CLI restarts itself once with OPENBLAS_CORETYPE set when OpenBLAS loaded a kernel set \
            narrower than the CPU ("blas_restarted": true); a program using the library must set it itself.
            """)

    @Flag(help: "Print only the OPENBLAS_CORETYPE this CPU wants (empty when OpenBLAS's own choice fits), for scripts.")
    var coretype = false

    func run() throws {
        let host = CPUFeatures.host, core = BLASCore.coreName
        let env = ProcessInfo.processInfo.environment
        if coretype {
            // After the CLI's own restart the variable is set; otherwise whatever the features call for.
            print(env[BLASCore.reexecMarker] != nil ? env["OPENBLAS_CORETYPE"] ?? "" : BLASCore.recommendedCoreType(features: host, coreName: core) ?? "")
            return
        }
        let report: [String: Any] = [
            "compiled_features": BuildCheck.compiledFeatures,
            "compiled_level": ["baseline", "", "avx2", "avx512"][BuildCheck.compiledLevel],
            "build_flags_for_host": BuildCheck.buildFlags(for: host),
            "build_notice": BuildCheck.notice(compiledLevel: BuildCheck.compiledLevel, features: host) ?? NSNull(),
            "host_model_name": host.modelName,
            "host_vendor": host.vendor,
            "host_family": host.family ?? NSNull(),
            "host_model": host.model ?? NSNull(),
            "host_features": host.summary,
            "host_vector_level": host.vectorLevel,
            "host_bf16": host.hasAVX512BF16 || host.hasAMX,
            "host_amx": host.hasAMX,
            "blas_core": core,
            "blas_config": BLASCore.config,
            "blas_coretype_env": env["OPENBLAS_CORETYPE"] ?? NSNull(),
            "blas_restarted": env[BLASCore.reexecMarker] != nil,
            "blas_recommended_coretype": BLASCore.recommendedCoreType(features: host, coreName: core) ?? NSNull(),
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
