// swift-tools-version:6.1
// Builds hello-swift on its own against the plugin SDK two directories up:
//   swift build -c release   →   .build/release/libHelloSwift.so
// (Inside the Metanode repository the root package builds it too, as a bundled plugin.)
import PackageDescription

let package = Package(
    name: "hello-swift",
    products: [
        .library(name: "HelloSwift", type: .dynamic, targets: ["HelloSwift"]),
    ],
    dependencies: [
        .package(path: "../.."),
    ],
    targets: [
        .target(
            name: "HelloSwift",
            dependencies: [.product(name: "MetanodePluginKit", package: "plugin-sdk")],
            path: "Sources/HelloSwift"),
    ]
)
