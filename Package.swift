// swift-tools-version:6.1
// Metanode: a node daemon (the kernel) that hosts feature plugins through one versioned C ABI.
//
// Layers, bottom up:
//   C shims        CRocksDB, CFFI, CZlib (system libraries), CMetanodeShim (crash guard, libffi call) — plus CSodium and the
//                  ABI header (MetanodeABI), which come from plugin-sdk so plugins and kernel share one definition.
//   MetanodeCore   values with no I/O: JSON, semantic versions, manifests, JSON Schema, dependency solving, limits.
//   MetanodeCrypto libsodium: hashes, Ed25519, minisign keys and signatures.
//   MetanodeStorage RocksDB.
//   MetanodeKernel the plugin host: loader, per-plugin host vtables, bus, timers, services, metrics, libffi calls.
//   MetanodeNet    peer-to-peer transport: authenticated, encrypted TCP between nodes (SwiftNIO + libsodium).
//   MetanodeNode   the daemon: data directory, HTTP API (Hummingbird), Services in one ServiceGroup.
//   metanode       the command-line tool.
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "metanode",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "metanode", targets: ["metanode"]),
        .library(name: "MetanodeCore", targets: ["MetanodeCore"]),
        .library(name: "MetanodeCrypto", targets: ["MetanodeCrypto"]),
        .library(name: "MetanodeStorage", targets: ["MetanodeStorage"]),
        .library(name: "MetanodeKernel", targets: ["MetanodeKernel"]),
        .library(name: "MetanodeNet", targets: ["MetanodeNet"]),
        .library(name: "MetanodeNode", targets: ["MetanodeNode"]),
        // BPI's pure core, for Benchmarks/ (LedgerBenchmarks).
        .library(name: "BPICore", targets: ["BPICore"]),
        // Bundled Swift plugin: the SDK's hello-swift example, built here so `make run` ships it.
        .library(name: "HelloSwift", type: .dynamic, targets: ["HelloSwift"]),
        // First-party plugins, bundled by `make bundle`.
        .library(name: "BPI", type: .dynamic, targets: ["BPI"]),
        .library(name: "BPCI", type: .dynamic, targets: ["BPCI"]),
        .library(name: "DockLock", type: .dynamic, targets: ["DockLock"]),
    ],
    dependencies: [
        .package(path: "plugin-sdk"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(
            url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.10.0",
            traits: ["FullFoundation"]),
    ],
    targets: [
        // MARK: C shims
        .systemLibrary(
            name: "CRocksDB", path: "Sources/CRocksDB", pkgConfig: "rocksdb",
            providers: [.apt(["librocksdb-dev"])]),
        .systemLibrary(
            name: "CFFI", path: "Sources/CFFI", pkgConfig: "libffi", providers: [.apt(["libffi-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "CMetanodeShim", dependencies: ["CFFI"], path: "Sources/CMetanodeShim"),

        // MARK: Kernel layers
        .target(name: "MetanodeCore", path: "Sources/MetanodeCore", swiftSettings: strict),
        .target(
            name: "MetanodeCrypto",
            dependencies: ["MetanodeCore", .product(name: "CSodium", package: "plugin-sdk")],
            path: "Sources/MetanodeCrypto", swiftSettings: strict),
        .target(
            name: "MetanodeStorage", dependencies: ["MetanodeCore", "CRocksDB"], path: "Sources/MetanodeStorage",
            swiftSettings: strict),
        .target(
            name: "MetanodeKernel",
            dependencies: [
                "MetanodeCore", "MetanodeCrypto", "MetanodeStorage", "CMetanodeShim", "CZlib",
                .product(name: "MetanodeABI", package: "plugin-sdk"),
                .product(name: "MetanodeHostBridge", package: "plugin-sdk"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/MetanodeKernel", swiftSettings: strict),
        .target(
            name: "MetanodeNet",
            dependencies: [
                "MetanodeCore", "MetanodeCrypto",
                .product(name: "MetanodeHostBridge", package: "plugin-sdk"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Sources/MetanodeNet", swiftSettings: strict),
        .target(
            name: "MetanodeNode",
            dependencies: [
                "MetanodeKernel", "MetanodeNet",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/MetanodeNode", swiftSettings: strict),
        .executableTarget(
            name: "metanode",
            dependencies: [
                "MetanodeNode", "MetanodeKernel", "MetanodeCrypto", "BPICore", "BPCICore", "DockLockCore",
                "DockLockRuntime", .product(name: "MetanodeWire", package: "plugin-sdk"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/metanode", swiftSettings: strict,
            // jemalloc replaces glibc's malloc for the whole daemon, plugins included (the executable's own library
            // comes first in symbol lookup). The node allocates and frees many small buffers on several threads;
            // under glibc, malloc, consolidation and free took about 10% of a validator's CPU in `bench chain`, and
            // jemalloc gave 9-20% more transfers/s in interleaved runs.
            linkerSettings: [.linkedLibrary("jemalloc")]),

        // MARK: Bundled plugins
        .target(
            name: "HelloSwift", dependencies: [.product(name: "MetanodePluginKit", package: "plugin-sdk")],
            path: "plugin-sdk/examples/hello-swift/Sources/HelloSwift"),

        // MARK: Tests
        .testTarget(name: "MetanodeCoreTests", dependencies: ["MetanodeCore"], path: "Tests/MetanodeCoreTests"),
        .testTarget(
            name: "MetanodeCryptoTests", dependencies: ["MetanodeCrypto"], path: "Tests/MetanodeCryptoTests"),
        .testTarget(
            name: "MetanodeStorageTests", dependencies: ["MetanodeStorage"], path: "Tests/MetanodeStorageTests"),
        .testTarget(
            name: "MetanodeNetTests",
            dependencies: [
                "MetanodeNet", "MetanodeCore", "MetanodeCrypto",
                .product(name: "MetanodeHostBridge", package: "plugin-sdk"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Tests/MetanodeNetTests"),
        .testTarget(
            name: "MetanodeKernelTests",
            dependencies: [
                "MetanodeKernel", "MetanodeCore", "MetanodeCrypto", "MetanodeStorage",
                .product(name: "MetanodeABI", package: "plugin-sdk"),
                .product(name: "MetanodeHostBridge", package: "plugin-sdk"),
                .product(name: "MetanodePluginKit", package: "plugin-sdk"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/MetanodeKernelTests", exclude: ["Fixtures"]),
        .testTarget(
            name: "MetanodePluginKitTests",
            dependencies: [
                "HelloSwift",
                .product(name: "MetanodePluginKit", package: "plugin-sdk"),
                .product(name: "MetanodePluginTesting", package: "plugin-sdk"),
            ],
            path: "Tests/MetanodePluginKitTests"),
        .testTarget(
            name: "MetanodeWireTests",
            dependencies: [.product(name: "MetanodeWire", package: "plugin-sdk"),
                           .product(name: "MetanodePluginTesting", package: "plugin-sdk")],
            path: "Tests/MetanodeWireTests"),
        // MARK: First-party plugins
        // BPI's pure parts: blocks, validator sets, QBFT as a state machine. No I/O; the plugin wires it to a host.
        .target(
            name: "BPICore",
            dependencies: [
                .product(name: "MetanodeWire", package: "plugin-sdk"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            path: "Plugins/BPI/Core", swiftSettings: strict),
        .target(
            name: "BPIPlugin",
            dependencies: [
                "BPICore", .product(name: "MetanodePluginKit", package: "plugin-sdk"),
                .product(name: "MetanodeABI", package: "plugin-sdk"),
                .product(name: "MetanodeWire", package: "plugin-sdk"),
            ],
            path: "Plugins/BPI/Plugin", swiftSettings: strict),
        // Only the entry symbol: every plugin exports metanode_plugin_entry_v1, so tests link BPIPlugin instead.
        .target(
            name: "BPI", dependencies: ["BPIPlugin", .product(name: "MetanodePluginKit", package: "plugin-sdk")],
            path: "Plugins/BPI/Entry", swiftSettings: strict),
        // BPCI's pure parts: tokens, addresses, the bank's rules and invariants.
        .target(
            name: "BPCICore", dependencies: [.product(name: "MetanodeWire", package: "plugin-sdk")],
            path: "Plugins/BPCI/Core", swiftSettings: strict),
        .target(
            name: "BPCIPlugin",
            dependencies: [
                "BPCICore", .product(name: "MetanodePluginKit", package: "plugin-sdk"),
                .product(name: "MetanodeABI", package: "plugin-sdk"),
                .product(name: "MetanodeWire", package: "plugin-sdk"),
            ],
            path: "Plugins/BPCI/Plugin", swiftSettings: strict),
        .target(
            name: "BPCI", dependencies: ["BPCIPlugin", .product(name: "MetanodePluginKit", package: "plugin-sdk")],
            path: "Plugins/BPCI/Entry", swiftSettings: strict),
        .testTarget(
            name: "BPCICoreTests",
            dependencies: [
                "BPCICore", .product(name: "MetanodeWire", package: "plugin-sdk"),
                .product(name: "MetanodePluginTesting", package: "plugin-sdk"),
            ],
            path: "Tests/BPCICoreTests"),
        // DockLock's pure parts: receipts and their chain, the seccomp profile, image manifests and layer rules.
        .target(
            name: "DockLockCore", dependencies: [.product(name: "MetanodeWire", package: "plugin-sdk")],
            path: "Plugins/DockLock/Core", swiftSettings: strict),
        // The few steps Swift cannot take safely in a multi-threaded process: clone into namespaces, pivot_root,
        // capabilities, seccomp, exec. Plus libseccomp, to compile a profile to BPF once.
        .target(
            name: "CDockLock", path: "Plugins/DockLock/CRuntime",
            linkerSettings: [.linkedLibrary("seccomp")]),
        // DockLock's I/O: the image store, layer unpacking, cgroups, containers.
        .target(
            name: "DockLockRuntime",
            dependencies: ["DockLockCore", "CDockLock", "CZlib", .product(name: "MetanodeWire", package: "plugin-sdk")],
            path: "Plugins/DockLock/Runtime", swiftSettings: strict),
        .target(
            name: "DockLockPlugin",
            dependencies: [
                // BPCICore for the ledger account's address (Address(publicKey:)), a pure values target.
                "DockLockCore", "DockLockRuntime", "BPCICore",
                .product(name: "MetanodePluginKit", package: "plugin-sdk"),
                .product(name: "MetanodeABI", package: "plugin-sdk"),
                .product(name: "MetanodeWire", package: "plugin-sdk"),
            ],
            path: "Plugins/DockLock/Plugin", swiftSettings: strict),
        .target(
            name: "DockLock", dependencies: ["DockLockPlugin", .product(name: "MetanodePluginKit", package: "plugin-sdk")],
            path: "Plugins/DockLock/Entry", swiftSettings: strict),
        .testTarget(
            name: "DockLockCoreTests",
            dependencies: ["DockLockCore", .product(name: "MetanodeWire", package: "plugin-sdk")],
            path: "Tests/DockLockCoreTests"),
        .testTarget(
            name: "DockLockRuntimeTests",
            dependencies: [
                "DockLockRuntime", "DockLockCore", "DockLockPlugin",
                .product(name: "MetanodeWire", package: "plugin-sdk"),
                .product(name: "MetanodePluginTesting", package: "plugin-sdk"),
            ],
            path: "Tests/DockLockRuntimeTests", exclude: ["Fixtures"]),
        // The SDK's example ledger module in C, linked into tests without its entry symbol.
        .target(
            name: "CounterModule", path: "plugin-sdk/examples/counter-module", exclude: ["Makefile", "README.md",
                                                                                      "metanode-plugin.json"],
            sources: ["counter.c"], publicHeadersPath: "include",
            cSettings: [.define("COUNTER_NO_ENTRY_SYMBOL"), .headerSearchPath("../../include")]),
        .testTarget(
            name: "BPITests",
            dependencies: [
                "BPIPlugin", "CounterModule", "BPICore", "BPCIPlugin", "BPCICore", "DockLockPlugin", "DockLockCore",
                .product(name: "MetanodeWire", package: "plugin-sdk"),
                .product(name: "MetanodeABI", package: "plugin-sdk"),
                .product(name: "MetanodePluginKit", package: "plugin-sdk"),
                .product(name: "MetanodePluginTesting", package: "plugin-sdk"),
            ],
            path: "Tests/BPITests"),
        .testTarget(
            name: "BPICoreTests",
            dependencies: [
                "BPICore", .product(name: "MetanodeWire", package: "plugin-sdk"),
                .product(name: "MetanodePluginTesting", package: "plugin-sdk"),
            ],
            path: "Tests/BPICoreTests"),
        // Starts real `metanode` processes; needs `swift build` first (make test does it).
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "MetanodeKernel", "MetanodeCrypto", "MetanodeCore", "BPICore",
                .product(name: "MetanodeWire", package: "plugin-sdk"),
            ],
            path: "Tests/EndToEndTests", exclude: ["Fixtures"]),
    ]
)
