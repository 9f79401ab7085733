import MetanodeCrypto
import NIOCore

/// Why a frame was rejected; the connection it arrived on is closed.
public struct FrameError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A small closed set, used as the `reason` label of `metanode_net_frames_rejected_total`.
    public struct Reason: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case badLength = "bad_length", authFailure = "auth_failure", unknownType = "unknown_type"
            case malformed, truncated
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A length prefix over the maximum or under the minimum.
        public static let badLength = Reason(.badLength)
        /// The tag does not verify: the frame was modified, replayed, reordered or sealed with another key.
        public static let authFailure = Reason(.authFailure)
        /// The plaintext's type byte is not one this version knows.
        public static let unknownType = Reason(.unknownType)
        /// A known type with a payload of the wrong size (a PING that is not 8 bytes, an over-long CLOSE reason).
        public static let malformed = Reason(.malformed)
        /// The connection ended inside a frame.
        public static let truncated = Reason(.truncated)

        public var label: String { base.rawValue }
        public var description: String { base.rawValue }
    }

    public let reason: Reason
    public let message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { message }
}

/// Seals the frames one side of a connection sends, counting from 0. A frame is laid out as the wire has it: a u32
/// big-endian length L, then L - 16 plaintext bytes (type byte and payload), then 16 bytes the tag is written into.
/// The length bytes are the associated data. Sealing happens in place.
public struct FrameSealer: Sendable {
    private let key: AEADKey
    /// The counter (nonce) the next frame is sealed with.
    public private(set) var counter: UInt64 = 0

    public init(key: AEADKey) {
        self.key = key
    }

    /// Seals the frame at the start of `frame` in place and returns its size on the wire (4 + L).
    @discardableResult
    public mutating func seal(frameAt frame: UnsafeMutableRawBufferPointer) -> Int {
        precondition(frame.count >= 4, "a frame starts with a 4-byte length")
        let length = Int(UInt32(bigEndian: frame.loadUnaligned(as: UInt32.self)))
        precondition(length >= NetWire.frameBytesMin && 4 + length <= frame.count, "frame length \(length) is invalid")
        // A counter is never reused with a key; 2^64 frames is beyond any connection's life, so this only guards bugs.
        precondition(counter < UInt64.max, "the frame counter is exhausted; the connection must be replaced")
        let textCount = length - ChaCha20Poly1305.tagByteCount
        let text = UnsafeMutableRawBufferPointer(rebasing: frame[4..<(4 + textCount)])
        ChaCha20Poly1305.seal(
            text, tag: frame.baseAddress! + 4 + textCount, associatedData: UnsafeRawBufferPointer(rebasing: frame[0..<4]),
            counter: counter, key: key)
        counter += 1
        return 4 + length
    }

    /// Seals every frame in `buffer`'s readable bytes (laid out back to back, as `SecureFrame.append` writes them) and
    /// returns how many there were.
    @discardableResult
    public mutating func sealFrames(in buffer: inout ByteBuffer) -> Int {
        var frames = 0
        buffer.withUnsafeMutableReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                offset += seal(frameAt: UnsafeMutableRawBufferPointer(rebasing: bytes[offset...]))
                frames += 1
            }
        }
        return frames
    }
}

/// Opens the frames one side of a connection receives: exactly the next counter is accepted, so a replayed, dropped,
/// reordered or modified frame fails authentication.
public struct FrameOpener: Sendable {
    private let key: AEADKey
    /// The counter the next frame must have been sealed with.
    public private(set) var counter: UInt64 = 0

    public init(key: AEADKey) {
        self.key = key
    }

    /// Verifies and decrypts a frame body (ciphertext then tag, `body.count` = L) into `output`, which receives L - 16
    /// bytes and may be `body`'s own memory.
    public mutating func open(_ body: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(FrameError) {
        guard body.count >= NetWire.frameBytesMin else {
            throw FrameError(.badLength, "frame length \(body.count) is under the minimum \(NetWire.frameBytesMin)")
        }
        let textCount = body.count - ChaCha20Poly1305.tagByteCount
        let opened = withUnsafeBytes(of: UInt32(body.count).bigEndian) { lengthBytes in
            ChaCha20Poly1305.open(
                UnsafeRawBufferPointer(rebasing: body[..<textCount]), tag: body.baseAddress! + textCount,
                associatedData: lengthBytes, counter: counter, key: key, into: output)
        }
        guard opened else {
            throw FrameError(
                .authFailure,
                "frame \(counter) (\(body.count) bytes) failed authentication: modified, replayed, reordered or forged")
        }
        counter += 1
    }
}

/// A decrypted frame.
public enum SecureFrame: Sendable, Equatable {
    case data(ByteBuffer)
    case ping(UInt64)
    case pong(UInt64)
    case close(NetWire.CloseCode, String)

    /// Bytes `append` writes for a payload of `payloadCount` bytes.
    public static func wireBytes(payloadCount: Int) -> Int { 4 + NetWire.frameOverheadBytes + payloadCount }

    /// Appends an unsealed frame: length, type, the payload parts, and room for the tag (zeros until sealed).
    public static func append(
        _ type: NetWire.FrameType, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer? = nil,
        to buffer: inout ByteBuffer
    ) {
        let payloadCount = first.count + (second?.count ?? 0)
        buffer.writeInteger(UInt32(NetWire.frameOverheadBytes + payloadCount))
        buffer.writeInteger(type.rawValue)
        buffer.writeBytes(first)
        if let second { buffer.writeBytes(second) }
        buffer.writeRepeatingByte(0, count: ChaCha20Poly1305.tagByteCount)
    }

    /// Appends an unsealed control frame (PING, PONG, CLOSE).
    public static func appendControl(_ frame: SecureFrame, to buffer: inout ByteBuffer) {
        switch frame {
        case .data(let payload):
            payload.withUnsafeReadableBytes { append(.data, $0, to: &buffer) }
        case .ping(let nonce):
            withUnsafeBytes(of: nonce.bigEndian) { append(.ping, $0, to: &buffer) }
        case .pong(let nonce):
            withUnsafeBytes(of: nonce.bigEndian) { append(.pong, $0, to: &buffer) }
        case .close(let code, let reason):
            ([code.rawValue] + NetWire.reasonBytes(reason)).withUnsafeBytes { append(.close, $0, to: &buffer) }
        }
    }

    /// Parses a decrypted plaintext (type byte then payload). DATA's payload is a slice of `plaintext`.
    public static func parse(_ plaintext: ByteBuffer) throws(FrameError) -> SecureFrame {
        var payload = plaintext
        guard let typeByte = payload.readInteger(as: UInt8.self) else {
            throw FrameError(.malformed, "a frame's plaintext is empty; it needs a type byte")
        }
        guard let type = NetWire.FrameType(rawValue: typeByte) else {
            throw FrameError(.unknownType, "frame type \(typeByte) is unknown (this node speaks version \(NetWire.version))")
        }
        switch type {
        case .data:
            return .data(payload)
        case .ping, .pong:
            guard payload.readableBytes == 8, let nonce = payload.readInteger(as: UInt64.self) else {
                throw FrameError(.malformed, "a \(type == .ping ? "PING" : "PONG") carries 8 bytes, not \(payload.readableBytes)")
            }
            return type == .ping ? .ping(nonce) : .pong(nonce)
        case .close:
            guard let codeByte = payload.readInteger(as: UInt8.self) else {
                throw FrameError(.malformed, "a CLOSE carries a code byte; this one is empty")
            }
            guard payload.readableBytes <= NetWire.reasonBytesMax else {
                throw FrameError(
                    .malformed, "a CLOSE reason is at most \(NetWire.reasonBytesMax) bytes, not \(payload.readableBytes)")
            }
            return .close(NetWire.CloseCode(rawValue: codeByte) ?? .other, NetWire.reasonText(payload.readableBytesView))
        }
    }
}
