// swift-tools-version:6.1
// The Metanode plugin SDK: the C ABI as a Swift module, MetanodePluginKit (a safe Swift layer over it),
// MetanodePluginTesting (an in-memory host so plugin logic is unit-tested without a node or dlopen) and
// MetanodeHostBridge (the host side of the ABI, which the kernel and the in-memory host share).
// A C plugin needs only include/metanode/plugin.h; a Swift plugin depends on this package.
import PackageDescription

let package = Package(
    name: "plugin-sdk",
    products: [
        .library(name: "MetanodeABI", targets: ["MetanodeABI"]),
        .library(name: "MetanodePluginKit", targets: ["MetanodePluginKit"]),
        .library(name: "MetanodePluginTesting", targets: ["MetanodePluginTesting"]),
        .library(name: "MetanodeHostBridge", targets: ["MetanodeHostBridge"]),
        .library(name: "CSodium", targets: ["CSodium"]),
        .library(name: "MetanodeWire", targets: ["MetanodeWire"]),
    ],
    targets: [
        .systemLibrary(name: "MetanodeABI", path: "include"),
        .systemLibrary(
            name: "CSodium", path: "swift/CSodium", pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]),
        // PeerID, shared by the plugin side and the host side so both mean one type.
        .target(name: "MetanodePeer", path: "swift/MetanodePeer"),
        // The wire encoding (docs/wire.md) and the transaction envelope, with the libsodium primitives they need:
        // pure code that plugins, wallets and offline checkers share.
        .target(name: "MetanodeWire", dependencies: ["CSodium"], path: "swift/MetanodeWire"),
        .target(name: "MetanodePluginKit", dependencies: ["MetanodeABI", "MetanodePeer"], path: "swift/MetanodePluginKit"),
        // The host side of the ABI, shared by the kernel and MetanodePluginTesting so both enforce one contract.
        .target(name: "MetanodeHostBridge", dependencies: ["MetanodeABI", "MetanodePeer"], path: "swift/MetanodeHostBridge"),
        .target(
            name: "MetanodePluginTesting",
            dependencies: ["MetanodePluginKit", "MetanodeHostBridge", "MetanodeABI", "CSodium"],
            path: "swift/MetanodePluginTesting"),
    ]
)
