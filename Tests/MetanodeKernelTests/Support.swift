import Foundation
import Logging
import MetanodeABI
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
@testable import MetanodeKernel
import MetanodeStorage
import Testing

/// Paths in this checkout.
enum Repo {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var header: String { root + "/plugin-sdk/include/metanode/plugin.h" }
    static var sdkInclude: String { root + "/plugin-sdk/include" }
    static var shim: String { root + "/Sources/CMetanodeShim" }
    static var fixtures: String { root + "/Tests/MetanodeKernelTests/Fixtures" }
}

/// A scratch directory removed when the last reference goes.
final class Scratch: Sendable {
    let path: String

    init(_ label: String) throws {
        var template = Array("/tmp/metanode-kernel-\(label)-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: try #require(created))
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func write(_ text: String, to name: String) throws {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
    }
}

struct CommandResult {
    var status: Int32
    var uncaughtSignal: Bool
    var output: String
}

/// Runs a program to completion; stdout and stderr go to one file (no pipe can fill up).
func run(_ executable: String, _ arguments: [String]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let outputPath = NSTemporaryDirectory() + "metanode-kernel-out-\(UUID().uuidString)"
    _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: outputPath) }
    let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
    process.standardOutput = output
    process.standardError = output
    try process.run()
    process.waitUntilExit()
    try? output.close()
    let text = String(decoding: FileManager.default.contents(atPath: outputPath) ?? Data(), as: UTF8.self)
    return CommandResult(status: process.terminationStatus,
                         uncaughtSignal: process.terminationReason == .uncaughtSignal, output: text)
}

/// Compiles fixture C sources with /usr/bin/cc: a plugin library by default, or a program with `extraArguments`.
/// `includes` come before the SDK's include directory, so a fixture can be built against another copy of the header.
func compileC(_ sources: [String], output: String, defines: [String: String] = [:], shared: Bool = true,
              includes: [String] = [], extraArguments: [String] = []) throws {
    var arguments = shared ? ["-shared", "-fPIC", "-fvisibility=hidden"] : []
    arguments += ["-O1", "-Wall", "-Wextra", "-Werror"] + includes.map { "-I\($0)" }
    arguments += ["-I\(Repo.sdkInclude)", "-o", output] + extraArguments
    for (name, value) in defines.sorted(by: { $0.key < $1.key }) { arguments.append("-D\(name)=\(value)") }
    arguments += sources
    let result = try run("/usr/bin/cc", arguments)
    try #require(result.status == 0, "cc \(arguments.joined(separator: " ")) failed:\n\(result.output)")
}

/// Every function Fixtures/probe.c exports, by the C prototype its manifest declares (export name = symbol).
enum Probe {
    static let exports = [
        "const char *last_error_text(void)",
        "uint64_t host_struct_size(void)",
        "uint64_t c_sizeof_host_api(void)",
        "int32_t try_kv_put(const char *key, const char *value)",
        "int32_t try_kv_get(const char *key)",
        "const char *kv_value(void)",
        "int32_t subscribe(const char *topic)",
        "int32_t publish(const char *topic, const char *payload)",
        "uint32_t last_delivered(void)",
        "uint32_t listeners(const char *topic)",
        "int32_t request(const char *topic, const char *payload, uint32_t timeout_ms)",
        "int32_t reply_with_token(uint64_t token, const char *payload)",
        "void set_auto_reply(const char *text)",
        "const char *received_log(void)",
        "int32_t received_total(void)",
        "uint64_t last_request_token(void)",
        "const char *replies(void)",
        "int32_t start_timer(uint64_t delay_ms, uint64_t interval_ms)",
        "int32_t cancel_timer(void)",
        "int32_t timer_fires(void)",
        "int32_t export_service(const char *name, uint32_t major, uint32_t minor)",
        "int32_t lookup_service(const char *name, uint32_t major, uint32_t min_minor)",
        "uint32_t found_service_minor(void)",
        "int64_t call_found_add(int64_t a, int64_t b)",
        "int32_t register_metric(int32_t kind, const char *name)",
        "uint64_t last_metric(void)",
        "int32_t counter_add(uint64_t id, uint64_t delta)",
        "int32_t histogram_observe(uint64_t id, double value)",
    ]
}

/// Every function Fixtures/ffi.c exports.
enum FFIFixture {
    static let exports = [
        "int32_t i32_negate(int32_t x)",
        "int64_t i64_echo(int64_t x)",
        "uint32_t u32_complement(uint32_t x)",
        "uint64_t u64_echo(uint64_t x)",
        "double f64_multiply(double x, double y)",
        "const char *str_upper(const char *s)",
        "uint64_t str_bytes(const char *s)",
        "uint64_t bytes_len(mn_bytes data)",
        "uint64_t bytes_fnv1a(mn_bytes data)",
        "void bump(void)",
        "int32_t bumps(void)",
        "double mixed(int32_t a, int64_t b, uint32_t c, uint64_t d, double e, const char *s, mn_bytes m)",
        "int64_t weighted16(int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5, int64_t a6, int64_t a7, "
            + "int64_t a8, int64_t a9, int64_t a10, int64_t a11, int64_t a12, int64_t a13, int64_t a14, "
            + "int64_t a15, int64_t a16)",
    ]
}

/// A plugin package directory for the tests: a manifest and a library compiled from a fixture.
struct TestPackage {
    var name: String
    var version = "1.0.0"
    var abi = "\(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR)"
    var fixture = "probe.c"
    var capabilities: [String] = []
    /// C prototypes; each export's name is its symbol.
    var exports: [String] = Probe.exports
    /// -D options besides PLUGIN_NAME and PLUGIN_VERSION (which default to the manifest's).
    var defines: [String: String] = [:]
    /// Include directories searched before the SDK's (e.g. an older copy of plugin.h).
    var includes: [String] = []
    /// More cc arguments (e.g. "-pthread").
    var compilerArguments: [String] = []

    var libraryFile: String { "lib\(name.replacingOccurrences(of: "-", with: "_")).so" }

    /// Writes the package into `<scratch>/pkg-<name>` and returns that directory.
    func build(in scratch: Scratch) throws -> String {
        let directory = scratch.file("pkg-\(name)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var allDefines = ["PLUGIN_NAME": "\"\(name)\"", "PLUGIN_VERSION": "\"\(version)\""]
        allDefines.merge(defines) { $1 }
        try compileC(["\(Repo.fixtures)/\(fixture)"], output: "\(directory)/\(libraryFile)", defines: allDefines,
                     includes: includes, extraArguments: compilerArguments)
        try manifest.serialized(pretty: true).write(toFile: "\(directory)/\(PluginManifest.fileName)",
                                                    atomically: true, encoding: .utf8)
        return directory
    }

    var manifest: JSONValue {
        .object([
            "name": .string(name), "version": .string(version), "abi": .string(abi),
            "library": .object(["file": .string(libraryFile)]),
            "capabilities": .array(capabilities.map(JSONValue.string)),
            "exports": .array(exports.map { signature in
                let symbol = try! CPrototype(parsing: signature).symbol
                return .object(["name": .string(symbol), "signature": .string(signature)])
            }),
        ])
    }
}

/// A log handler that keeps every message, so tests can check what the kernel logged.
final class LogRecorder: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lock.withLock { lines.append("\(event.level) \(event.message)") }
    }

    var messages: [String] { lock.withLock { lines } }
}

/// A kernel over a store in a scratch directory, with a fresh node key and a recorded log; no crash guard.
final class TestKernel: @unchecked Sendable {
    let scratch: Scratch
    let kernel: Kernel
    let log = LogRecorder()

    init(_ label: String) throws {
        scratch = try Scratch(label)
        let store = try Store(path: scratch.file("db"))
        let recorder = log
        kernel = Kernel(store: store, nodeKey: .generate(), logger: Logger(label: "test") { _ in recorder },
                        crashGuard: nil)
    }

    /// Builds, loads and starts a plugin; `grants` are what the operator granted.
    @discardableResult
    func start(_ package: TestPackage, grants: [String] = []) async throws -> PluginRuntime {
        let runtime = try load(package, grants: grants)
        try await kernel.start(runtime)
        return runtime
    }

    func load(_ package: TestPackage, grants: [String] = []) throws -> PluginRuntime {
        try kernel.load(try request(package, grants: grants))
    }

    /// Builds the package and opens it as the planner would.
    func request(_ package: TestPackage, grants: [String] = []) throws -> LoadRequest {
        let opened = try PluginPackage.open(try package.build(in: scratch))
        return LoadRequest(package: opened, grants: HostCapabilities(names: grants), bundled: false,
                           config: Array("{}".utf8))
    }

    /// Calls an exported function with JSON arguments (strings, integers and doubles as given).
    func call(_ plugin: String, _ function: String, _ arguments: JSONValue...) async throws -> FFIResult {
        try await kernel.call(plugin: plugin, function: function, arguments: .json(arguments))
    }

    func int32(_ plugin: String, _ function: String, _ arguments: JSONValue...) async throws -> Int32 {
        let result = try await kernel.call(plugin: plugin, function: function, arguments: .json(arguments))
        guard case .int32(let value) = result else { throw Unexpected(result) }
        return value
    }

    func uint64(_ plugin: String, _ function: String, _ arguments: JSONValue...) async throws -> UInt64 {
        let result = try await kernel.call(plugin: plugin, function: function, arguments: .json(arguments))
        guard case .uint64(let value) = result else { throw Unexpected(result) }
        return value
    }

    func string(_ plugin: String, _ function: String, _ arguments: JSONValue...) async throws -> String {
        let result = try await kernel.call(plugin: plugin, function: function, arguments: .json(arguments))
        guard case .string(let value) = result else { throw Unexpected(result) }
        return value
    }

    /// Polls a string getter until `predicate` holds or `timeoutMs` passes; returns the last value.
    func eventually(_ plugin: String, _ getter: String, timeoutMs: Int = 5000,
                    _ predicate: (String) -> Bool) async throws -> String {
        try await Self.poll(timeout: .milliseconds(timeoutMs), until: predicate) { try await string(plugin, getter) }
    }

    /// Reads `read` every 5 ms until `done` holds or `timeout` passes, and returns the last value read. It gives up
    /// only on a value whose read began after the deadline: in a loaded test run a call's answer can come back long
    /// after the plugin gave it (the awaiting task waits for a thread of the shared pool), and a value taken before
    /// the deadline does not say what had happened by then. Giving up on such a stale value failed a test whose
    /// 5 ms timer had fired many times.
    static func poll<Value>(timeout: Duration, until done: (Value) -> Bool,
                            _ read: () async throws -> Value) async throws -> Value {
        let deadline = ContinuousClock.now + timeout
        while true {
            let readStarted = ContinuousClock.now
            let value = try await read()
            if done(value) || readStarted >= deadline { return value }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// A key as the store holds it: in the plugin's namespace.
    func stored(_ plugin: String, _ key: String) throws -> String? {
        try kernel.store.get(kernel.namespacePrefix(for: plugin) + Array(key.utf8))
            .map { String(decoding: $0, as: UTF8.self) }
    }

    /// Stops every plugin (reverse load order) and closes the kernel.
    func shutdown() async {
        for runtime in kernel.runtimes.reversed() { await kernel.stop(runtime) }
        kernel.close()
    }
}

struct Unexpected: Error, CustomStringConvertible {
    let result: FFIResult
    init(_ result: FFIResult) { self.result = result }
    var description: String { "unexpected result type: \(result)" }
}

/// Runs `body` with a fresh kernel and shuts it down afterwards, also when `body` throws.
func withKernel(_ label: String, _ body: (TestKernel) async throws -> Void) async throws {
    let kernel = try TestKernel(label)
    do {
        try await body(kernel)
    } catch {
        await kernel.shutdown()
        throw error
    }
    await kernel.shutdown()
}

/// Runs `body`, expecting a `MetanodeError` with `code` whose message contains every fragment; returns the error.
@discardableResult
func expectFailure<T>(_ code: MetanodeError.Code, _ fragments: String...,
                      sourceLocation: SourceLocation = #_sourceLocation,
                      _ body: () throws(MetanodeError) -> T) -> MetanodeError? {
    do {
        let value = try body()
        Issue.record("expected a \(code) error, got \(value)", sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.code == code, "message: \(error.message)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(error.message.contains(fragment), "message: \(error.message)", sourceLocation: sourceLocation)
        }
        return error
    }
}

/// The async form of `expectFailure`.
@discardableResult
func expectFailure<T>(_ code: MetanodeError.Code, _ fragments: String...,
                      sourceLocation: SourceLocation = #_sourceLocation,
                      _ body: () async throws -> T) async -> MetanodeError? {
    do {
        let value = try await body()
        Issue.record("expected a \(code) error, got \(value)", sourceLocation: sourceLocation)
        return nil
    } catch let error as MetanodeError {
        #expect(error.code == code, "message: \(error.message)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(error.message.contains(fragment), "message: \(error.message)", sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a MetanodeError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
