import NIOCore

/// Splits the byte stream into length-prefixed bodies (u32 big-endian length, then that many bytes) and passes each
/// body on as a slice of the receive buffer (no copy). A length over `maximumLength` or under `minimumLength` fails
/// before any of the body is read. The handshake raises the bounds once it is done (handshake messages are small;
/// encrypted frames go up to NetConfig.frameBytesMax), so this is a class the handshake handler holds too.
public final class LengthPrefixFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public var maximumLength: Int
    public var minimumLength: Int
    /// "handshake message" or "frame", for error messages.
    public var phase: String

    public init(maximumLength: Int, minimumLength: Int = 0, phase: String = "handshake message") {
        precondition(maximumLength <= Int(UInt32.max) && minimumLength <= maximumLength)
        self.maximumLength = maximumLength
        self.minimumLength = minimumLength
        self.phase = phase
    }

    public func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let body = try next(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(body))
        return .continue
    }

    public func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while let body = try next(&buffer) {
            context.fireChannelRead(Self.wrapInboundOut(body))
        }
        if buffer.readableBytes > 0 {
            let expected = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self).map { "\(4 + Int($0))" } ?? "4+"
            let received = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: received)
            throw FrameError(
                .truncated, "the connection ended inside a \(phase): \(received) of \(expected) bytes arrived")
        }
        return .needMoreData
    }

    /// The next whole body, nil when more bytes are needed. Also the fuzzer's entry point.
    public func next(_ buffer: inout ByteBuffer) throws(FrameError) -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self).map(Int.init) else { return nil }
        guard length <= maximumLength else {
            throw FrameError(.badLength, "\(phase) length \(length) is over the maximum \(maximumLength)")
        }
        guard length >= minimumLength else {
            throw FrameError(.badLength, "\(phase) length \(length) is under the minimum \(minimumLength)")
        }
        guard buffer.readableBytes >= 4 + length else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: length)!
    }
}
