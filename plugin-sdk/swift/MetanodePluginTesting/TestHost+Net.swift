import MetanodeABI
import MetanodeHostBridge

/// What happened to messages from other nodes on their way to this host's plugins.
public struct NetCounters: Sendable, Equatable {
    /// For a protocol no running plugin registered here, or not in a NetEnvelope.
    public var unroutable = 0
    /// Dropped because the plugin already had MN_MAILBOX_DEPTH_MAX events queued.
    public var mailboxDropped = 0
    /// Sends the transport refused with a full queue (MN_ERR_LIMIT; broadcasts count each peer).
    public var sendDropped = 0
}

// The "net" capability (ABI 1.1) of the in-memory host, with the kernel's semantics (MetanodeKernel's KernelNet):
// protocol "p" of plugin "x" travels as "x/p" in a NetEnvelope; what arrives is routed by NetProtocolTable and queued
// for the plugin like any other event, so it runs when the test (or a Simulation) runs the host. Without a transport
// the host has no peers: sends find no one and broadcasts reach nobody.
extension TestHost: PeerTransportDelegate {
    /// Puts this host's plugins on a network: `transport` is usually a SimulatedNetwork endpoint (a `Simulation` does
    /// this for each of its hosts). Its local key must be this host's node key. One transport per host.
    public func attach(_ transport: some PeerTransport) {
        precondition(transport.localID.bytes == nodePublicKey,
                     "the transport's key \(transport.localID.short) is not this TestHost's node key "
                        + "\(PeerID(bytes: nodePublicKey)!.short); create the TestHost with the "
                        + "node key seed of the transport's node")
        state.withLock { state in
            precondition(state.transport == nil, "this TestHost already has a transport")
            state.transport = transport
        }
        transport.setDelegate(self)
    }

    /// The attached transport, if any.
    public var transport: (any PeerTransport)? { state.withLock { $0.transport } }

    public var netCounters: NetCounters { state.withLock { $0.netCounters } }

    // MARK: PeerTransportDelegate

    public func peerTransport(received message: UnsafeRawBufferPointer, from peer: PeerID) {
        state.withLock { state in
            guard let (protocolID, body) = NetEnvelope.open(message),
                  let entry = state.netProtocols.lookup(protocolID),
                  !state.plugins[entry.slot].plugin.isStopped
            else {
                state.netCounters.unroutable += 1
                return
            }
            guard state.queuedEvents(for: entry.slot) < Int(MN_MAILBOX_DEPTH_MAX) else {
                state.netCounters.mailboxDropped += 1
                return
            }
            state.enqueue(.net(slot: entry.slot, callback: entry.callback, peer: peer, message: Array(body)))
        }
    }

    public func peerTransport(peerUp peer: PeerID) { announce(peer, up: true) }

    public func peerTransport(peerDown peer: PeerID) { announce(peer, up: false) }

    private func announce(_ peer: PeerID, up: Bool) {
        state.withLock { state in
            for slot in state.peerWatchers.keys.sorted() where !state.plugins[slot].plugin.isStopped {
                state.enqueue(.peerEvent(slot: slot, callback: state.peerWatchers[slot]!, peer: peer, up: up))
            }
        }
    }

    /// Runs a queued `.net` or `.peerEvent` (called by the queue in TestHost.swift).
    func deliverNetEvent(_ event: Event) {
        switch event {
        case .net(let slot, let callback, let peer, let message):
            guard let instance = plugin(slot)?.instance else { return }
            peer.bytes.withUnsafeBytes { peer in
                message.withUnsafeBytes { instance.deliverNet(callback, from: peer, message: $0) }
            }
        case .peerEvent(let slot, let callback, let peer, let up):
            guard let instance = plugin(slot)?.instance else { return }
            instance.deliverPeerEvent(callback, peer: peer, up: up)
        default:
            preconditionFailure("deliverNetEvent got a non-net event")
        }
    }

    private func plugin(_ slot: Int) -> TestPlugin? {
        state.withLock { $0.plugins.indices.contains(slot) ? $0.plugins[slot].plugin : nil }
    }

    // MARK: PluginHostBackend, net

    public func netRegister(_ plugin: PluginHostContext, protocol name: String, callback: NetReceiveCallback)
        throws(HostError)
    {
        try state.withLock { state throws(HostError) in
            try state.netProtocols.register(plugin: plugin.name, slot: plugin.slot, protocol: name, callback: callback)
        }
    }

    public func netSend(_ plugin: PluginHostContext, to peer: PeerID, protocol name: String,
                        message: UnsafeRawBufferPointer) throws(HostError) {
        guard let transport else {
            throw .notFound("peer \(peer.short) is not connected (this TestHost has no network attached)")
        }
        let header = NetEnvelope.header(protocolID: "\(plugin.name)/\(name)")
        switch header.withUnsafeBytes({ transport.send(header: $0, body: message, to: peer) }) {
        case .queued: return
        case .notConnected: throw .notFound("peer \(peer.short) is not connected")
        case .queueFull:
            state.withLock { $0.netCounters.sendDropped += 1 }
            throw HostError(MN_ERR_LIMIT, "the send queue to peer \(peer.short) is full; the message was dropped")
        case .tooLarge: throw .tooLarge("message", message.count, max: MN_NET_MESSAGE_LEN_MAX)
        }
    }

    public func netBroadcast(_ plugin: PluginHostContext, protocol name: String, message: UnsafeRawBufferPointer)
        throws(HostError) -> UInt32
    {
        guard let transport else { return 0 }
        let header = NetEnvelope.header(protocolID: "\(plugin.name)/\(name)")
        var sent: UInt32 = 0
        var full = 0
        header.withUnsafeBytes { header in
            for peer in transport.connectedPeers() {
                switch transport.send(header: header, body: message, to: peer) {
                case .queued: sent += 1
                case .queueFull: full += 1
                case .notConnected, .tooLarge: break
                }
            }
        }
        if full > 0 { state.withLock { $0.netCounters.sendDropped += full } }
        return sent
    }

    public func netPeers(_ plugin: PluginHostContext) throws(HostError) -> [PeerStatus] {
        transport?.peerStatus() ?? []
    }

    public func netWatchPeers(_ plugin: PluginHostContext, callback: NetPeerEventCallback) throws(HostError) {
        let connected = transport?.connectedPeers() ?? []
        state.withLock { state in
            state.peerWatchers[plugin.slot] = callback
            for peer in connected {
                state.enqueue(.peerEvent(slot: plugin.slot, callback: callback, peer: peer, up: true))
            }
        }
    }

    public func netLocalKey(_ plugin: PluginHostContext) throws(HostError) -> PeerID {
        transport?.localID ?? PeerID(bytes: nodePublicKey)!
    }
}
