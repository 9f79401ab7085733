import MetanodeHostBridge
import NIOCore

/// Why a connection ended: a label for `metanode_net_connections_closed_total` and a message for logs and
/// `PeerStatus.lastError`.
struct CloseReason: Sendable {
    let label: String
    let message: String
    /// The code sent in (or received with) CLOSE.
    var code = NetWire.CloseCode.other
    /// Whether the peer sent the CLOSE (rather than this node deciding to close).
    var byPeer = false

    static func remote(_ code: NetWire.CloseCode, _ text: String) -> CloseReason {
        CloseReason(label: "remote_close", message: "the peer closed the connection: \(text)", code: code, byPeer: true)
    }
    static let eof = CloseReason(label: "eof", message: "the connection was closed without a CLOSE frame")
    static func deadPeer(_ ms: Int64) -> CloseReason {
        CloseReason(label: "dead_peer", message: "nothing received for \(ms) ms; the peer is presumed dead")
    }
    static func duplicate(keeping initiator: PeerID) -> CloseReason {
        CloseReason(
            label: "duplicate",
            message: "a second connection to the same peer; keeping the one initiated by \(initiator.short)",
            code: .duplicate)
    }
    static let shutdown = CloseReason(label: "shutdown", message: "the node is shutting down", code: .shutdown)
    static func frame(_ error: FrameError) -> CloseReason { CloseReason(label: "frame_error", message: error.message) }
    static func io(_ error: any Error) -> CloseReason { CloseReason(label: "io_error", message: "\(error)") }
}

/// What a session reports to the transport that owns it. Called on the connection's event loop.
protocol SessionOwner: AnyObject, Sendable {
    func sessionEstablished(_ connection: Connection)
    func sessionReceived(_ message: UnsafeRawBufferPointer, on connection: Connection)
    func sessionRejected(_ error: FrameError, on connection: Connection)
    func sessionClosed(_ connection: Connection, reason: CloseReason)
}

/// The last handler of a peer connection: makes the `Connection` when the handshake completes, dispatches decrypted
/// frames (DATA to the owner, PING answered with PONG, PONG timed, CLOSE closes), sends keepalive PINGs, closes a
/// connection that has received nothing for the dead-peer timeout, and resumes the send queue's drain when the
/// socket becomes writable again.
final class SessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    struct Settings {
        var keepaliveInterval: TimeAmount
        var deadPeerTimeout: TimeAmount
        var sendQueueMessagesMax: Int
        var sendQueueBytesMax: Int

        init(_ config: NetConfig) {
            keepaliveInterval = .milliseconds(max(1, config.keepaliveIntervalMs))
            deadPeerTimeout = .milliseconds(max(1, config.deadPeerTimeoutMs))
            sendQueueMessagesMax = config.sendQueueMessagesMax
            sendQueueBytesMax = config.sendQueueBytesMax
        }

        /// How often the timers are checked: a quarter of the shorter one, between 5 ms and 1 s.
        var tick: TimeAmount {
            let shorter = min(keepaliveInterval.nanoseconds, deadPeerTimeout.nanoseconds)
            return .nanoseconds(min(max(shorter / 4, 5_000_000), 1_000_000_000))
        }
    }

    private let owner: any SessionOwner
    private let metrics: NetMetrics
    private let settings: Settings
    private let address: String
    private(set) var connection: Connection?
    private var lastReceived = NIODeadline.uptimeNanoseconds(0)
    private var lastPingSent = NIODeadline.uptimeNanoseconds(0)
    private var outstandingPing: (nonce: UInt64, sentAt: NIODeadline)?
    private var tickTask: Scheduled<Void>?
    /// Set by whoever decides to close; read when the channel goes inactive.
    var closeReason: CloseReason?

    init(owner: any SessionOwner, metrics: NetMetrics, settings: Settings, address: String) {
        self.owner = owner
        self.metrics = metrics
        self.settings = settings
        self.address = address
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let completed = event as? HandshakeCompleted else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        let connection = Connection(
            outcome: completed.outcome, address: address, channel: context.channel,
            messagesMax: settings.sendQueueMessagesMax, bytesMax: settings.sendQueueBytesMax, metrics: metrics)
        connection.session = self
        self.connection = connection
        let now = context.eventLoop.now
        lastReceived = now
        lastPingSent = now
        scheduleTick(context: context)
        owner.sessionEstablished(connection)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection else { return }
        let plaintext = unwrapInboundIn(data)
        lastReceived = context.eventLoop.now
        let wireBytes = UInt64(4 + plaintext.readableBytes + 16)
        connection.bytesReceived.add(wireBytes, ordering: .relaxed)
        metrics.bytesReceived.increment(by: Int64(wireBytes))
        let frame: SecureFrame
        do {
            frame = try SecureFrame.parse(plaintext)
        } catch {
            reject(error, context: context)
            return
        }
        switch frame {
        case .data(let message):
            connection.messagesReceived.add(1, ordering: .relaxed)
            metrics.messagesReceived.increment()
            message.withUnsafeReadableBytes { owner.sessionReceived($0, on: connection) }
        case .ping(let nonce):
            _ = connection.sendControl(.pong(nonce))
        case .pong(let nonce):
            if let ping = outstandingPing, ping.nonce == nonce {
                let micros = (context.eventLoop.now - ping.sentAt).nanoseconds / 1000
                connection.rttMicros.store(UInt32(clamping: max(1, micros)), ordering: .relaxed)
                outstandingPing = nil
            }
        case .close(let code, let reason):
            if closeReason == nil { closeReason = .remote(code, reason) }
            context.close(promise: nil)
        }
    }

    private func reject(_ error: FrameError, context: ChannelHandlerContext) {
        guard closeReason == nil || closeReason?.label != "frame_error" else { return }
        closeReason = .frame(error)
        if let connection { owner.sessionRejected(error, on: connection) }
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? FrameError {
            reject(error, context: context)
        } else {
            if closeReason == nil { closeReason = .io(error) }
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { connection?.drain(force: false) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        tickTask?.cancel()
        tickTask = nil
        if let connection {
            connection.discardQueue()
            connection.session = nil
            owner.sessionClosed(connection, reason: closeReason ?? .eof)
        }
        context.fireChannelInactive()
    }

    private func scheduleTick(context: ChannelHandlerContext) {
        tickTask = context.eventLoop.assumeIsolated().scheduleTask(in: settings.tick) { [self] in
            tick(context: context)
        }
    }

    private func tick(context: ChannelHandlerContext) {
        guard let connection, context.channel.isActive else { return }
        let now = context.eventLoop.now
        if now - lastReceived >= settings.deadPeerTimeout {
            if closeReason == nil { closeReason = .deadPeer(settings.deadPeerTimeout.nanoseconds / 1_000_000) }
            context.close(promise: nil)
            return
        }
        // One PING at a time: a healthy peer answers it; one that does not is caught by the dead-peer check above.
        if outstandingPing == nil, now - lastPingSent >= settings.keepaliveInterval {
            let nonce = UInt64.random(in: 0...UInt64.max)
            outstandingPing = (nonce, now)
            lastPingSent = now
            _ = connection.sendControl(.ping(nonce))
        }
        scheduleTick(context: context)
    }
}
