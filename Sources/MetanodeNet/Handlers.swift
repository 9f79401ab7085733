import MetanodeCrypto
import NIOCore

/// Fired inbound (a user event) when the handshake succeeds, before any encrypted frame is passed on.
public struct HandshakeCompleted: Sendable {
    public let outcome: HandshakeOutcome
}

/// Runs a `Handshake` on a channel: writes its messages with their length prefix, enforces the handshake timeout,
/// and on success raises the frame decoder's bounds to encrypted-frame sizes, fires `HandshakeCompleted` and from then
/// on passes frames through. On failure it sends the REFUSE message if there is one, closes, and reports the error
/// once through `onFailure`.
public final class HandshakeHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case waiting
        case running
        case complete
        case failed
    }

    private var handshake: Handshake
    private let decoder: LengthPrefixFrameDecoder
    private let frameBytesMax: Int
    private let timeout: TimeAmount
    private let onFailure: (HandshakeError) -> Void
    private var state = State.waiting
    private var timeoutTask: Scheduled<Void>?

    /// `onFailure` runs on the channel's event loop.
    public init(
        handshake: Handshake, decoder: LengthPrefixFrameDecoder, frameBytesMax: Int, timeout: TimeAmount,
        onFailure: @escaping (HandshakeError) -> Void
    ) {
        self.handshake = handshake
        self.decoder = decoder
        self.frameBytesMax = frameBytesMax
        self.timeout = timeout
        self.onFailure = onFailure
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { begin(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        begin(context: context)
        context.fireChannelActive()
    }

    private func begin(context: ChannelHandlerContext) {
        guard state == .waiting else { return }
        state = .running
        let timeout = self.timeout
        timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            guard state == .running else { return }
            fail(HandshakeError(.timeout, "the handshake did not finish within \(timeout.nanoseconds / 1_000_000) ms"),
                 notify: nil, context: context)
        }
        perform(handshake.start(), context: context)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .complete:
            context.fireChannelRead(data)
        case .running:
            let body = unwrapInboundIn(data)
            perform(handshake.receive(body.readableBytesView), context: context)
        case .waiting, .failed:
            break
        }
    }

    private func perform(_ actions: [Handshake.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .send(let body):
                context.writeAndFlush(wrapOutboundOut(Self.framed(body, allocator: context.channel.allocator)),
                                      promise: nil)
            case .complete(let outcome):
                state = .complete
                timeoutTask?.cancel()
                timeoutTask = nil
                decoder.maximumLength = frameBytesMax
                decoder.minimumLength = NetWire.frameBytesMin
                decoder.phase = "frame"
                context.fireUserInboundEventTriggered(HandshakeCompleted(outcome: outcome))
            case .fail(let error, let notify):
                fail(error, notify: notify, context: context)
            }
        }
    }

    private func fail(_ error: HandshakeError, notify: [UInt8]?, context: ChannelHandlerContext) {
        guard state == .running || state == .waiting else { return }
        state = .failed
        handshake.abandon()
        timeoutTask?.cancel()
        timeoutTask = nil
        onFailure(error)
        if let notify {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(Self.framed(notify, allocator: channel.allocator))).whenComplete { _ in
                channel.close(promise: nil)
            }
        } else {
            context.close(promise: nil)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard state != .complete else {
            context.fireErrorCaught(error)
            return
        }
        let failure: HandshakeError =
            if let error = error as? FrameError {
                HandshakeError(error.reason == .badLength ? .badLength : .malformed, error.message)
            } else {
                HandshakeError(.closed, "the connection failed during the handshake: \(error)")
            }
        fail(failure, notify: nil, context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if state == .running || state == .waiting {
            fail(HandshakeError(.closed, "the connection closed during the handshake"), notify: nil, context: context)
        }
        context.fireChannelInactive()
    }

    static func framed(_ body: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 4 + body.count)
        buffer.writeInteger(UInt32(body.count))
        buffer.writeBytes(body)
        return buffer
    }
}

/// Decrypts encrypted frames after the handshake: takes the receive key from `HandshakeCompleted`, opens each frame
/// body into a scratch buffer it reuses (so neither the receive buffer nor the heap is touched per frame) and passes
/// the plaintext (type byte and payload) on. A frame that fails authentication raises a `FrameError`.
public final class SecureFrameHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    /// Scratch kept between frames up to this size; a larger one is released after use.
    static let scratchBytesKept = 1 << 20

    private var opener: FrameOpener?
    private var scratch: ByteBuffer?
    private var failed = false

    /// Waits for `HandshakeCompleted` to learn the key.
    public init() {}

    /// Opens frames with `receiveKey` from the first one (tests and the fuzzer, which skip the handshake).
    public init(receiveKey: AEADKey) {
        opener = FrameOpener(key: receiveKey)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? HandshakeCompleted {
            opener = FrameOpener(key: completed.outcome.receiveKey)
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        guard opener != nil else {
            failed = true
            context.fireErrorCaught(FrameError(.malformed, "an encrypted frame arrived before the handshake finished"))
            return
        }
        let body = unwrapInboundIn(data)
        var plaintext = scratch ?? context.channel.allocator.buffer(capacity: 4096)
        scratch = nil
        plaintext.clear()
        let textCount = body.readableBytes - ChaCha20Poly1305.tagByteCount
        var failure: FrameError?
        if textCount < 1 {
            failure = FrameError(.badLength, "frame length \(body.readableBytes) is under the minimum \(NetWire.frameBytesMin)")
        } else {
            plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: textCount) { output in
                body.withUnsafeReadableBytes { input in
                    do throws(FrameError) {
                        try opener!.open(input, into: output.baseAddress!)
                    } catch {
                        failure = error
                    }
                }
                return failure == nil ? textCount : 0
            }
        }
        if let failure {
            failed = true
            context.fireErrorCaught(failure)
            return
        }
        context.fireChannelRead(wrapInboundOut(plaintext))
        if plaintext.capacity <= Self.scratchBytesKept { scratch = plaintext }
    }
}
