import MetanodeABI
@_exported import MetanodePeer

/// What a transport knows about one configured peer.
public struct PeerStatus: Sendable, Equatable {
    public enum State: String, Sendable {
        /// No connection; the node will try again (see `nextAttemptInMs`).
        case disconnected
        /// A TCP connection is being made or the handshake is running.
        case connecting
        /// Authenticated and encrypted.
        case connected
    }

    public var id: PeerID
    public var address: String
    public var state: State
    /// Last measured round trip of a keepalive ping, in microseconds.
    public var rttMicros: UInt32?
    public var messagesSent: UInt64 = 0
    public var messagesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Messages queued for the peer and not yet written.
    public var queuedMessages: Int = 0
    /// Messages dropped because the peer's send queue was full.
    public var droppedMessages: UInt64 = 0
    /// Why the last connection ended or the last attempt failed.
    public var lastError: String?

    public init(id: PeerID, address: String, state: State, rttMicros: UInt32? = nil) {
        self.id = id
        self.address = address
        self.state = state
        self.rttMicros = rttMicros
    }
}

/// The outcome of queuing a message for a peer.
public enum PeerSendResult: Sendable, Equatable {
    case queued
    /// No authenticated connection to the peer right now.
    case notConnected
    /// The peer's send queue is at its bound; the message was dropped and counted.
    case queueFull
    case tooLarge
}

/// Told what arrives on a transport. Called on the transport's own threads; implementations hand work off quickly.
public protocol PeerTransportDelegate: AnyObject, Sendable {
    /// A message a peer sent (already authenticated and decrypted). `message` is borrowed for the call.
    func peerTransport(received message: UnsafeRawBufferPointer, from peer: PeerID)
    func peerTransport(peerUp peer: PeerID)
    func peerTransport(peerDown peer: PeerID)
}

/// A node's connections to its peers, as a host uses them. The kernel's is TCP with an authenticated, encrypted
/// handshake (MetanodeNet); MetanodePluginTesting's is a seeded in-process simulation with faults. Messages are opaque
/// bytes here; hosts put a NetEnvelope inside.
public protocol PeerTransport: AnyObject, Sendable {
    var localID: PeerID { get }
    /// Set once, before the transport starts.
    func setDelegate(_ delegate: any PeerTransportDelegate)
    /// Queues a message (header then body, sent as one) for `peer`. Never blocks.
    func send(header: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer, to peer: PeerID) -> PeerSendResult
    /// Peers with an authenticated connection right now.
    func connectedPeers() -> [PeerID]
    /// Every configured peer and its connection state.
    func peerStatus() -> [PeerStatus]
}

/// How a plugin's protocol message travels inside a transport message: a 1-byte length, the protocol id
/// "<plugin>/<protocol>", then the plugin's bytes.
public enum NetEnvelope {
    public static let protocolIDBytesMax = Int(MN_PLUGIN_NAME_LEN_MAX) + 1 + Int(MN_NET_PROTOCOL_LEN_MAX)

    public static func header(protocolID: String) -> [UInt8] {
        let id = Array(protocolID.utf8)
        precondition(id.count <= protocolIDBytesMax && id.count <= 255, "protocol id '\(protocolID)' is too long")
        return [UInt8(id.count)] + id
    }

    /// Splits a transport message; nil when it is malformed (the sender is not a Metanode kernel, or is broken).
    public static func open(_ message: UnsafeRawBufferPointer) -> (protocolID: UnsafeRawBufferPointer,
                                                                   body: UnsafeRawBufferPointer)? {
        guard let length = message.first.map(Int.init), length > 0, length <= protocolIDBytesMax,
              message.count >= 1 + length
        else { return nil }
        return (UnsafeRawBufferPointer(rebasing: message[1..<(1 + length)]),
                UnsafeRawBufferPointer(rebasing: message[(1 + length)...]))
    }
}

/// One host's registered plugin protocols: which plugin gets "<plugin>/<protocol>" and with which callback.
public struct NetProtocolTable: Sendable {
    public struct Entry: Sendable {
        public let slot: Int
        public let callback: NetReceiveCallback
    }

    private var entries: [String: Entry] = [:]
    private var perPlugin: [Int: Int] = [:]

    public init() {}

    public mutating func register(plugin: String, slot: Int, protocol name: String, callback: NetReceiveCallback)
        throws(HostError)
    {
        let id = "\(plugin)/\(name)"
        guard entries[id] == nil else { throw HostError(MN_ERR_EXISTS, "protocol \(name) is already registered") }
        guard perPlugin[slot, default: 0] < Int(MN_NET_PROTOCOLS_MAX) else {
            throw HostError(MN_ERR_LIMIT, "plugin has \(MN_NET_PROTOCOLS_MAX) protocols, the limit")
        }
        entries[id] = Entry(slot: slot, callback: callback)
        perPlugin[slot, default: 0] += 1
    }

    public mutating func removeAll(slot: Int) {
        entries = entries.filter { $0.value.slot != slot }
        perPlugin[slot] = nil
    }

    public func lookup(_ protocolID: UnsafeRawBufferPointer) -> Entry? {
        entries[String(decoding: protocolID, as: UTF8.self)]
    }
}

public typealias NetReceiveCallback = PluginCallback<
    @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, mn_bytes) -> Void
>
public typealias NetPeerEventCallback = PluginCallback<
    @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, Int32) -> Void
>
