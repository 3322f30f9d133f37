import XCTest
@testable import Engine

/// The host checks (HostCPU.swift, BLASCore.swift, BuildCheck.swift): which OPENBLAS_CORETYPE a CPU
/// calls for when OpenBLAS loaded a narrower kernel set, when the CLI restarts, and which build flags
/// the engine asks for. The decisions are pure functions of (features, core name), so hosts we do not
/// have (Sapphire Rapids, AVX2-only Intel and AMD, SSE-only) are written out here.
final class HostCheckTests: XCTestCase {
    static let sapphireRapidsFlags = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 avx_vnni"
    static let skylakeXFlags = "sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl"
    static let avx2Flags = "sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2"

    func features(_ flags: String, vendor: String = "GenuineIntel") -> CPUFeatures {
        CPUFeatures(flags: Set(flags.split(separator: " ").map(String.init)), vendor: vendor)
    }

    func testParsesTheFirstProcessorOfCpuinfo() {
        let text = """
            processor\t: 0
            vendor_id\t: GenuineIntel
            cpu family\t: 6
            model\t\t: 207
            model name\t: Intel(R) Xeon(R) Platinum 8581C CPU
            flags\t\t: \(Self.sapphireRapidsFlags)

            processor\t: 1
            vendor_id\t: AuthenticAMD
            flags\t\t: sse sse2
            """
        let f = CPUFeatures.parse(cpuinfo: text)
        XCTAssertEqual(f.vendor, "GenuineIntel")
        XCTAssertEqual(f.family, 6)
        XCTAssertEqual(f.model, 207)
        XCTAssertEqual(f.modelName, "Intel(R) Xeon(R) Platinum 8581C CPU")
        XCTAssertTrue(f.hasAVX512 && f.hasAVX512BF16 && f.hasAMX && f.hasVNNI)
        XCTAssertEqual(f.vectorLevel, "avx512")
    }

    func testFallbackCoresOnWideCPUsGetACoreTypeFromTheFeatures() {
        // The Sapphire Rapids guest of issue 26: OpenBLAS 0.3.21 loaded Prescott.
        XCTAssertEqual(BLASCore.recommendedCoreType(features: features(Self.sapphireRapidsFlags), coreName: "Prescott"), "Cooperlake")
        XCTAssertEqual(BLASCore.recommendedCoreType(features: features(Self.skylakeXFlags), coreName: "Prescott"), "SkylakeX")
        XCTAssertEqual(BLASCore.recommendedCoreType(features: features(Self.skylakeXFlags), coreName: "Haswell"), "SkylakeX")
        XCTAssertEqual(BLASCore.recommendedCoreType(features: features(Self.avx2Flags, vendor: "AuthenticAMD"), coreName: "Prescott"), "Zen")
        XCTAssertEqual(BLASCore.recommendedCoreType(features: features(Self.avx2Flags), coreName: "Nehalem"), "Haswell")
        XCTAssertEqual(BLASCore.recommendedCoreType(features: features(Self.avx2Flags), coreName: "Sandybridge"), "Haswell")
        XCTAssertEqual(BLASCore.recommendedCoreType(features: features(Self.avx2Flags), coreName: "SomeFutureName"), "Haswell")
        XCTAssertEqual(BLASCore.recommendedCoreType(features: features("sse sse2 avx"), coreName: "Core2"), "Sandybridge")
    }

    func testCoresThatFitTheCPUAreLeftAlone() {
        XCTAssertNil(BLASCore.recommendedCoreType(features: features(Self.sapphireRapidsFlags), coreName: "Cooperlake"))
        XCTAssertNil(BLASCore.recommendedCoreType(features: features(Self.sapphireRapidsFlags), coreName: "SkylakeX"))
        XCTAssertNil(BLASCore.recommendedCoreType(features: features(Self.sapphireRapidsFlags), coreName: "SapphireRapids"))
        XCTAssertNil(BLASCore.recommendedCoreType(features: features(Self.avx2Flags), coreName: "Haswell"))
        XCTAssertNil(BLASCore.recommendedCoreType(features: features(Self.avx2Flags, vendor: "AuthenticAMD"), coreName: "ZEN"))
        XCTAssertNil(BLASCore.recommendedCoreType(features: features("sse sse2 sse3"), coreName: "Prescott"))
        XCTAssertNil(BLASCore.recommendedCoreType(features: CPUFeatures(flags: []), coreName: "Prescott"), "unknown host: no advice")
    }

    func testTheCLIRestartsOnlyWhenNeitherTheUserNorAnEarlierStartSetTheCore() {
        let spr = features(Self.sapphireRapidsFlags)
        XCTAssertEqual(BLASCore.coreTypeForRestart(features: spr, coreName: "Prescott", environment: [:]), "Cooperlake")
        XCTAssertNil(BLASCore.coreTypeForRestart(features: spr, coreName: "Prescott", environment: ["OPENBLAS_CORETYPE": "Haswell"]))
        XCTAssertNil(BLASCore.coreTypeForRestart(features: spr, coreName: "Prescott", environment: [BLASCore.reexecMarker: "1"]))
        XCTAssertNil(BLASCore.coreTypeForRestart(features: spr, coreName: "Cooperlake", environment: [:]))
    }

    func testBuildNoticeNamesTheFlagsTheCPUWants() throws {
        let avx512 = features(Self.skylakeXFlags)
        let notice = try XCTUnwrap(BuildCheck.notice(compiledLevel: 0, features: avx512))
        XCTAssertTrue(notice.contains("swift build -c release -Xswiftc -target-cpu -Xswiftc skylake-avx512 -Xswiftc -DEARSHOT_FMA -Xswiftc -DEARSHOT_AVX512"), notice)
        XCTAssertNotNil(BuildCheck.notice(compiledLevel: 2, features: avx512), "an AVX2 build on an AVX-512 CPU")
        XCTAssertNil(BuildCheck.notice(compiledLevel: 3, features: avx512))
        let avx2Notice = try XCTUnwrap(BuildCheck.notice(compiledLevel: 0, features: features(Self.avx2Flags)))
        XCTAssertTrue(avx2Notice.contains("-target-cpu -Xswiftc haswell -Xswiftc -DEARSHOT_FMA`"), avx2Notice)
        XCTAssertNil(BuildCheck.notice(compiledLevel: 2, features: features(Self.avx2Flags)))
        XCTAssertNil(BuildCheck.notice(compiledLevel: 0, features: features("sse sse2 sse3")), "baseline is all such a CPU has")
    }

    /// The flags the engine asks for are the ones scripts/build-flags.sh prints on this host.
    func testBuildFlagsMatchTheScriptOnThisHost() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("scripts/build-flags.sh")
        guard FileManager.default.fileExists(atPath: script.path), !CPUFeatures.host.flags.isEmpty else {
            throw XCTSkip("needs scripts/build-flags.sh and /proc/cpuinfo")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script.path]
        var env = ProcessInfo.processInfo.environment
        env["EARSHOT_CPU"] = nil; env["EARSHOT_WIDE_KERNEL"] = nil
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run(); p.waitUntilExit()
        let printed = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(printed.trimmingCharacters(in: .whitespacesAndNewlines), BuildCheck.buildFlags(for: .host))
    }

    /// The kernels this process runs: fails, naming them, where OpenBLAS loaded a set narrower than the CPU
    /// (scripts/test.sh sets OPENBLAS_CORETYPE the way the CLI does, so the suite runs the right kernels).
    func testLoadedOpenBLASKernelsFitTheCPU() {
        let core = BLASCore.coreName
        XCTAssertFalse(core.isEmpty)
        XCTAssertTrue(BLASCore.config.contains("OpenBLAS"), BLASCore.config)
        let advice = BLASCore.recommendedCoreType(features: .host, coreName: core)
        XCTAssertNil(advice, "OpenBLAS runs its \(core) kernels on a CPU with \(CPUFeatures.host.vectorLevel): set OPENBLAS_CORETYPE=\(advice ?? "")")
    }
}
