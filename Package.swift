// swift-tools-version:6.0
import PackageDescription

// Layers point downwards only: C libraries <- Engine <- NN, Audio <- Models <- Inference <- Training <- earshot;
// Text <- CLAP <- Training (the contrastive task).
// CPU-specific code generation (-target-cpu) is chosen by scripts/build-flags.sh, not here, so the
// package stays usable as a dependency (SwiftPM forbids unsafeFlags in dependencies).
let package = Package(
    name: "Earshot",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Audio", targets: ["Audio"]),
        .library(name: "Models", targets: ["Models"]),
        .library(name: "Inference", targets: ["Inference"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Text", targets: ["Text"]),
        .library(name: "CLAP", targets: ["CLAP"]),
        .library(name: "Earshot", targets: ["Earshot"]),
        .executable(name: "earshot", targets: ["earshot"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // oneDNN 2.6.3 (no .pc file): blocked AVX-512/AMX convolutions with runtime CPU dispatch.
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CSndfile", path: "Sources/CSndfile", pkgConfig: "sndfile", providers: [.apt(["libsndfile1-dev"])]),
        .systemLibrary(name: "CSoxr", path: "Sources/CSoxr", pkgConfig: "soxr", providers: [.apt(["libsoxr-dev"])]),
        .systemLibrary(name: "CFFTW", path: "Sources/CFFTW", pkgConfig: "fftw3f", providers: [.apt(["libfftw3-dev"])]),
        .target(name: "Engine", dependencies: ["CBLAS", "CDNNL"]),
        .target(name: "Audio", dependencies: ["Engine", "CSndfile", "CSoxr", "CFFTW"]),
        .target(name: "NN", dependencies: ["Engine"]),
        .target(name: "Models", dependencies: ["NN", "Engine", "Audio"]),
        .target(name: "Inference", dependencies: ["Models", "NN", "Engine", "Audio"]),
        .target(name: "Training", dependencies: ["Inference", "Models", "NN", "Engine", "Audio", "Text", "CLAP"]),
        // Tokenizers and text encoders (BERT, RoBERTa): the text tower of CLAP.
        .target(name: "Text", dependencies: ["NN", "Engine"]),
        // CLAP: the HTSAT audio tower (in Models) and a Text tower in one embedding space; its search index
        // and retrieval metrics are generic (Inference).
        .target(name: "CLAP", dependencies: ["Inference", "Models", "Text", "Audio", "NN", "Engine"]),
        // The umbrella a Swift app imports: every library, re-exported.
        .target(name: "Earshot", dependencies: ["Engine", "NN", "Audio", "Models", "Inference", "Training", "Text", "CLAP"]),
        .executableTarget(name: "earshot", dependencies: [
            "Engine", "NN", "Audio", "Models", "Inference", "Training", "Text", "CLAP",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "EngineTests", dependencies: ["Engine"], exclude: ["Fixtures"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Engine"], exclude: ["Fixtures"]),
        .testTarget(name: "AudioTests", dependencies: ["Audio", "Engine", "NN"], exclude: ["Fixtures"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "NN", "Engine"], exclude: ["Fixtures"]),
        .testTarget(name: "TextTests", dependencies: ["Text", "NN", "Engine"], exclude: ["Fixtures"]),
        .testTarget(name: "CLAPTests", dependencies: ["CLAP", "Inference", "Models", "Text", "Audio", "NN", "Engine"], exclude: ["Fixtures"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Inference", "Models", "Audio", "NN", "Engine", "Text", "CLAP"]),
        // Only the public API, through the umbrella (no @testable).
        .testTarget(name: "PublicAPITests", dependencies: ["Earshot"]),
    ]
)
