// swift-tools-version:6.1
// libFuzzer targets for Metanode's parsers of untrusted bytes, in their own package so the sanitizer flags stay out of
// the product build. Build and run (Linux):
//   cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer,address --product NetFrameFuzzer
//   .build/release/NetFrameFuzzer -runs=1000000 Corpus/NetFrameFuzzer
import PackageDescription

let package = Package(
    name: "MetanodeFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "metanode", path: ".."),
        .package(path: "../plugin-sdk"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
    ],
    targets: [
        .target(name: "CFuzzerDriver", path: "CFuzzerDriver"),
        // The network transport's decoders: length prefix, encrypted frames, handshake messages and state machine.
        .executableTarget(
            name: "NetFrameFuzzer",
            dependencies: [
                "CFuzzerDriver",
                .product(name: "MetanodeNet", package: "metanode"),
                .product(name: "MetanodeCrypto", package: "metanode"),
                .product(name: "MetanodeHostBridge", package: "plugin-sdk"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "NetFrameFuzzer"),
    ]
)
