import Benchmark
import Foundation
import Logging
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeKernel
import MetanodeStorage

/// Paths of this checkout.
enum Paths {
    static let benchmarks: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static var root: String { (benchmarks as NSString).deletingLastPathComponent }
    static var sdkInclude: String { root + "/plugin-sdk/include" }
    static var benchPlugin: String { benchmarks + "/Fixtures/benchplugin.c" }

    static func scratch(_ label: String) -> String {
        var template = Array("/tmp/metanode-bench-\(label)-XXXXXX".utf8CString)
        return String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    }

    /// Builds a package directory for the bench plugin under `name`.
    static func benchPackage(in directory: String, name: String, subscribe: Bool) -> String {
        let package = "\(directory)/\(name)"
        try! FileManager.default.createDirectory(atPath: package, withIntermediateDirectories: true)
        let library = "lib\(name.replacingOccurrences(of: "-", with: "_")).so"
        var arguments = ["-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-I\(sdkInclude)",
                         "-DPLUGIN_NAME=\"\(name)\"", "-o", "\(package)/\(library)", benchPlugin, "-lrocksdb"]
        if subscribe { arguments.insert("-DSUBSCRIBE", at: 0) }
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        cc.arguments = arguments
        try! cc.run()
        cc.waitUntilExit()
        precondition(cc.terminationStatus == 0, "cc failed for \(name)")
        let manifest = """
            {"name": "\(name)", "version": "1.0.0", "abi": "1.0", "library": {"file": "\(library)"},
             "capabilities": ["kv", "bus"]}
            """
        try! manifest.write(toFile: "\(package)/metanode-plugin.json", atomically: true, encoding: .utf8)
        return package
    }
}

/// A kernel in this process with two bench plugins loaded and started, and their exported functions resolved.
final class Fixture: @unchecked Sendable {
    static let shared = Fixture()
    static let keySpace: UInt64 = 100_000
    static let messagesPerSecond = BenchmarkMetric.custom("messages/s", polarity: .prefersLarger,
                                                          useScalingFactor: false)
    static let vtableNs = BenchmarkMetric.custom("vtable ns/op", polarity: .prefersSmaller, useScalingFactor: false)
    static let directNs = BenchmarkMetric.custom("direct ns/op", polarity: .prefersSmaller, useScalingFactor: false)


    typealias Op = @convention(c) (UInt64) -> Int32
    let putVtable: Op, putDirect: Op, getVtable: Op, getDirect: Op
    let publish: @convention(c) (UInt64, UInt32) -> Int32
    let received: @convention(c) () -> UInt64
    let kernel: Kernel

    private init() {
        let directory = Paths.scratch("kernel")
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let store = try! Store(path: directory + "/db")
        let kernel = Kernel(store: store, nodeKey: Ed25519KeyPair.generate(), logger: logger, crashGuard: nil)
        self.kernel = kernel

        func load(_ name: String, subscribe: Bool) -> UnsafeMutableRawPointer {
            let package = try! PluginPackage.open(Paths.benchPackage(in: directory, name: name, subscribe: subscribe))
            let runtime = try! kernel.load(LoadRequest(package: package, grants: .all, bundled: false,
                                                      config: Array("{}".utf8)))
            let done = DispatchSemaphore(value: 0)
            Task {
                try! await kernel.start(runtime)
                done.signal()
            }
            done.wait()
            return dlopen(package.libraryPath, RTLD_NOW | RTLD_NOLOAD)!
        }
        let publisher = load("bench-pub", subscribe: false)
        let subscriber = load("bench-sub", subscribe: true)

        func symbol<T>(_ handle: UnsafeMutableRawPointer, _ name: String, as type: T.Type) -> T {
            unsafeBitCast(dlsym(handle, name)!, to: type)
        }
        putVtable = symbol(publisher, "bench_kv_put_vtable", as: Op.self)
        getVtable = symbol(publisher, "bench_kv_get_vtable", as: Op.self)
        putDirect = symbol(publisher, "bench_kv_put_direct", as: Op.self)
        getDirect = symbol(publisher, "bench_kv_get_direct", as: Op.self)
        publish = symbol(publisher, "bench_bus_publish", as: (@convention(c) (UInt64, UInt32) -> Int32).self)
        received = symbol(subscriber, "bench_bus_received", as: (@convention(c) () -> UInt64).self)
        let open = symbol(publisher, "bench_direct_open", as: (@convention(c) (UnsafePointer<CChar>) -> Int32).self)
        precondition(open(directory + "/direct-db") == 0)
        // Both databases hold the same keys before the get benchmarks run.
        for key in 0..<Self.keySpace {
            precondition(putVtable(key) == 0 && putDirect(key) == 0)
        }
    }
}

/// A data directory with six signed, installed, enabled trivial plugins, and the release `metanode` binary.
final class StartupFixture: @unchecked Sendable {
    static let shared = StartupFixture()
    let data: DataDirectory
    let binary: String

    private init() {
        let candidates = [ProcessInfo.processInfo.environment["METANODE_BIN"], Paths.root + "/.build/release/metanode",
                          Paths.root + "/.build/debug/metanode"].compactMap { $0 }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            fatalError("no metanode binary: run `swift build -c release` in \(Paths.root) or set METANODE_BIN")
        }
        binary = found
        print("node start benchmark uses \(binary)")
        let directory = Paths.scratch("startup")
        data = DataDirectory(directory + "/data")
        _ = try! NodeSetup.initialize(data, dev: false, bundledPluginsDirectory: nil, httpListen: "127.0.0.1:0",
                                      nodeName: "bench")
        let key = MinisignSecretKey.generate()
        try! data.trustStore.add(key.publicKey)
        let manager = PluginManager(data)
        for index in 1...6 {
            let package = Paths.benchPackage(in: directory, name: "trivial-\(index)", subscribe: index % 2 == 0)
            _ = try! PluginPackage.sign(directory: package, key: key)
            _ = try! manager.install(path: package, allowUnsigned: false)
            _ = try! manager.enable("trivial-\(index)", grants: nil)
        }
    }

    /// One sample: spawn, wait for run/http.addr, stop measuring, SIGTERM, wait for exit.
    func startOnce(_ benchmark: Benchmark) throws {
        try? FileManager.default.removeItem(atPath: data.httpAddressPath)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["node", "start", "--data-dir", data.root, "--log-level", "error"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        benchmark.startMeasurement()
        try process.run()
        while !FileManager.default.fileExists(atPath: data.httpAddressPath) {
            precondition(process.isRunning, "metanode exited before it was ready")
            usleep(200)
        }
        benchmark.stopMeasurement()
        process.terminate()
        process.waitUntilExit()
        precondition(process.terminationStatus == 0, "metanode exited with \(process.terminationStatus)")
    }
}
