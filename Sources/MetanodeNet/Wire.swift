import MetanodeCrypto
import NIOCore

/// The numbers and labels of the wire protocol (docs/net-protocol.md is the prose form of this file).
public enum NetWire {
    /// The first bytes of every connection's first message.
    public static let magic: [UInt8] = Array("MNET".utf8)
    public static let version: UInt8 = 1

    /// Every message on the wire, handshake or encrypted, starts with its body's length as a big-endian u32.
    public static let lengthPrefixByteCount = 4
    /// The largest handshake message body accepted; a longer length prefix closes the connection before its body is read.
    public static let handshakeMessageBytesMax = 1024
    /// REFUSE and CLOSE carry at most this many bytes of UTF-8 reason text; senders cut longer reasons.
    public static let reasonBytesMax = 512

    /// The first byte of a handshake message (after the magic and version, for HELLO).
    public enum HandshakeType: UInt8, Sendable {
        case hello = 1
        case reply = 2
        case finish = 3
        case refuse = 4
    }

    /// The first byte of an encrypted frame's plaintext.
    public enum FrameType: UInt8, Sendable {
        /// One PeerTransport message, opaque to the transport.
        case data = 0
        /// A u64 (big-endian) the peer echoes in a PONG.
        case ping = 1
        case pong = 2
        /// A close code (u8) and UTF-8 reason text; the sender sends nothing after it, the receiver closes on reading it.
        case close = 3
    }

    /// Why a CLOSE was sent, for the receiver to act on (the text is for people). Unknown codes read as `other`.
    public enum CloseCode: UInt8, Sendable {
        case other = 0
        /// This connection lost the duplicate tie-break; the sender keeps another connection to the receiver (one
        /// that may still be finishing its handshake on the receiver's side).
        case duplicate = 1
        /// The sending node is shutting down.
        case shutdown = 2
    }

    /// Bytes an encrypted frame adds to its payload: the type byte and the Poly1305 tag (the length prefix aside).
    public static let frameOverheadBytes = 1 + ChaCha20Poly1305.tagByteCount
    /// The smallest valid encrypted frame body: a type byte and a tag.
    public static let frameBytesMin = frameOverheadBytes

    /// Signature and key derivation labels (ASCII, no terminator): every signed or derived value is domain-separated.
    static let responderSignatureLabel: [UInt8] = Array("metanode/net/v1/responder".utf8)
    static let initiatorSignatureLabel: [UInt8] = Array("metanode/net/v1/initiator".utf8)
    static let sessionKeyLabel: [UInt8] = Array("metanode/net/v1/session".utf8)
    static let initiatorToResponder: UInt8 = 1
    static let responderToInitiator: UInt8 = 2

    /// A reason cut to `reasonBytesMax` bytes on a UTF-8 character boundary.
    static func reasonBytes(_ text: String) -> [UInt8] {
        var bytes = Array(text.utf8)
        guard bytes.count > reasonBytesMax else { return bytes }
        var end = reasonBytesMax
        while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }  // don't split a multi-byte character
        bytes.removeSubrange(end...)
        return bytes
    }

    /// Reason text from the wire, safe to log: invalid UTF-8 replaced, control characters shown as '?'.
    static func reasonText(_ bytes: some Collection<UInt8>) -> String {
        String(String.UnicodeScalarView(String(decoding: bytes, as: UTF8.self).unicodeScalars.map {
            $0.properties.generalCategory == .control ? "?" : $0
        }))
    }
}
