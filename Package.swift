// swift-tools-version:6.0
import PackageDescription

// Layers point downwards only: CBLAS <- Engine <- NN <- Training <- earshot.
// CPU-specific code generation (-target-cpu) is chosen by scripts/build-flags.sh, not here, so the
// package stays usable as a dependency (SwiftPM forbids unsafeFlags in dependencies).
let package = Package(
    name: "Earshot",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Training", targets: ["Training"]),
        .executable(name: "earshot", targets: ["earshot"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "Engine", dependencies: ["CBLAS"]),
        .target(name: "NN", dependencies: ["Engine"]),
        .target(name: "Training", dependencies: ["NN", "Engine"]),
        .executableTarget(name: "earshot", dependencies: [
            "Engine", "NN", "Training",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "EngineTests", dependencies: ["Engine"], exclude: ["Fixtures"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Engine"], exclude: ["Fixtures"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "NN", "Engine"]),
    ]
)
