import Benchmark
import Foundation
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeKernel

/// Two `metanode node start` processes (the release binary) on loopback, peers of each other, each running the
/// end-to-end tests' netter plugin. The sender queues messages through `net_send` from an exported function; the
/// benchmark waits until the receiver's plugin has counted them all.
final class NetFixture: @unchecked Sendable {
    static let shared = NetFixture()
    static let bytesPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)
    static let messagesPerSecond = BenchmarkMetric.custom("messages/s", polarity: .prefersLarger,
                                                          useScalingFactor: false)
    static let cpuPerMessage = BenchmarkMetric.custom("CPU ns/message (both nodes)", polarity: .prefersSmaller,
                                                      useScalingFactor: false)

    struct Node {
        let data: DataDirectory
        let process: Process
        let key: String
        var address: String
    }

    private(set) var sender: Node
    private(set) var receiver: Node

    private init() {
        let binary = StartupFixture.shared.binary
        let directory = Paths.scratch("net")
        let source = Paths.root + "/Tests/EndToEndTests/Fixtures/netplugin.c"
        let publisher = MinisignSecretKey.generate()
        var prepared: [(DataDirectory, String, Int)] = []
        for name in ["sender", "receiver"] {
            let data = DataDirectory("\(directory)/\(name)")
            let port = Self.freePort()
            _ = try! NodeSetup.initialize(data, dev: false, bundledPluginsDirectory: nil, httpListen: "127.0.0.1:0",
                                          nodeName: name, netListen: "127.0.0.1:\(port)")
            try! data.trustStore.add(publisher.publicKey)
            let package = "\(directory)/\(name)-netter"
            try! FileManager.default.createDirectory(atPath: package, withIntermediateDirectories: true)
            let cc = Process()
            cc.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
            cc.arguments = ["-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-I\(Paths.sdkInclude)",
                            "-DPLUGIN_NAME=\"netter\"", "-o", "\(package)/libnetter.so", source]
            try! cc.run()
            cc.waitUntilExit()
            precondition(cc.terminationStatus == 0, "cc failed")
            try! """
                {"name": "netter", "version": "1.0.0", "abi": "1.1", "library": {"file": "libnetter.so"},
                 "capabilities": ["http", "net"],
                 "exports": [
                   {"name": "bench_send", "signature": "int32_t net_bench_send(const char *peer, uint64_t count, uint32_t size)"},
                   {"name": "bench_received", "signature": "uint64_t net_bench_received(void)"},
                   {"name": "bench_bytes", "signature": "uint64_t net_bench_bytes(void)"}]}
                """.write(toFile: "\(package)/metanode-plugin.json", atomically: true, encoding: .utf8)
            _ = try! PluginPackage.sign(directory: package, key: publisher)
            let manager = PluginManager(data)
            _ = try! manager.install(path: package, allowUnsigned: false)
            _ = try! manager.enable("netter", grants: nil)
            prepared.append((data, try! data.loadNodeKey().publicKey.key.hex, port))
        }
        // Each lists the other; a large send queue lets the sender run ahead of the wire.
        for (index, (data, _, _)) in prepared.enumerated() {
            let other = prepared[1 - index]
            var config = try! data.loadConfig()
            config.net!.peers = [NetSettings.Peer(address: try! HostPort.parse("127.0.0.1:\(other.2)"),
                                                  key: PeerID(hex: other.1)!)]
            try! data.saveConfig(config)
        }
        func start(_ data: DataDirectory, key: String) -> Node {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["node", "start", "--data-dir", data.root, "--log-level", "warning"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try! process.run()
            while data.runningNodeAddress() == nil { usleep(1000) }
            return Node(data: data, process: process, key: key, address: data.runningNodeAddress()!)
        }
        sender = start(prepared[0].0, key: prepared[0].1)
        receiver = start(prepared[1].0, key: prepared[1].1)
        ChildProcesses.stopAtExit(sender.process)
        ChildProcesses.stopAtExit(receiver.process)
        let deadline = Date().addingTimeInterval(10)
        while !connected(sender, to: receiver.key) {
            precondition(Date() < deadline, "the two nodes did not connect within 10 s")
            usleep(10_000)
        }
    }


    private func connected(_ node: Node, to key: String) -> Bool {
        guard let response = try? LoopbackHTTPClient.request("GET", node.address, "/v1/net/peers"),
              let peers = try? JSONValue.parse(response.body).arrayValue
        else { return false }
        return peers.contains { $0["key"]?.stringValue == key && $0["state"]?.stringValue == "connected" }
    }

    private func call(_ node: Node, _ function: String, _ arguments: [JSONValue]) -> JSONValue {
        let response = try! LoopbackHTTPClient.request(
            "POST", node.address, "/v1/plugins/netter/call/\(function)",
            body: JSONValue.array(arguments).serializedBytes(), timeoutSeconds: 120)
        precondition(response.status == 200, "call \(function) failed: \(response.text)")
        return try! JSONValue.parse(response.body)["result"]!
    }

    private static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// CPU time (user + system) of a process so far, in nanoseconds, from /proc/PID/stat.
    private static func cpuNanoseconds(_ process: Process) -> Int64 {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = (Int64(fields[11]) ?? 0) + (Int64(fields[12]) ?? 0)  // utime, stime (fields 14, 15)
        return ticks * 1_000_000_000 / Int64(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// One sample: `count` messages of `size` bytes from sender to receiver, timed until the receiver has all.
    func transfer(_ benchmark: Benchmark, count: Int, size: Int) {
        let before = call(receiver, "bench_received", []).intValue!
        let cpuBefore = Self.cpuNanoseconds(sender.process) + Self.cpuNanoseconds(receiver.process)
        let started = ContinuousClock.now
        benchmark.startMeasurement()
        let status = call(sender, "bench_send", [.string(receiver.key), .int(Int64(count)), .int(Int64(size))])
        precondition(status.intValue == 0, "bench_send returned status \(status)")
        while call(receiver, "bench_received", []).intValue! - before < Int64(count) { usleep(200) }
        benchmark.stopMeasurement()
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let cpu = Self.cpuNanoseconds(sender.process) + Self.cpuNanoseconds(receiver.process) - cpuBefore
        benchmark.measurement(Self.messagesPerSecond, Int(Double(count) / seconds))
        benchmark.measurement(Self.bytesPerSecond, Int(Double(count * size) / seconds / 1_000_000))
        benchmark.measurement(Self.cpuPerMessage, Int(cpu / Int64(count)))
    }
}

/// Node processes the benchmarks started, stopped with SIGTERM when the benchmark process exits (the shared
/// fixtures are never deinitialised, and a node left running would outlive the run).
enum ChildProcesses {
    nonisolated(unsafe) private static var pids: [pid_t] = []
    private static let registered: Void = {
        atexit {
            for pid in ChildProcesses.pids { kill(pid, SIGTERM) }
        }
    }()

    static func stopAtExit(_ process: Process) {
        _ = registered
        pids.append(process.processIdentifier)
    }
}
