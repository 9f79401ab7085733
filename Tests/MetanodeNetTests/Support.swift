import Foundation
import Logging
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeNet
import NIOCore
import NIOPosix
import Prometheus
import Synchronization
import Testing

/// Records what a transport tells its delegate.
final class RecordingDelegate: PeerTransportDelegate {
    struct Received: Equatable {
        let from: PeerID
        let message: [UInt8]
    }

    private let state = Mutex<(received: [Received], events: [String])>(([], []))

    func peerTransport(received message: UnsafeRawBufferPointer, from peer: PeerID) {
        let copy = Array(message)
        state.withLock { $0.received.append(Received(from: peer, message: copy)) }
    }

    func peerTransport(peerUp peer: PeerID) { state.withLock { $0.events.append("up \(peer.short)") } }
    func peerTransport(peerDown peer: PeerID) { state.withLock { $0.events.append("down \(peer.short)") } }

    var received: [Received] { state.withLock { $0.received } }
    var events: [String] { state.withLock { $0.events } }
    func messages(from peer: PeerID) -> [[UInt8]] { received.filter { $0.from == peer }.map(\.message) }
}

/// Captures log lines, for tests that check what an operator would read.
final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    var logger: Logger {
        Logger(label: "test") { _ in Handler(capture: self) }
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            capture.lines.withLock { $0.append("\(event.level) \(event.message)") }
        }
    }
}

/// One node of a test network: a key, a transport listening on 127.0.0.1 (port 0 unless given) and its delegate.
final class TestNode: Sendable {
    let key: Ed25519KeyPair
    let id: PeerID
    let transport: NIOPeerTransport
    let delegate = RecordingDelegate()
    let metrics = PrometheusCollectorRegistry()
    let logs = LogCapture()

    init(key: Ed25519KeyPair = .generate(), port: Int = 0, peers: [NetConfig.Peer] = [],
         group: (any EventLoopGroup)? = nil, configure: (inout NetConfig) -> Void = { _ in }) {
        self.key = key
        id = PeerID(bytes: key.publicKey.bytes)!
        var config = NetConfig(listen: HostPort(host: "127.0.0.1", port: port), peers: peers)
        config.reconnectBaseMs = 20
        config.reconnectCapMs = 200
        // Generous unless a test is about dead peers: on a loaded 2-core machine a silent raw peer in a test can go
        // seconds between steps.
        config.deadPeerTimeoutMs = 30_000
        configure(&config)
        transport = NIOPeerTransport(
            identity: key, config: config, logger: logs.logger, metrics: metrics, group: group)
        transport.setDelegate(delegate)
    }

    var address: HostPort { transport.boundAddress! }
    var asPeer: NetConfig.Peer { NetConfig.Peer(address: address, key: id) }

    func start() async throws { try await transport.start() }

    func send(_ message: [UInt8], to peer: PeerID, header: [UInt8] = []) -> PeerSendResult {
        header.withUnsafeBytes { header in
            message.withUnsafeBytes { body in transport.send(header: header, body: body, to: peer) }
        }
    }

    func status(of peer: PeerID) -> PeerStatus? { transport.peerStatus().first { $0.id == peer } }

    /// The value of a metric line such as `metanode_net_frames_rejected_total{reason="auth_failure"}`, 0 if absent.
    func metric(_ name: String) -> Double {
        for line in metrics.emitToString().split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last!) ?? .nan
        }
        return 0
    }
}

/// A key pair that is not random, so a test can order keys.
func key(_ byte: UInt8) -> Ed25519KeyPair { try! Ed25519KeyPair(seed: [UInt8](repeating: byte, count: 32)) }

func peerID(_ key: Ed25519KeyPair) -> PeerID { PeerID(bytes: key.publicKey.bytes)! }

/// Polls `condition` every 5 ms until it holds or `timeoutMs` passes; records an issue on timeout.
@discardableResult
func eventually(
    _ what: String, timeoutMs: Int = 5000, sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    if condition() { return true }
    Issue.record("timed out after \(timeoutMs) ms waiting for: \(what)", sourceLocation: sourceLocation)
    return false
}

/// Starts the nodes, each configured with all the others (built lazily because ports are known only after binding).
/// Returns nodes that already listen; their transports dial each other on start.
func startMesh(
    _ count: Int, group: (any EventLoopGroup)? = nil, configure: @escaping (inout NetConfig) -> Void = { _ in }
) async throws -> [TestNode] {
    // Learn free ports, then build the real transports on them. Tests run in parallel, so another test can take a
    // port between the two steps: then start over with new ports.
    let keys = (0..<count).map { _ in Ed25519KeyPair.generate() }
    for attempt in 1...5 {
        let ports = try await freePorts(count)
        let peers = zip(keys, ports).map { key, port in
            NetConfig.Peer(address: HostPort(host: "127.0.0.1", port: port), key: peerID(key))
        }
        var nodes: [TestNode] = []
        for index in 0..<count {
            let node = TestNode(key: keys[index], port: ports[index],
                                peers: peers.enumerated().filter { $0.offset != index }.map(\.element), group: group,
                                configure: configure)
            nodes.append(node)
        }
        do {
            for node in nodes { try await node.start() }
            return nodes
        } catch where "\(error)".contains("Address already in use") && attempt < 5 {
            await shutdownAll(nodes)
        }
    }
    preconditionFailure("unreachable: the last attempt rethrows")
}

/// Ports the OS had free a moment ago (bound to port 0 and released).
func freePorts(_ count: Int) async throws -> [Int] {
    var channels: [any Channel] = []
    for _ in 0..<count {
        channels.append(try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get())
    }
    let ports = channels.map { $0.localAddress!.port! }
    for channel in channels { try await channel.close() }
    return ports
}

func shutdownAll(_ nodes: [TestNode]) async {
    for node in nodes { await node.transport.shutdown() }
}

/// Runs `body`; if it throws, records the node's log with the error so a rare failure explains itself.
func withNodeLogs<T>(_ node: TestNode, sourceLocation: SourceLocation = #_sourceLocation,
                     _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        Issue.record("\(error); the node's log:\n\(node.logs.all.joined(separator: "\n"))", sourceLocation: sourceLocation)
        throw error
    }
}
