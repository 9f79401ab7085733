import Foundation
import MetanodeABI
import MetanodeCore
import MetanodeHostBridge
import Prometheus

/// The "net" capability (ABI 1.1): plugins' protocols over the node's PeerTransport. Protocol "p" of plugin "x" is
/// "x/p" on the wire (NetEnvelope) and reaches plugin "x" on the other node through its executor's bounded mailbox.
final class KernelNet: @unchecked Sendable {
    /// Set once by `Kernel.attach(_:)` before any plugin starts.
    private(set) var transport: (any PeerTransport)?
    let protocols = HostLock(NetProtocolTable())
    /// Each watching plugin's callback and the peers it has been told are up. Events are decided and queued under
    /// this lock, so a watcher registered while a peer connects hears about it exactly once, in order.
    let watchers = HostLock([Int: Watcher]())

    struct Watcher {
        var callback: NetPeerEventCallback
        var up: Set<PeerID>
    }
    let unroutable: Counter
    let mailboxDrops: Counter

    init(metrics: PrometheusCollectorRegistry) {
        unroutable = metrics.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "metanode", subsystem: "net", metricName: "unroutable_messages", unitName: "total",
            helpText: "Messages from peers for a protocol no plugin on this node registered (or malformed)"))
        mailboxDrops = metrics.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "metanode", subsystem: "net", metricName: "mailbox_dropped", unitName: "total",
            helpText: "Messages from peers dropped because the receiving plugin's mailbox was full"))
    }

    func attach(_ transport: any PeerTransport) {
        precondition(self.transport == nil, "a kernel has one transport")
        self.transport = transport
    }

    func removeAll(slot: Int) {
        protocols.withLock { $0.removeAll(slot: slot) }
        _ = watchers.withLock { $0.removeValue(forKey: slot) }
    }
}

extension Kernel: PeerTransportDelegate {
    /// Attaches the node's peer-to-peer transport. Call before plugins start; without one, sends find no peer.
    public func attach(_ transport: any PeerTransport) {
        net.attach(transport)
        transport.setDelegate(self)
    }

    public var peerTransport: (any PeerTransport)? { net.transport }

    public func peerTransport(received message: UnsafeRawBufferPointer, from peer: PeerID) {
        guard let (protocolID, body) = NetEnvelope.open(message),
              let entry = net.protocols.withLock({ $0.lookup(protocolID) }),
              let runtime = runtime(slot: entry.slot), runtime.isAcceptingMessages
        else {
            net.unroutable.increment()
            return
        }
        let bodyStart = message.count - body.count
        if !runtime.executor.submitNet(bytes: Array(message), bodyStart: bodyStart, peer: peer,
                                       callback: entry.callback) {
            net.mailboxDrops.increment()
        }
    }

    public func peerTransport(peerUp peer: PeerID) { announce(peer, up: true) }

    public func peerTransport(peerDown peer: PeerID) { announce(peer, up: false) }

    private func announce(_ peer: PeerID, up: Bool) {
        net.watchers.withLock { watchers in
            for (slot, watcher) in watchers {
                // The transport reports each change once, but a watcher registered in between may already have it.
                guard up ? watchers[slot]!.up.insert(peer).inserted : watchers[slot]!.up.remove(peer) != nil,
                      let runtime = runtime(slot: slot), let instance = runtime.instance
                else { continue }
                let callback = watcher.callback
                runtime.executor.submit { instance.deliverPeerEvent(callback, peer: peer, up: up) }
            }
        }
    }

    // MARK: PluginHostBackend, net

    private func requireTransport() throws(HostError) -> any PeerTransport {
        guard let transport = net.transport else {
            throw .notFound("this node has no peers configured (see `metanode net add-peer`)")
        }
        return transport
    }

    public func netRegister(_ plugin: PluginHostContext, protocol name: String, callback: NetReceiveCallback)
        throws(HostError)
    {
        let result: Result<Void, HostError> = net.protocols.withLock { table in
            Result { () throws(HostError) in
                try table.register(plugin: plugin.name, slot: plugin.slot, protocol: name, callback: callback)
            }
        }
        try result.get()
    }

    public func netSend(_ plugin: PluginHostContext, to peer: PeerID, protocol name: String,
                        message: UnsafeRawBufferPointer) throws(HostError) {
        let transport = try requireTransport()
        let result = withEnvelopeHeader(plugin, name) { transport.send(header: $0, body: message, to: peer) }
        switch result {
        case .queued: return
        case .notConnected: throw .notFound("peer \(peer.short) is not connected")
        case .queueFull:  // the transport counts it in metanode_net_send_dropped_total
            throw HostError(MN_ERR_LIMIT, "the send queue to peer \(peer.short) is full; the message was dropped")
        case .tooLarge: throw .tooLarge("message", message.count, max: MN_NET_MESSAGE_LEN_MAX)
        }
    }

    public func netBroadcast(_ plugin: PluginHostContext, protocol name: String, message: UnsafeRawBufferPointer)
        throws(HostError) -> UInt32
    {
        guard let transport = net.transport else { return 0 }
        var sent: UInt32 = 0
        withEnvelopeHeader(plugin, name) { header in
            for peer in transport.connectedPeers() {
                switch transport.send(header: header, body: message, to: peer) {
                case .queued: sent += 1
                case .queueFull, .notConnected, .tooLarge: break
                }
            }
        }
        return sent
    }

    /// The NetEnvelope header for "<plugin>/<protocol>", assembled on the stack: sends allocate nothing for it.
    private func withEnvelopeHeader<T>(_ plugin: PluginHostContext, _ name: String,
                                       _ body: (UnsafeRawBufferPointer) -> T) -> T {
        var protocolName = name
        return protocolName.withUTF8 { protocolBytes in
            let pluginBytes = runtime(plugin).nameBytes
            let idCount = pluginBytes.count + 1 + protocolBytes.count
            return withUnsafeTemporaryAllocation(byteCount: 1 + idCount, alignment: 1) { buffer in
                buffer[0] = UInt8(idCount)
                UnsafeMutableRawBufferPointer(rebasing: buffer[1...]).copyMemory(from: pluginBytes)
                buffer[1 + pluginBytes.count] = UInt8(ascii: "/")
                UnsafeMutableRawBufferPointer(rebasing: buffer[(2 + pluginBytes.count)...])
                    .copyMemory(from: UnsafeRawBufferPointer(protocolBytes))
                return body(UnsafeRawBufferPointer(buffer))
            }
        }
    }

    public func netPeers(_ plugin: PluginHostContext) throws(HostError) -> [PeerStatus] {
        net.transport?.peerStatus() ?? []
    }

    public func netWatchPeers(_ plugin: PluginHostContext, callback: NetPeerEventCallback) throws(HostError) {
        let runtime = runtime(plugin)
        net.watchers.withLock { watchers in
            let connected = net.transport?.connectedPeers() ?? []
            watchers[plugin.slot] = KernelNet.Watcher(callback: callback, up: Set(connected))
            guard let instance = runtime.instance else { return }
            for peer in connected.sorted() {
                runtime.executor.submit { instance.deliverPeerEvent(callback, peer: peer, up: true) }
            }
        }
    }

    public func netLocalKey(_ plugin: PluginHostContext) throws(HostError) -> PeerID {
        net.transport?.localID ?? PeerID(bytes: nodeKey.publicKey.bytes)!
    }
}
