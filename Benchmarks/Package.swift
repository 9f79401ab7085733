// swift-tools-version:6.1
// Metanode's benchmarks, in their own package so package-benchmark stays out of the product's dependency graph.
//   cd Benchmarks && swift package benchmark            (or `make bench` from the repository root)
import PackageDescription

let package = Package(
    name: "MetanodeBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "metanode", path: ".."),
        .package(path: "../plugin-sdk"),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.0", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "KernelBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "MetanodeKernel", package: "metanode"),
                .product(name: "MetanodeCore", package: "metanode"),
                .product(name: "MetanodeCrypto", package: "metanode"),
                .product(name: "MetanodeStorage", package: "metanode"),
                .product(name: "MetanodeHostBridge", package: "plugin-sdk"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/KernelBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        .executableTarget(
            name: "LedgerBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "BPICore", package: "metanode"),
                .product(name: "MetanodeWire", package: "plugin-sdk"),
            ],
            path: "Benchmarks/LedgerBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    ]
)
