import Logging
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import NIOCore
import NIOPosix
import Prometheus
import Synchronization

/// The kernel's peer-to-peer transport: TCP between nodes, each connection authenticated by a signed X25519
/// handshake and encrypted with ChaCha20-Poly1305 (docs/net-protocol.md).
///
/// - Every configured peer is dialled; a failed or lost connection is retried with capped exponential backoff and
///   jitter (`NetConfig.reconnect*`). Inbound connections are accepted from configured keys (any key with
///   `allowUnlisted`).
/// - One logical connection per peer: when both nodes dial each other at once, both keep the connection initiated by
///   the node with the lexicographically smaller key; the other is retired (its queue written, then CLOSE).
/// - `send` copies the message into the peer's bounded queue and returns; the event loop encrypts and writes queued
///   messages in batches.
/// - Delegate callbacks run on the transport's event loop (one loop for all its connections, so peer events are in
///   order): `peerUp` when a peer's first authenticated connection is ready, `peerDown` when it has none left,
///   `received` for each message. None after `shutdown()` has started.
public final class NIOPeerTransport: PeerTransport {
    public let localID: PeerID
    private let identity: Ed25519KeyPair
    private let config: NetConfig
    private let logger: Logger
    private let metrics: NetMetrics
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    /// Every channel of this transport (listener, dials, accepted) is on this loop.
    private let loop: any EventLoop
    private let policy: Handshake.ResponderPolicy
    private let settings: SessionHandler.Settings
    private let state: Mutex<State>
    private let callbacksEnabled = Atomic<Bool>(true)
    /// Set once before `start` (which publishes it to the event loop), then only read.
    private nonisolated(unsafe) var delegate: (any PeerTransportDelegate)?

    private enum Phase {
        case idle, running, stopped
    }

    private struct State {
        var phase = Phase.idle
        var peers: [PeerID: PeerRecord] = [:]
        var listener: (any Channel)?
        var boundAddress: HostPort?
        /// Every open channel (handshaking or established), for shutdown.
        var channels: [ObjectIdentifier: any Channel] = [:]
    }

    private struct PeerRecord {
        let id: PeerID
        var address: String
        /// Where to dial; nil for an unlisted peer that connected to us.
        let dialAddress: HostPort?
        var connections: [ObjectIdentifier: Connection] = [:]
        /// The connection messages are sent on; nil when disconnected.
        var active: Connection?
        /// Whether the delegate was told peerUp (and not yet peerDown).
        var announced = false
        /// peerDown deferred after the peer retired our active connection as a duplicate: its replacement is on the
        /// way (still in its handshake here), so the peer is not reported down unless it fails to arrive.
        var pendingDown: Scheduled<Void>?
        var dialing = false
        var retry: Scheduled<Void>?
        var attempt = 0
        var lastError: String?
        var rttMicros: UInt32 = 0
        /// Counters of connections that have closed.
        var messagesSent: UInt64 = 0
        var messagesReceived: UInt64 = 0
        var bytesSent: UInt64 = 0
        var bytesReceived: UInt64 = 0
        var dropped: UInt64 = 0

        init(id: PeerID, address: String, dialAddress: HostPort?) {
            self.id = id
            self.address = address
            self.dialAddress = dialAddress
        }

        mutating func fold(_ connection: Connection) {
            messagesSent += connection.messagesSent.load(ordering: .relaxed)
            messagesReceived += connection.messagesReceived.load(ordering: .relaxed)
            bytesSent += connection.bytesSent.load(ordering: .relaxed)
            bytesReceived += connection.bytesReceived.load(ordering: .relaxed)
            dropped += connection.dropped.load(ordering: .relaxed)
            let rtt = connection.rttMicros.load(ordering: .relaxed)
            if rtt != 0 { rttMicros = rtt }
        }
    }

    /// - Parameters:
    ///   - group: the event loop group to run on (one of its loops carries every connection); nil makes a
    ///     one-thread group that `shutdown()` stops.
    public init(
        identity: Ed25519KeyPair, config: NetConfig, logger: Logger, metrics: PrometheusCollectorRegistry,
        group: (any EventLoopGroup)? = nil
    ) {
        self.identity = identity
        localID = PeerID(bytes: identity.publicKey.bytes)!
        self.config = config
        self.logger = logger
        self.metrics = NetMetrics(registry: metrics)
        if let group {
            self.group = group
            ownsGroup = false
        } else {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            ownsGroup = true
        }
        loop = self.group.next()
        policy = Handshake.ResponderPolicy(allowed: Set(config.peers.map(\.key)), allowUnlisted: config.allowUnlisted)
        settings = SessionHandler.Settings(config)
        var peers: [PeerID: PeerRecord] = [:]
        for peer in config.peers where peers[peer.key] == nil && peer.key != localID {
            peers[peer.key] = PeerRecord(id: peer.key, address: peer.address.description, dialAddress: peer.address)
        }
        state = Mutex(State(peers: peers))
    }

    public func setDelegate(_ delegate: any PeerTransportDelegate) {
        state.withLock { state in
            precondition(state.phase == .idle, "NIOPeerTransport.setDelegate is called once, before start()")
        }
        self.delegate = delegate
    }

    /// The address the listener is bound to (its real port when `NetConfig.listen` asked for port 0).
    public var boundAddress: HostPort? { state.withLock { $0.boundAddress } }

    // MARK: Lifecycle

    /// Validates the configuration, binds the listener (if `listen` is set) and starts dialling every peer.
    public func start() async throws(MetanodeError) {
        try validate(config)
        try state.withLock { state throws(MetanodeError) in
            guard state.phase == .idle else {
                throw MetanodeError(.invalidArgument, "this transport was already started; make a new one")
            }
            state.phase = .running
        }
        if let listen = config.listen {
            do {
                let listener = try await ServerBootstrap(group: loop)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .serverChannelOption(.backlog, value: 256)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelOption(.writeBufferWaterMark, value: Self.waterMark)
                    .childChannelOption(.recvAllocator, value: Self.receiveAllocator)
                    .childChannelInitializer { [self] channel in
                        channel.eventLoop.makeCompletedFuture {
                            try install(channel, role: nil, address: Self.describe(channel.remoteAddress))
                        }
                    }
                    .bind(host: listen.host, port: listen.port).get()
                let port = listener.localAddress?.port ?? listen.port
                let stillRunning = state.withLock { state in
                    guard state.phase == .running else { return false }
                    state.listener = listener
                    state.boundAddress = HostPort(host: listen.host, port: port)
                    return true
                }
                guard stillRunning else {
                    try? await listener.close()
                    throw MetanodeError(.stopped, "the transport was shut down while it started")
                }
                logger.info("net: listening", metadata: ["address": "\(HostPort(host: listen.host, port: port))",
                                                         "key": "\(localID.short)"])
            } catch let error as MetanodeError {
                throw error
            } catch {
                state.withLock { $0.phase = .stopped }
                throw MetanodeError(
                    .io, "cannot listen on \(listen): \(error) — is another node using that port?", cause: error)
            }
        }
        let peers = state.withLock { Array($0.peers.keys) }
        loop.execute { [self] in
            for peer in peers { dial(peer) }
        }
    }

    /// Closes the listener and every connection (sending CLOSE on established ones) and waits until they are closed.
    /// No delegate callback runs once this has started.
    public func shutdown() async {
        callbacksEnabled.store(false, ordering: .sequentiallyConsistent)
        let (listener, channels, retries, connections) = state.withLock { state in
            state.phase = .stopped
            let retries = state.peers.values.compactMap(\.retry) + state.peers.values.compactMap(\.pendingDown)
            let connections = state.peers.values.flatMap(\.connections.values)
            for id in Array(state.peers.keys) {
                state.peers[id]?.retry = nil
                state.peers[id]?.pendingDown = nil
            }
            return (state.listener, Array(state.channels.values), retries, connections)
        }
        for retry in retries { retry.cancel() }
        try? await listener?.close()
        let closing = loop.submit {
            for connection in connections { connection.close(.shutdown, notifyPeer: true) }
            for channel in channels { channel.close(promise: nil) }
        }
        try? await closing.get()
        for channel in channels { try? await channel.closeFuture.get() }
        // A callback that started before callbacksEnabled was cleared has finished once the loop runs this.
        try? await loop.submit {}.get()
        if ownsGroup { try? await group.shutdownGracefully() }
    }

    private func validate(_ config: NetConfig) throws(MetanodeError) {
        var seen = Set<PeerID>()
        for peer in config.peers {
            guard peer.key != localID else {
                throw MetanodeError(
                    .invalidConfig, "peer \(peer.address) has this node's own key \(peer.key.short); remove it")
            }
            guard seen.insert(peer.key).inserted else {
                throw MetanodeError(.invalidConfig, "peer key \(peer.key.short) is listed twice; list each peer once")
            }
        }
        guard config.frameBytesMax >= NetWire.frameBytesMin + 1024, config.frameBytesMax <= Int(UInt32.max) else {
            throw MetanodeError(.invalidConfig, "frameBytesMax \(config.frameBytesMax) is outside 1041...\(UInt32.max)")
        }
        guard config.sendQueueMessagesMax > 0, config.sendQueueBytesMax >= config.frameBytesMax + 4 else {
            throw MetanodeError(
                .invalidConfig,
                "the send queue must hold at least one message of the largest size (sendQueueBytesMax "
                    + "\(config.sendQueueBytesMax) < frameBytesMax \(config.frameBytesMax) + 4)")
        }
    }

    // MARK: PeerTransport

    public func send(header: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer, to peer: PeerID) -> PeerSendResult {
        guard header.count + body.count <= config.messageBytesMax else { return .tooLarge }
        // Twice at most: a connection retired between the lookup and the enqueue refuses, and the next lookup finds
        // its successor.
        for _ in 0..<2 {
            guard let connection = state.withLock({ $0.peers[peer]?.active }) else { return .notConnected }
            switch connection.enqueue(header: header, body: body) {
            case .queued: return .queued
            case .full: return .queueFull
            case .closed: continue
            }
        }
        return .notConnected
    }

    public func connectedPeers() -> [PeerID] {
        state.withLock { state in state.peers.values.filter { $0.active != nil }.map(\.id) }.sorted()
    }

    public func peerStatus() -> [PeerStatus] {
        state.withLock { state in
            state.peers.values.map { record in
                var totals = record
                for connection in record.connections.values { totals.fold(connection) }
                let phase: PeerStatus.State =
                    record.active != nil ? .connected : record.dialing ? .connecting : .disconnected
                let rtt = record.active?.rttMicros.load(ordering: .relaxed) ?? record.rttMicros
                var status = PeerStatus(
                    id: record.id, address: record.address, state: phase, rttMicros: rtt == 0 ? nil : rtt)
                status.messagesSent = totals.messagesSent
                status.messagesReceived = totals.messagesReceived
                status.bytesSent = totals.bytesSent
                status.bytesReceived = totals.bytesReceived
                status.droppedMessages = totals.dropped
                status.queuedMessages = record.active?.queuedMessages ?? 0
                status.lastError = record.lastError
                return status
            }
        }.sorted { $0.id < $1.id }
    }

    /// Authenticated connections open to `peer` right now, including one being retired as a duplicate. For tests and
    /// diagnostics: 1 in a steady state.
    public func connectionCount(to peer: PeerID) -> Int {
        state.withLock { $0.peers[peer]?.connections.count ?? 0 }
    }

    // MARK: Channels

    private static let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 256 << 10, high: 1 << 20)
    private static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16 << 10,
                                                                          maximum: 256 << 10)

    /// Adds the handlers of a peer connection. `role` nil: accepted (responder); otherwise dialled.
    private func install(_ channel: any Channel, role: (peer: PeerID, address: String)?, address: String) throws {
        let running = state.withLock { state in
            guard state.phase == .running else { return false }
            state.channels[ObjectIdentifier(channel)] = channel
            return true
        }
        guard running else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
        }
        let handshakeRole: Handshake.Role =
            if let role { .initiator(expectedPeer: role.peer, address: role.address) } else {
                .responder(policy: policy, address: address)
            }
        let decoder = LengthPrefixFrameDecoder(maximumLength: NetWire.handshakeMessageBytesMax)
        let handshake = Handshake(role: handshakeRole, identity: identity, ephemeral: .generate())
        let dialled = role?.peer
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(decoder),
            HandshakeHandler(
                handshake: handshake, decoder: decoder, frameBytesMax: config.frameBytesMax,
                timeout: .milliseconds(config.handshakeTimeoutMs)
            ) { [self] error in handshakeFailed(error, address: address, dialled: dialled) },
            SecureFrameHandler(),
            SessionHandler(owner: self, metrics: metrics, settings: settings, address: address))
    }

    static func describe(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown" }
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return HostPort(host: ip, port: port).description
    }

    // MARK: Dialling

    /// On the loop: connects to `peer` unless it is connected, being dialled, or the transport stopped.
    private func dial(_ peer: PeerID) {
        let target = state.withLock { state -> HostPort? in
            guard state.phase == .running, var record = state.peers[peer], let address = record.dialAddress,
                  record.active == nil, !record.dialing
            else { return nil }
            record.dialing = true
            record.retry = nil
            state.peers[peer] = record
            return address
        }
        guard let target else { return }
        let address = target.description
        ClientBootstrap(group: loop)
            .connectTimeout(.milliseconds(config.handshakeTimeoutMs))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: Self.waterMark)
            .channelOption(.recvAllocator, value: Self.receiveAllocator)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try install(channel, role: (peer, address), address: address)
                }
            }
            .connect(host: target.host, port: target.port)
            .whenFailure { [self] error in
                loop.execute { self.dialEnded(peer, error: "cannot connect to \(address): \(error)", quiet: true) }
            }
    }

    /// On the loop: a dial failed (connect or handshake); records why and schedules the next attempt.
    private func dialEnded(_ peer: PeerID, error: String, quiet: Bool) {
        let delay = state.withLock { state -> Int64? in
            guard var record = state.peers[peer] else { return nil }
            record.dialing = false
            record.lastError = error
            state.peers[peer] = record
            return scheduleRetry(peer, &state)
        }
        if quiet {
            logger.debug("net: dial failed", metadata: ["peer": "\(peer.short)", "error": "\(error)",
                                                        "retryMs": "\(delay.map(String.init) ?? "none")"])
        }
    }

    /// Under the state lock: schedules the next dial of `peer` if it is configured, not connected, not being dialled
    /// and none is scheduled. Returns the delay.
    private func scheduleRetry(_ peer: PeerID, _ locked: inout State) -> Int64? {
        guard locked.phase == .running, var record = locked.peers[peer], record.dialAddress != nil,
              record.active == nil, !record.dialing, record.retry == nil, record.pendingDown == nil
        else { return nil }
        let delay = backoffMs(attempt: record.attempt)
        record.attempt += 1
        record.retry = loop.scheduleTask(in: .milliseconds(delay)) { [self] in
            self.state.withLock { $0.peers[peer]?.retry = nil }
            dial(peer)
        }
        locked.peers[peer] = record
        return delay
    }

    /// base × 2^attempt capped at reconnectCapMs, plus a random jitter of up to half of that.
    func backoffMs(attempt: Int) -> Int64 {
        let base = max(1, config.reconnectBaseMs)
        let delay = min(config.reconnectCapMs, base << min(attempt, 40))
        return delay + Int64.random(in: 0...max(0, delay / 2))
    }

    private func handshakeFailed(_ error: HandshakeError, address: String, dialled: PeerID?) {
        metrics.handshakeFailed(reason: error.reason)
        let serious: Set<HandshakeError.Reason> = [
            .wrongKey, .unlistedKey, .badSignature, .version, .selfConnection, .weakKey, .malformed, .refusedByPeer,
        ]
        let level: Logger.Level = serious.contains(error.reason) ? .warning : (dialled == nil ? .info : .debug)
        let direction = dialled == nil ? "inbound" : "outbound"
        if error.reason == .wrongKey {
            // The one line that prints full keys: an operator compares them with the config.
            logger.log(level: level, "net: refused \(direction) connection: \(error.message)")
        } else {
            logger.log(level: level, "net: refused \(direction) connection from \(address): \(error.message)",
                       metadata: ["reason": "\(error.reason)"])
        }
        if let dialled { dialEnded(dialled, error: error.message, quiet: false) }
    }
}

// MARK: Sessions

extension NIOPeerTransport: SessionOwner {
    private enum Establishment {
        case reject
        case up
        /// The replacement of a connection the peer retired as a duplicate: up all along as far as the delegate knows.
        case resumed
        case replace(Connection)
        case retireNew(keeping: Connection)
    }

    func sessionEstablished(_ connection: Connection) {
        let peer = connection.peer
        let (outcome, connected) = state.withLock { state -> (Establishment, Int) in
            guard state.phase == .running else { return (.reject, 0) }
            var record =
                state.peers[peer] ?? PeerRecord(id: peer, address: connection.address, dialAddress: nil)
            if connection.isInitiator { record.dialing = false }
            record.attempt = 0
            record.retry?.cancel()
            record.retry = nil
            record.lastError = nil
            record.connections[ObjectIdentifier(connection)] = connection
            let outcome: Establishment
            if let current = record.active {
                if Self.prefer(connection, over: current) {
                    record.active = connection
                    outcome = .replace(current)
                } else {
                    outcome = .retireNew(keeping: current)
                }
            } else {
                record.active = connection
                if record.dialAddress == nil { record.address = connection.address }
                record.pendingDown?.cancel()
                record.pendingDown = nil
                outcome = record.announced ? .resumed : .up
                record.announced = true
            }
            state.peers[peer] = record
            return (outcome, state.peers.values.count { $0.active != nil })
        }
        let direction = connection.isInitiator ? "outbound" : "inbound"
        switch outcome {
        case .reject:
            connection.close(.shutdown, notifyPeer: true)
            return
        case .up:
            metrics.connectionsEstablished.increment()
            metrics.connectedPeers.set(Int64(connected))
            logger.info("net: connected to peer \(peer.short) at \(connection.address) (\(direction))")
            if callbacksEnabled.load(ordering: .relaxed) { delegate?.peerTransport(peerUp: peer) }
        case .resumed:
            metrics.connectionsEstablished.increment()
            metrics.connectedPeers.set(Int64(connected))
            logger.debug("net: connection to peer \(peer.short) replaced (\(direction))")
        case .replace(let old):
            metrics.connectionsEstablished.increment()
            logger.debug("net: second connection to peer \(peer.short) (\(direction)); retiring the older one")
            retire(old, keeping: connection)
        case .retireNew(let current):
            metrics.connectionsEstablished.increment()
            logger.debug("net: second connection to peer \(peer.short) (\(direction)); retiring it")
            retire(connection, keeping: current)
        }
    }

    /// Of two authenticated connections to one peer, whether to keep `new` rather than `current`: the one the node
    /// with the smaller key initiated; if both sides' choice is the same initiator, the newer (the initiator only
    /// dials again once it has given the older one up). Both nodes decide the same way.
    static func prefer(_ new: Connection, over current: Connection) -> Bool {
        if new.initiatorKey != current.initiatorKey { return new.initiatorKey < current.initiatorKey }
        return true
    }

    /// Stops sending on `loser`, writes its queue and a CLOSE, and leaves it open until the peer's CLOSE arrives (so
    /// frames the peer sent on it before deciding the same are still read), or the dead-peer timeout passes.
    private func retire(_ loser: Connection, keeping winner: Connection) {
        loser.close(.duplicate(keeping: winner.initiatorKey), notifyPeer: true, awaitPeerClose: true)
        let channel = loser.channel
        loop.scheduleTask(in: settings.deadPeerTimeout) { channel.close(promise: nil) }
    }

    func sessionReceived(_ message: UnsafeRawBufferPointer, on connection: Connection) {
        guard callbacksEnabled.load(ordering: .relaxed), let delegate else { return }
        delegate.peerTransport(received: message, from: connection.peer)
    }

    func sessionRejected(_ error: FrameError, on connection: Connection) {
        metrics.frameRejected(reason: error.reason)
        logger.warning("net: closing connection to peer \(connection.peer.short) at \(connection.address): \(error.message)",
                       metadata: ["reason": "\(error.reason)"])
    }

    func sessionClosed(_ connection: Connection, reason: CloseReason) {
        let peer = connection.peer
        // The peer kept another connection and closed this one: wait for that one (it may still be in its handshake
        // here) before reporting the peer down or dialling it.
        let replacementExpected = reason.byPeer && reason.code == .duplicate
        let (outcome, connected, retryMs) = state.withLock { state -> (Departure, Int, Int64?) in
            guard var record = state.peers[peer],
                  record.connections.removeValue(forKey: ObjectIdentifier(connection)) != nil
            else { return (.duplicate, 0, nil) }
            record.fold(connection)
            guard record.active === connection else {
                state.peers[peer] = record
                return (.duplicate, 0, nil)
            }
            record.active = nil
            record.lastError = reason.message
            let outcome: Departure
            if replacementExpected && state.phase == .running {
                record.pendingDown = loop.scheduleTask(in: .milliseconds(config.handshakeTimeoutMs)) { [self] in
                    replacementMissed(peer)
                }
                outcome = .awaitingReplacement
            } else {
                record.announced = false
                outcome = .down
            }
            if record.dialAddress == nil && record.connections.isEmpty && outcome == .down {
                state.peers[peer] = nil
            } else {
                state.peers[peer] = record
            }
            let retry = outcome == .down ? scheduleRetry(peer, &state) : nil
            return (outcome, state.peers.values.count { $0.active != nil }, retry)
        }
        metrics.connectionClosed(reason: reason.label)
        switch outcome {
        case .duplicate:
            logger.debug("net: closed duplicate connection to peer \(peer.short): \(reason.message)")
        case .awaitingReplacement:
            metrics.connectedPeers.set(Int64(connected))
            logger.debug("net: peer \(peer.short) retired this connection; waiting for the one it kept")
        case .down:
            metrics.connectedPeers.set(Int64(connected))
            logger.info("net: disconnected from peer \(peer.short) at \(connection.address): \(reason.message)",
                        metadata: retryMs.map { ["retryMs": "\($0)"] } ?? [:])
            if callbacksEnabled.load(ordering: .relaxed) { delegate?.peerTransport(peerDown: peer) }
        }
    }

    private enum Departure {
        /// A connection that was not the active one.
        case duplicate
        case awaitingReplacement
        case down
    }

    /// On the loop: the connection the peer said it kept did not arrive in time.
    private func replacementMissed(_ peer: PeerID) {
        let down = state.withLock { state -> Bool in
            guard var record = state.peers[peer], record.pendingDown != nil else { return false }
            record.pendingDown = nil
            guard record.active == nil, record.announced else {
                state.peers[peer] = record
                return false
            }
            record.announced = false
            if record.dialAddress == nil && record.connections.isEmpty {
                state.peers[peer] = nil
            } else {
                state.peers[peer] = record
                _ = scheduleRetry(peer, &state)
            }
            return true
        }
        guard down else { return }
        logger.info("net: disconnected from peer \(peer.short): the connection it kept did not arrive")
        if callbacksEnabled.load(ordering: .relaxed) { delegate?.peerTransport(peerDown: peer) }
    }
}
