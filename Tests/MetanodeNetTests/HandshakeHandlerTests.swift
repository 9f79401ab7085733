import MetanodeCrypto
import MetanodeHostBridge
import MetanodeNet
import NIOCore
import NIOEmbedded
import Testing

/// The handshake's I/O shell on EmbeddedChannels, with manual time.
@Suite struct HandshakeHandlerTests {
    /// Remembers the completion event and the failures of one side.
    final class Observer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var completed: HandshakeOutcome?
        var plaintexts: [ByteBuffer] = []

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? HandshakeCompleted { completed = event.outcome }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) { plaintexts.append(unwrapInboundIn(data)) }
    }

    final class Failures: @unchecked Sendable {
        var errors: [HandshakeError] = []
    }

    struct Side {
        let channel: EmbeddedChannel
        let decoder: LengthPrefixFrameDecoder
        let observer: Observer
        let failures: Failures
    }

    let initiatorKey = key(1)
    let responderKey = key(2)
    let frameBytesMax = 8192

    func side(_ role: Handshake.Role, identity: Ed25519KeyPair, timeoutMs: Int64 = 1000) throws -> Side {
        let channel = EmbeddedChannel()
        let decoder = LengthPrefixFrameDecoder(maximumLength: NetWire.handshakeMessageBytesMax)
        let observer = Observer()
        let failures = Failures()
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(decoder),
            HandshakeHandler(
                handshake: Handshake(role: role, identity: identity, ephemeral: .generate()), decoder: decoder,
                frameBytesMax: frameBytesMax, timeout: .milliseconds(timeoutMs)
            ) { failures.errors.append($0) },
            SecureFrameHandler(),
            observer)
        return Side(channel: channel, decoder: decoder, observer: observer, failures: failures)
    }

    func initiator() throws -> Side {
        try side(.initiator(expectedPeer: peerID(responderKey), address: "responder"), identity: initiatorKey)
    }

    func responder(allowed: [PeerID]? = nil, timeoutMs: Int64 = 1000) throws -> Side {
        try side(
            .responder(policy: .init(allowed: Set(allowed ?? [peerID(initiatorKey)]), allowUnlisted: false),
                       address: "initiator"),
            identity: responderKey, timeoutMs: timeoutMs)
    }

    /// Moves everything each side wrote to the other until neither writes more.
    func pump(_ a: Side, _ b: Side) throws {
        var moved = true
        while moved {
            moved = false
            for (from, to) in [(a, b), (b, a)] {
                while let bytes = try from.channel.readOutbound(as: ByteBuffer.self) {
                    moved = true
                    if to.channel.isActive { try to.channel.writeInbound(bytes) }
                }
            }
        }
    }

    func connect(_ sides: Side...) throws {
        for side in sides { try side.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait() }
    }

    @Test func twoHandlersCompleteTheHandshakeAndThenCarryFrames() throws {
        let i = try initiator()
        let r = try responder()
        try connect(r, i)
        try pump(i, r)
        let initiatorOutcome = try #require(i.observer.completed)
        let responderOutcome = try #require(r.observer.completed)
        #expect(initiatorOutcome.peer == peerID(responderKey) && responderOutcome.peer == peerID(initiatorKey))
        #expect(r.decoder.maximumLength == frameBytesMax && r.decoder.minimumLength == NetWire.frameBytesMin)

        var sealer = FrameSealer(key: initiatorOutcome.sendKey)
        var frame = ByteBuffer()
        SecureFrame.appendControl(.data(ByteBuffer(string: "after the handshake")), to: &frame)
        sealer.sealFrames(in: &frame)
        try r.channel.writeInbound(frame)
        #expect(try r.observer.plaintexts.map(SecureFrame.parse) == [.data(ByteBuffer(string: "after the handshake"))])
        #expect(i.failures.errors.isEmpty && r.failures.errors.isEmpty)
    }

    @Test func aResponderThatHearsNothingTimesOutAndCloses() throws {
        let r = try responder(timeoutMs: 250)
        try connect(r)
        r.channel.embeddedEventLoop.advanceTime(by: .milliseconds(249))
        #expect(r.failures.errors.isEmpty && r.channel.isActive)
        r.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(r.failures.errors.map(\.reason) == [.timeout])
        #expect(r.failures.errors.first?.message == "the handshake did not finish within 250 ms")
        #expect(!r.channel.isActive)
    }

    @Test func aRefusedInitiatorIsToldWhyThenClosed() throws {
        let i = try initiator()
        let r = try responder(allowed: [])
        try connect(r, i)
        try pump(i, r)
        #expect(r.failures.errors.map(\.reason) == [.unlistedKey])
        #expect(i.failures.errors.map(\.reason) == [.refusedByPeer])
        #expect(!r.channel.isActive)
        #expect(i.observer.completed == nil && r.observer.completed == nil)
    }

    @Test func garbageDuringTheHandshakeIsOneFailure() throws {
        let r = try responder()
        try connect(r)
        try? r.channel.writeInbound(ByteBuffer(string: "SSH-2.0-OpenSSH_9.6\r\n"))
        #expect(r.failures.errors.map(\.reason) == [.badLength])
        #expect(!r.channel.isActive)
    }

    @Test func aConnectionClosedMidHandshakeIsOneFailure() throws {
        let r = try responder()
        try connect(r)
        try r.channel.close().wait()
        #expect(r.failures.errors.map(\.reason) == [.closed])
    }
}
