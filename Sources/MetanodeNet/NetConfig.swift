import MetanodeCore
import MetanodeHostBridge

/// How a node's peer-to-peer transport behaves. Every queue and timer is bounded by a named value here.
public struct NetConfig: Sendable, Equatable {
    /// A peer this node connects to and accepts connections from.
    public struct Peer: Sendable, Equatable {
        /// host:port the peer listens on.
        public var address: HostPort
        /// The peer's Ed25519 node key; a peer presenting another key is refused.
        public var key: PeerID

        public init(address: HostPort, key: PeerID) {
            self.address = address
            self.key = key
        }
    }

    /// Where to accept connections; nil to accept none (this node only dials).
    public var listen: HostPort?
    public var peers: [Peer]
    /// Accept inbound connections from keys that are not in `peers` (off by default).
    public var allowUnlisted = false
    /// A ping every this often on an idle connection; its pong measures the round trip.
    public var keepaliveIntervalMs: Int64 = 1000
    /// A connection that has received nothing for this long is dead and is closed.
    public var deadPeerTimeoutMs: Int64 = 5000
    /// The TCP connect, and then the handshake, must each finish within this.
    public var handshakeTimeoutMs: Int64 = 3000
    /// Reconnect delay: base × 2^attempt, capped, with random jitter of up to half the delay.
    public var reconnectBaseMs: Int64 = 100
    public var reconnectCapMs: Int64 = 5000
    /// Bounds of each peer's send queue; a message that would exceed either is dropped (and counted).
    public var sendQueueMessagesMax = 65_536
    public var sendQueueBytesMax = 64 << 20
    /// The largest encrypted frame accepted (a 4 MiB message plus headers); anything longer closes the connection.
    public var frameBytesMax = (4 << 20) + 1024

    /// The largest message `send` accepts (header and body together): what fits in a frame of `frameBytesMax`.
    public var messageBytesMax: Int { frameBytesMax - NetWire.frameOverheadBytes }

    public init(listen: HostPort?, peers: [Peer]) {
        self.listen = listen
        self.peers = peers
    }
}
