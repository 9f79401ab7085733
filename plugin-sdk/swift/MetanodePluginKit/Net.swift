@_exported import MetanodePeer
import MetanodeABI

/// One configured peer of this node, as `NetChannel.peers()` reports it.
public struct NetPeer: Sendable, Equatable {
    public var key: PeerID
    /// True while an authenticated connection to the peer is up.
    public var connected: Bool
    /// The last measured round trip in microseconds; nil when unknown.
    public var rttMicros: UInt32?

    public init(key: PeerID, connected: Bool, rttMicros: UInt32? = nil) {
        self.key = key
        self.connected = connected
        self.rttMicros = rttMicros
    }
}

/// Messages to and from other nodes (capability "net", ABI 1.1).
///
/// A plugin talks on protocols in its own namespace: protocol "consensus" of plugin "bpi" reaches plugin "bpi" on the
/// other node. Between two nodes messages arrive in the order they were sent, at most once; a message is lost if the
/// connection drops first, so plugins that need delivery acknowledge at their own level. Handlers run on the plugin's
/// executor, one at a time.
///
///     try context.net.register("ping") { peer, message in
///         try? context.net.send(message, to: peer, on: "pong")
///     }
///
/// Every method checks that the host offers ABI 1.1 and throws MN_ERR_VERSION on an older host.
public struct NetChannel: Sendable {
    let host: Host
    let handlers: NetHandlers

    init(host: Host) {
        self.host = host
        self.handlers = NetHandlers()
    }

    /// The smallest `mn_host_api` that has every net function.
    static let vtableSizeNeeded =
        MemoryLayout<mn_host_api>.offset(of: \mn_host_api.net_local_key)! + MemoryLayout<UnsafeRawPointer>.size

    /// Throws unless the host's vtable has the ABI 1.1 functions.
    private func requireNet(_ function: StaticString) throws(PluginError) {
        let api = host.api
        guard api.pointee.abi_minor >= 1, Int(api.pointee.struct_size) >= Self.vtableSizeNeeded else {
            throw PluginError(
                MN_ERR_VERSION,
                "context.net needs plugin ABI 1.1 (the \"net\" capability); this host offers ABI "
                    + "\(api.pointee.abi_major).\(api.pointee.abi_minor) — run the plugin on a newer node",
                function: "\(function)")
        }
    }

    /// Starts receiving messages on `protocol` ([a-z0-9_.-], at most 64 bytes). `handler` gets the sender's key and a
    /// copy of the message, on the plugin's executor. MN_ERR_EXISTS if `protocol` is already registered; at most
    /// MN_NET_PROTOCOLS_MAX (64) protocols per plugin.
    public func register(_ protocol: String, _ handler: @escaping (PeerID, [UInt8]) -> Void) throws(PluginError) {
        try requireNet("net_register")
        let receiver = NetHandlers.Receiver(handler: handler)
        // Kept before the call so a message the host delivers right away finds it; the host keeps the pointer for
        // the life of the process, and so does this table.
        handlers.keep(receiver)
        let userData = Unmanaged.passUnretained(receiver).toOpaque()
        let status = `protocol`.withMNBytes { name in
            host.api.pointee.net_register(host.ctx, name, { userData, peer, message in
                guard let userData, let peer else { return }
                let receiver = Unmanaged<NetHandlers.Receiver>.fromOpaque(userData).takeUnretainedValue()
                receiver.handler(PeerID(pointer: peer), message.array)
            }, userData)
        }
        if status != MN_OK {
            handlers.forget(receiver)  // refused: the host never saw the pointer
            throw host.error(status, "net_register")
        }
    }

    /// Queues `message` for `peer` on `protocol`; returns once queued, not when delivered. Throws MN_ERR_NOT_FOUND if
    /// the peer is not connected, MN_ERR_LIMIT if its send queue is full (the message is dropped), MN_ERR_TOO_LARGE
    /// over MN_NET_MESSAGE_LEN_MAX (4 MiB).
    public func send(_ message: some ByteConvertible, to peer: PeerID, on protocol: String) throws(PluginError) {
        try requireNet("net_send")
        let status = peer.bytes.withUnsafeBufferPointer { key in
            `protocol`.withMNBytes { name in
                message.withMNBytes { body in host.api.pointee.net_send(host.ctx, key.baseAddress, name, body) }
            }
        }
        try host.check(status, "net_send")
    }

    /// Queues `message` for every connected peer on `protocol`; returns how many peers it was queued for.
    @discardableResult
    public func broadcast(_ message: some ByteConvertible, on protocol: String) throws(PluginError) -> Int {
        try requireNet("net_broadcast")
        var sent: UInt32 = 0
        let status = `protocol`.withMNBytes { name in
            message.withMNBytes { body in host.api.pointee.net_broadcast(host.ctx, name, body, &sent) }
        }
        try host.check(status, "net_broadcast")
        return Int(sent)
    }

    /// Every configured peer, connected or not.
    public func peers() throws(PluginError) -> [NetPeer] {
        try requireNet("net_peers")
        var count = 0
        try host.check(host.api.pointee.net_peers(host.ctx, nil, 0, &count), "net_peers")
        // Peers may be added between the two calls; ask again with room for the new count (a few times at most).
        for _ in 0..<Self.peerListAttemptsMax {
            var empty = mn_net_peer()
            empty.struct_size = UInt32(MemoryLayout<mn_net_peer>.size)
            var buffer = [mn_net_peer](repeating: empty, count: count)
            var total = 0
            let status = buffer.withUnsafeMutableBufferPointer { out in
                host.api.pointee.net_peers(host.ctx, out.baseAddress, out.count, &total)
            }
            try host.check(status, "net_peers")
            if total <= buffer.count { return buffer.prefix(total).map(NetPeer.init(raw:)) }
            count = total
        }
        throw PluginError(MN_ERR_INTERNAL, "the peer list kept growing while it was read; try again",
                          function: "net_peers")
    }

    static let peerListAttemptsMax = 4

    /// Calls `handler` whenever a peer connects (`up` true) or disconnects, starting with an "up" for every peer
    /// already connected. One handler per plugin: a second call replaces the first.
    public func watchPeers(_ handler: @escaping (PeerID, _ up: Bool) -> Void) throws(PluginError) {
        try requireNet("net_watch_peers")
        let previous = handlers.watcher.withLock { watcher in
            defer { watcher = handler }
            return watcher
        }
        // The table lives as long as the context; the callback looks the current handler up in it.
        let userData = Unmanaged.passUnretained(handlers).toOpaque()
        let status = host.api.pointee.net_watch_peers(host.ctx, { userData, peer, event in
            guard let userData, let peer else { return }
            Unmanaged<NetHandlers>.fromOpaque(userData).takeUnretainedValue()
                .peerEvent(PeerID(pointer: peer), up: event == MN_NET_PEER_UP)
        }, userData)
        if status != MN_OK {
            handlers.watcher.withLock { $0 = previous }
            throw host.error(status, "net_watch_peers")
        }
    }

    /// This node's own key, as its peers know it.
    public func localKey() throws(PluginError) -> PeerID {
        try requireNet("net_local_key")
        var key = [UInt8](repeating: 0, count: 32)
        let status = key.withUnsafeMutableBufferPointer { host.api.pointee.net_local_key(host.ctx, $0.baseAddress) }
        try host.check(status, "net_local_key")
        return PeerID(bytes: key)!
    }
}

extension NetPeer {
    init(raw: mn_net_peer) {
        let key = withUnsafeBytes(of: raw.public_key) { PeerID(bytes: $0)! }
        self.init(key: key, connected: raw.connected != 0, rttMicros: raw.rtt_us == 0 ? nil : raw.rtt_us)
    }
}

/// The closures behind a plugin's net callbacks. Receivers are kept for the life of the context (the host holds their
/// addresses as `user_data`); the peer watcher is looked up on each event, so replacing it is safe.
/// `@unchecked Sendable`: the tables sit behind locks and the closures run only on the plugin's executor.
final class NetHandlers: @unchecked Sendable {
    final class Receiver {
        let handler: (PeerID, [UInt8]) -> Void
        init(handler: @escaping (PeerID, [UInt8]) -> Void) { self.handler = handler }
    }

    private let receivers = Locked<[ObjectIdentifier: Receiver]>([:])
    let watcher = Locked<((PeerID, Bool) -> Void)?>(nil)

    func keep(_ receiver: Receiver) { receivers.withLock { $0[ObjectIdentifier(receiver)] = receiver } }

    func forget(_ receiver: Receiver) { receivers.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(receiver)) } }

    func peerEvent(_ peer: PeerID, up: Bool) {
        let handler = watcher.withLock { $0 }
        handler?(peer, up)  // outside the lock: the handler may call back into the host
    }
}
