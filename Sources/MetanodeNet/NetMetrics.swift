import Prometheus
import Synchronization

/// The transport's metrics, all named `metanode_net_*`. Labels only where a small fixed set of reasons exists;
/// per-peer figures are in `peerStatus()`.
final class NetMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let connectionsEstablished: Counter
    let bytesSent: Counter
    let bytesReceived: Counter
    let messagesSent: Counter
    let messagesReceived: Counter
    let sendDropped: Counter
    let connectedPeers: Gauge
    private let labelled = Mutex<[String: Counter]>([:])

    static let closedName = "connections_closed"
    static let handshakeFailuresName = "handshake_failures"
    static let framesRejectedName = "frames_rejected"

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        connectionsEstablished = registry.makeCounter(
            descriptor: .net("connections_established", unitName: "total", "Peer connections that completed the handshake"))
        bytesSent = registry.makeCounter(
            descriptor: .net("bytes_sent", unitName: "total", "Bytes of encrypted frames written to peers"))
        bytesReceived = registry.makeCounter(
            descriptor: .net("bytes_received", unitName: "total", "Bytes of encrypted frames received from peers"))
        messagesSent = registry.makeCounter(
            descriptor: .net("messages_sent", unitName: "total", "Messages written to peers"))
        messagesReceived = registry.makeCounter(
            descriptor: .net("messages_received", unitName: "total", "Messages received from peers"))
        sendDropped = registry.makeCounter(
            descriptor: .net("send_dropped", unitName: "total", "Messages dropped because a peer's send queue was full"))
        connectedPeers = registry.makeGauge(
            descriptor: .net("connected_peers", "Peers with an authenticated connection"))
    }

    func connectionClosed(reason: String) { counter(Self.closedName, reason, "Peer connections closed, by reason") }

    func handshakeFailed(reason: HandshakeError.Reason) {
        counter(Self.handshakeFailuresName, reason.label, "Handshakes that failed, by reason")
    }

    func frameRejected(reason: FrameError.Reason) {
        counter(Self.framesRejectedName, reason.label, "Frames rejected (the connection was closed), by reason")
    }

    /// A counter with one `reason` label, made on first use (the registry returns the same one for the same labels).
    private func counter(_ name: String, _ reason: String, _ help: String) {
        let key = name + "\u{0}" + reason
        let counter = labelled.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = registry.makeCounter(descriptor: .net(name, unitName: "total", help), labels: [("reason", reason)])
            counters[key] = counter
            return counter
        }
        counter.increment()
    }
}

extension MetricNameDescriptor {
    /// metanode_net_<name>[_<unit>]
    static func net(_ name: String, unitName: String = "", _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "metanode", subsystem: "net", metricName: name, unitName: unitName, helpText: help)
    }
}
