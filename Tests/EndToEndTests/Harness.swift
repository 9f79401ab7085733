import Foundation
import MetanodeCore
import MetanodeKernel
import Testing

/// Paths in this checkout.
enum Repo {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var binDirectory: String {
        if let configured = ProcessInfo.processInfo.environment["METANODE_BIN_DIR"] { return configured }
        return root + "/.build/debug"
    }

    static var metanode: String { binDirectory + "/metanode" }
    static var sdk: String { root + "/plugin-sdk" }
    static var fixtures: String { root + "/Tests/EndToEndTests/Fixtures" }

    /// Fails the test with the fix when the binary was not built (tests run after `swift build`; `make test` does both).
    static func requireBinary() throws {
        try #require(FileManager.default.isExecutableFile(atPath: metanode),
                     "\(metanode) is missing: run `swift build` before `swift test` (or use `make test`)")
    }
}

/// A scratch directory removed when the test ends.
final class Scratch {
    let path: String

    init(_ label: String = "e2e") throws {
        var template = Array("/tmp/metanode-\(label)-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: try #require(created))
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { "\(path)/\(name)" }
}

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var output: String { stdout + stderr }
}

/// Runs a program to completion and captures its output.
@discardableResult
func run(_ executable: String, _ arguments: [String], in directory: String? = nil,
         environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    // Output goes to files: no pipe can fill up and block a chatty child.
    let outPath = NSTemporaryDirectory() + "metanode-out-\(UUID().uuidString)"
    let errPath = outPath + ".err"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
    }
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardOutput = out
    process.standardError = err
    try process.run()
    process.waitUntilExit()
    try? out.close()
    try? err.close()
    let outData = FileManager.default.contents(atPath: outPath) ?? Data()
    let errData = FileManager.default.contents(atPath: errPath) ?? Data()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// The `metanode` CLI against one data directory.
struct CLI {
    let dataDirectory: String

    /// The options go before a "--", after which everything is the container's command.
    func with(_ arguments: [String], _ options: [String]) -> [String] {
        guard let end = arguments.firstIndex(of: "--") else { return arguments + options }
        return Array(arguments[..<end]) + options + Array(arguments[end...])
    }

    @discardableResult
    func callAsFunction(_ arguments: String...) throws -> CommandResult {
        try run(Repo.metanode, with(arguments, ["--data-dir", dataDirectory]))
    }

    /// Runs and requires success, returning stdout.
    @discardableResult
    func ok(_ arguments: String...) throws -> String { try ok(arguments) }

    func ok(_ arguments: [String]) throws -> String {
        let result = try run(Repo.metanode, with(arguments, ["--data-dir", dataDirectory]))
        try #require(result.status == 0, "metanode \(arguments.joined(separator: " ")) failed: \(result.output)")
        return result.stdout
    }

    /// Runs and requires failure, returning stderr.
    func fails(_ arguments: String...) throws -> String { try fails(arguments) }

    func fails(_ arguments: [String]) throws -> String {
        let result = try run(Repo.metanode, with(arguments, ["--data-dir", dataDirectory]))
        try #require(result.status != 0, "metanode \(arguments.joined(separator: " ")) succeeded: \(result.output)")
        return result.stderr
    }

    func json(_ arguments: String...) throws -> JSONValue {
        let result = try run(Repo.metanode, with(arguments, ["--data-dir", dataDirectory, "--json"]))
        return try JSONValue.parse(result.stdout)
    }
}

/// A `metanode node start` process on a free loopback port.
final class NodeProcess {
    let dataDirectory: String
    let process = Process()
    let logPath: String
    private(set) var address = ""

    init(dataDirectory: String, arguments: [String] = [], logPath: String) throws {
        self.dataDirectory = dataDirectory
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.executableURL = URL(fileURLWithPath: Repo.metanode)
        process.arguments = ["node", "start", "--data-dir", dataDirectory, "--http-listen", "127.0.0.1:0"] + arguments
        process.standardOutput = log
        process.standardError = log
    }

    /// Starts the node and waits until it says it is ready (run/http.addr appears).
    static func start(_ dataDirectory: String, _ arguments: String..., log: String? = nil) throws -> NodeProcess {
        let node = try NodeProcess(dataDirectory: dataDirectory, arguments: arguments,
                                   logPath: log ?? "\(dataDirectory)/node.log")
        try? FileManager.default.removeItem(atPath: "\(dataDirectory)/run/http.addr")
        try node.process.run()
        try node.waitUntilReady()
        return node
    }

    func waitUntilReady(timeoutSeconds: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if let address = DataDirectory(dataDirectory).runningNodeAddress() {
                self.address = address
                return
            }
            guard process.isRunning else {
                Issue.record("node exited with \(process.terminationStatus) before ready:\n\(log)")
                throw CancellationError()
            }
            usleep(20_000)
        }
        Issue.record("node not ready within \(timeoutSeconds) s:\n\(log)")
        throw CancellationError()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func request(_ method: String, _ path: String, body: String = "") throws -> LoopbackHTTPClient.Response {
        try LoopbackHTTPClient.request(method, address, path, body: Array(body.utf8), contentType: "text/plain")
    }

    func get(_ path: String) throws -> LoopbackHTTPClient.Response { try request("GET", path) }
    func post(_ path: String, _ body: String = "") throws -> LoopbackHTTPClient.Response {
        try request("POST", path, body: body)
    }

    /// Polls `path` until `predicate` holds.
    func eventually(_ path: String, timeoutSeconds: Double = 10,
                    _ predicate: (LoopbackHTTPClient.Response) -> Bool) throws -> LoopbackHTTPClient.Response {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var last = try get(path)
        while !predicate(last) && Date() < deadline {
            usleep(20_000)
            last = try get(path)
        }
        return last
    }

    /// SIGTERM, then waits for exit; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    func waitForExit(timeoutSeconds: Double = 15) -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { return false }
        process.waitUntilExit()
        return true
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Builds plugin packages for tests: C sources compiled with cc, manifests written as JSON.
enum Packages {
    static func compileC(_ source: String, output: String, defines: [String: String] = [:]) throws {
        var arguments = ["-shared", "-fPIC", "-fvisibility=hidden", "-O1", "-Wall", "-Wextra", "-Werror",
                         "-I\(Repo.sdk)/include", "-o", output, source]
        for (name, value) in defines.sorted(by: { $0.key < $1.key }) { arguments.append("-D\(name)=\(value)") }
        let result = try run("/usr/bin/cc", arguments)
        try #require(result.status == 0, "cc failed: \(result.output)")
    }

    /// A package directory holding a fixture plugin (testplugin.c by default) under `name`.
    static func testPlugin(in scratch: Scratch, name: String, version: String = "1.0.0", abi: String = "1.0",
                           dependencies: [String: String] = [:], capabilities: [String] = ["http", "kv"],
                           defines: [String: String] = [:], source: String = "testplugin.c",
                           exports: [(name: String, signature: String)] = []) throws -> String {
        let directory = scratch.file("pkg-\(name)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let library = "lib\(name.replacingOccurrences(of: "-", with: "_")).so"
        var allDefines = ["PLUGIN_NAME": "\"\(name)\"", "PLUGIN_VERSION": "\"\(version)\""]
        allDefines.merge(defines) { $1 }
        try compileC(Repo.fixtures + "/" + source, output: "\(directory)/\(library)", defines: allDefines)
        let manifest: JSONValue = .object([
            "name": .string(name), "version": .string(version), "abi": .string(abi),
            "library": .object(["file": .string(library)]),
            "capabilities": .array(capabilities.map(JSONValue.string)),
            "dependencies": .object(dependencies.mapValues(JSONValue.string)),
            "exports": .array(exports.map { .object(["name": .string($0.name), "signature": .string($0.signature)]) }),
        ])
        try manifest.serialized(pretty: true).write(toFile: "\(directory)/metanode-plugin.json", atomically: true,
                                                    encoding: .utf8)
        return directory
    }
}

/// A node data directory with a publisher key the node trusts.
struct TestNode {
    let scratch: Scratch
    let data: String
    let cli: CLI
    let key: String

    init(_ label: String = "node", dev: Bool = false, bundled: String? = nil) throws {
        try Repo.requireBinary()
        scratch = try Scratch(label)
        data = scratch.file("data")
        cli = CLI(dataDirectory: data)
        var initArguments = ["node", "init", "--http-listen", "127.0.0.1:0"]
        if dev { initArguments.append("--dev") }
        initArguments += ["--bundled-plugins", bundled ?? scratch.file("no-bundle")]
        try run(Repo.metanode, initArguments + ["--data-dir", data]).requireSuccess()
        key = scratch.file("publisher")
        try cli.ok("plugin", "keygen", "--out", key)
        try cli.ok("trust", "add", key + ".pub")
    }

    /// Signs, installs and enables a package directory.
    func installSigned(_ package: String, grants: [String] = []) throws {
        try cli.ok("plugin", "sign", package, "--key", key + ".key")
        let installed = try run(Repo.metanode, ["plugin", "install", package, "--data-dir", data])
        try installed.requireSuccess()
        let name = try JSONValue.parse(Array(
            try String(contentsOfFile: package + "/metanode-plugin.json", encoding: .utf8).utf8))["name"]!.stringValue!
        try run(Repo.metanode, ["plugin", "enable", name, "--data-dir", data] + (grants.isEmpty ? [] : ["--grant"] + grants))
            .requireSuccess()
    }

    func start(_ arguments: String...) throws -> NodeProcess {
        let node = try NodeProcess(dataDirectory: data, arguments: arguments, logPath: scratch.file("node.log"))
        try? FileManager.default.removeItem(atPath: "\(data)/run/http.addr")
        try node.process.run()
        try node.waitUntilReady()
        return node
    }
}

extension CommandResult {
    func requireSuccess(sourceLocation: SourceLocation = #_sourceLocation) throws {
        try #require(status == 0, "command failed (\(status)): \(output)", sourceLocation: sourceLocation)
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it; the socket is closed again).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(bound == 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
