import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeNet
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A hand-driven TCP client for attacking a transport: it writes whatever bytes a test gives it, collects what it
/// receives, and can run the real handshake (from the public state machine) to reach the encrypted phase.
final class RawPeer: Sendable {
    let channel: any Channel
    private let collector: Collector

    /// Collects what arrives; the peer reads its inbox.
    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let inbox = Mutex(ByteBuffer())
        let closed = Atomic(false)

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            inbox.withLock { $0.writeBuffer(&bytes) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            closed.store(true, ordering: .sequentiallyConsistent)
        }
    }

    static func connect(to address: HostPort) async throws -> RawPeer {
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: address.host, port: address.port).get()
        return RawPeer(collector: collector, channel: channel)
    }

    private init(collector: Collector, channel: any Channel) {
        self.collector = collector
        self.channel = channel
    }

    var isClosed: Bool { collector.closed.load(ordering: .sequentiallyConsistent) }

    func write(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    func write(_ buffer: ByteBuffer) async throws {
        try await channel.writeAndFlush(buffer)
    }

    /// Writes `body` with its u32 length prefix.
    func writeFramed(_ body: [UInt8]) async throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(body.count))
        buffer.writeBytes(body)
        try await write(buffer)
    }

    /// The next length-prefixed body received, waiting up to `timeoutMs`; nil if none came (or the peer closed).
    func readFramed(timeoutMs: Int = 3000) async -> [UInt8]? {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        // The inbox is looked at once more after the deadline: a sleep in a loaded run can end long past it.
        while true {
            let lookedAt = ContinuousClock.now
            let body = collector.inbox.withLock { inbox -> [UInt8]? in
                guard let length = inbox.getInteger(at: inbox.readerIndex, as: UInt32.self),
                      inbox.readableBytes >= 4 + Int(length)
                else { return nil }
                inbox.moveReaderIndex(forwardBy: 4)
                return inbox.readBytes(length: Int(length))
            }
            if let body { return body }
            if isClosed || lookedAt >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Waits until the transport closes the connection.
    func waitUntilClosed(timeoutMs: Int = 3000, sourceLocation: SourceLocation = #_sourceLocation) async {
        await eventually("the transport closes the raw connection", timeoutMs: timeoutMs,
                         sourceLocation: sourceLocation) { isClosed }
    }

    /// Runs the initiator side of the handshake against `expected`; returns the outcome.
    func handshake(as identity: Ed25519KeyPair, expecting expected: PeerID) async throws -> HandshakeOutcome {
        var machine = Handshake(role: .initiator(expectedPeer: expected, address: "test"), identity: identity,
                                ephemeral: .generate())
        var actions = machine.start()
        while true {
            for action in actions {
                switch action {
                case .send(let body):
                    try await writeFramed(body)
                case .complete(let outcome):
                    return outcome
                case .fail(let error, _):
                    throw error
                }
            }
            guard let body = await readFramed() else {
                throw HandshakeError(.closed, "the transport closed the connection during the handshake")
            }
            actions = machine.receive(body)
        }
    }

    func close() async {
        try? await channel.close()
    }
}

/// Seals frames as a peer would after the handshake.
struct RawSealer {
    var sealer: FrameSealer

    init(_ outcome: HandshakeOutcome) {
        sealer = FrameSealer(key: outcome.sendKey)
    }

    mutating func frame(_ frame: SecureFrame) -> ByteBuffer {
        var buffer = ByteBuffer()
        SecureFrame.appendControl(frame, to: &buffer)
        sealer.sealFrames(in: &buffer)
        return buffer
    }
}
