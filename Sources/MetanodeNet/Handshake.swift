import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge

/// Why a handshake failed: a reason to count and branch on, and a message for the log.
public struct HandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A small closed set, used as the `reason` label of `metanode_net_handshake_failures_total`.
    public struct Reason: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case malformed, version, unlistedKey = "unlisted_key", wrongKey = "wrong_key"
            case badSignature = "bad_signature", weakKey = "weak_key", selfConnection = "self"
            case refusedByPeer = "refused_by_peer", unexpectedMessage = "unexpected_message", badLength = "bad_length"
            case timeout, closed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A field is missing, too short, too long or holds an impossible value.
        public static let malformed = Reason(.malformed)
        /// The peer speaks another protocol version (or another protocol: the magic is wrong).
        public static let version = Reason(.version)
        /// The initiator's key is not a configured peer and unlisted peers are not accepted.
        public static let unlistedKey = Reason(.unlistedKey)
        /// The responder's key is not the one configured for its address.
        public static let wrongKey = Reason(.wrongKey)
        public static let badSignature = Reason(.badSignature)
        /// An ephemeral key is a low-order point.
        public static let weakKey = Reason(.weakKey)
        /// The peer presented this node's own key.
        public static let selfConnection = Reason(.selfConnection)
        /// The peer sent REFUSE.
        public static let refusedByPeer = Reason(.refusedByPeer)
        /// A message of the wrong type for the handshake's state.
        public static let unexpectedMessage = Reason(.unexpectedMessage)
        /// A length prefix over the handshake maximum (often: not a Metanode peer at all).
        public static let badLength = Reason(.badLength)
        public static let timeout = Reason(.timeout)
        /// The connection closed before the handshake finished.
        public static let closed = Reason(.closed)

        /// The metric label: lowercase with underscores.
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

    static func malformed(_ message: String, field: String, _ detail: String) -> HandshakeError {
        HandshakeError(.malformed, "handshake \(message) field '\(field)' \(detail)")
    }
}

/// What a finished handshake established: who the peer is and the two directions' keys.
public struct HandshakeOutcome: Sendable {
    /// The peer's static Ed25519 key, proven by its signature over the transcript.
    public let peer: PeerID
    /// Whether this side sent HELLO.
    public let isInitiator: Bool
    /// The key of the node that initiated this connection (this node's or the peer's), for the duplicate tie-break.
    public let initiatorKey: PeerID
    /// Seals frames this side sends (counter from 0).
    public let sendKey: AEADKey
    /// Opens frames the peer sends (counter from 0).
    public let receiveKey: AEADKey
    /// BLAKE2b-256 of HELLO || REPLY || FINISH: identical on both sides.
    public let transcriptHash: [UInt8]
}

/// The handshake as a value: messages in, actions out; no I/O, clock or randomness (the caller passes the fresh
/// ephemeral key). The I/O shell is `HandshakeHandler`; docs/net-protocol.md specifies the bytes.
///
///     initiator                                         responder
///     HELLO  "MNET" 01 01 ephemeral_i static_i  ─────▶  static_i configured (or allowUnlisted)?
///            ◀─────  REPLY 02 ephemeral_r static_r sig_r(H(HELLO || REPLY without sig))
///     static_r == configured key for the address? sig_r valid?
///     FINISH 03 sig_i(H(HELLO || REPLY))            ─────▶  sig_i valid?
///     keys = BLAKE2b(kx key, "metanode/net/v1/session" || H(HELLO || REPLY || FINISH) || direction)
public struct Handshake: Sendable {
    public enum Role: Sendable {
        /// This node dialled `address` and expects the node there to hold `expectedPeer`.
        case initiator(expectedPeer: PeerID, address: String)
        /// This node accepted a connection from `address`.
        case responder(policy: ResponderPolicy, address: String)
    }

    /// Which initiators a responder accepts.
    public struct ResponderPolicy: Sendable {
        public var allowed: Set<PeerID>
        public var allowUnlisted: Bool

        public init(allowed: Set<PeerID>, allowUnlisted: Bool) {
            self.allowed = allowed
            self.allowUnlisted = allowUnlisted
        }
    }

    public enum Action: Sendable {
        /// Send this handshake message body (the caller adds the length prefix).
        case send([UInt8])
        /// The handshake succeeded; switch to encrypted frames.
        case complete(HandshakeOutcome)
        /// The handshake failed: send `notifyPeer` (a REFUSE body) if there is one, then close.
        case fail(HandshakeError, notifyPeer: [UInt8]?)
    }

    private enum State: Sendable {
        case initiatorStart
        case initiatorAwaitingReply
        case responderAwaitingHello
        case responderAwaitingFinish(peer: PeerID, keys: KeyExchangeKeys)
        case complete
        case failed
    }

    public static let helloByteCount = 4 + 1 + 1 + 32 + 32
    public static let replyByteCount = 1 + 32 + 32 + 64
    public static let finishByteCount = 1 + 64

    private let role: Role
    private let identity: Ed25519KeyPair
    private let localID: PeerID
    private let ephemeral: X25519KeyPair
    private var state: State
    /// HELLO || REPLY || FINISH bodies as they are sent or received (at most 264 bytes).
    private var transcript: [UInt8] = []

    public init(role: Role, identity: Ed25519KeyPair, ephemeral: X25519KeyPair) {
        self.role = role
        self.identity = identity
        self.localID = PeerID(bytes: identity.publicKey.bytes)!
        self.ephemeral = ephemeral
        switch role {
        case .initiator: state = .initiatorStart
        case .responder: state = .responderAwaitingHello
        }
        transcript.reserveCapacity(Self.helloByteCount + Self.replyByteCount + Self.finishByteCount)
    }

    /// Whether the handshake has finished, either way.
    public var isFinished: Bool {
        switch state {
        case .complete, .failed: true
        default: false
        }
    }

    /// The initiator's HELLO; nothing for a responder, which speaks second.
    public mutating func start() -> [Action] {
        guard case .initiatorStart = state else { return [] }
        var hello = NetWire.magic
        hello.append(NetWire.version)
        hello.append(NetWire.HandshakeType.hello.rawValue)
        hello += ephemeral.publicKey
        hello += identity.publicKey.bytes
        precondition(hello.count == Self.helloByteCount)
        transcript += hello
        state = .initiatorAwaitingReply
        return [.send(hello)]
    }

    /// Feeds one received handshake message body.
    public mutating func receive(_ body: some Collection<UInt8>) -> [Action] {
        let body = Array(body)
        switch state {
        case .responderAwaitingHello:
            return receiveHello(body)
        case .initiatorAwaitingReply:
            return receiveReply(body)
        case .responderAwaitingFinish(let peer, let keys):
            return receiveFinish(body, peer: peer, keys: keys)
        case .initiatorStart:
            return fail(.init(.unexpectedMessage, "the peer spoke before this node sent HELLO"), notify: false)
        case .complete, .failed:
            return fail(.init(.unexpectedMessage, "a handshake message arrived after the handshake finished"),
                        notify: false)
        }
    }

    /// Ends the handshake from outside (timeout, closed connection); later input is refused.
    public mutating func abandon() { state = .failed }

    // MARK: Responder

    private mutating func receiveHello(_ body: [UInt8]) -> [Action] {
        guard case .responder(let policy, let address) = role else { preconditionFailure("HELLO goes to a responder") }
        var reader = FieldReader(body, message: "HELLO")
        let fields: (ephemeral: [UInt8], key: [UInt8])
        do throws(HandshakeError) {
            let magic = try reader.read("magic", 4)
            guard magic == NetWire.magic else {
                throw HandshakeError(
                    .version,
                    "the peer at \(address) does not speak the Metanode net protocol (its first bytes are "
                        + "\(Hex.encode(magic)), not \(Hex.encode(NetWire.magic)) \"MNET\")")
            }
            let version = try reader.read("version", 1)[0]
            guard version == NetWire.version else {
                throw HandshakeError(
                    .version,
                    "the peer at \(address) speaks Metanode net protocol version \(version); this node speaks "
                        + "\(NetWire.version) — run the same release on both nodes")
            }
            let type = try reader.read("type", 1)[0]
            guard type == NetWire.HandshakeType.hello.rawValue else {
                throw HandshakeError.malformed("HELLO", field: "type", "is \(type), expected 1 (HELLO)")
            }
            fields.ephemeral = try reader.read("ephemeral key", 32)
            fields.key = try reader.read("static key", 32)
            try reader.finish()
        } catch {
            return fail(error, notify: true)
        }
        let peer = PeerID(bytes: fields.key)!
        if peer == localID {
            return fail(.init(.selfConnection, "the peer at \(address) presented this node's own key \(peer.short)"),
                        notify: true)
        }
        guard policy.allowUnlisted || policy.allowed.contains(peer) else {
            return fail(
                .init(.unlistedKey, "key \(peer.short) from \(address) is not a configured peer (set allowUnlisted "
                    + "to accept any key)"),
                notify: true)
        }
        let keys: KeyExchangeKeys
        do {
            keys = try ephemeral.serverSessionKeys(clientPublicKey: fields.ephemeral)
        } catch {
            return fail(.init(.weakKey, "HELLO from \(address) has a low-order ephemeral key"), notify: true)
        }
        transcript += body
        var reply: [UInt8] = [NetWire.HandshakeType.reply.rawValue]
        reply += ephemeral.publicKey
        reply += identity.publicKey.bytes
        transcript += reply
        reply += identity.sign(Self.signedMessage(NetWire.responderSignatureLabel, transcript))
        precondition(reply.count == Self.replyByteCount)
        transcript += reply[(1 + 32 + 32)...]
        state = .responderAwaitingFinish(peer: peer, keys: keys)
        return [.send(reply)]
    }

    private mutating func receiveFinish(_ body: [UInt8], peer: PeerID, keys: KeyExchangeKeys) -> [Action] {
        guard case .responder(_, let address) = role else { preconditionFailure("FINISH goes to a responder") }
        var reader = FieldReader(body, message: "FINISH")
        let signature: [UInt8]
        do throws(HandshakeError) {
            let type = try reader.read("type", 1)[0]
            if type == NetWire.HandshakeType.refuse.rawValue {
                return fail(Self.refusal(body, from: address), notify: false)
            }
            guard type == NetWire.HandshakeType.finish.rawValue else {
                throw HandshakeError.malformed("FINISH", field: "type", "is \(type), expected 3 (FINISH)")
            }
            signature = try reader.read("signature", 64)
            try reader.finish()
        } catch {
            return fail(error, notify: false)
        }
        let key = try! Ed25519PublicKey(bytes: peer.bytes)
        let signed = Self.signedMessage(NetWire.initiatorSignatureLabel, transcript)
        guard key.isValidSignature(signature, for: signed) else {
            return fail(.init(.badSignature, "FINISH from \(address) (key \(peer.short)) has an invalid signature"),
                        notify: false)
        }
        transcript += body
        state = .complete
        return [.complete(outcome(peer: peer, keys: keys, initiator: false))]
    }

    // MARK: Initiator

    private mutating func receiveReply(_ body: [UInt8]) -> [Action] {
        guard case .initiator(let expected, let address) = role else { preconditionFailure("REPLY goes to an initiator") }
        var reader = FieldReader(body, message: "REPLY")
        let fields: (ephemeral: [UInt8], key: [UInt8], signature: [UInt8])
        do throws(HandshakeError) {
            let type = try reader.read("type", 1)[0]
            if type == NetWire.HandshakeType.refuse.rawValue {
                return fail(Self.refusal(body, from: address), notify: false)
            }
            guard type == NetWire.HandshakeType.reply.rawValue else {
                throw HandshakeError.malformed("REPLY", field: "type", "is \(type), expected 2 (REPLY)")
            }
            fields.ephemeral = try reader.read("ephemeral key", 32)
            fields.key = try reader.read("static key", 32)
            fields.signature = try reader.read("signature", 64)
            try reader.finish()
        } catch {
            return fail(error, notify: true)
        }
        let peer = PeerID(bytes: fields.key)!
        guard peer == expected else {
            return fail(
                .init(.wrongKey, "peer at \(address) presented key \(peer.hex), but the configured key is \(expected.hex)"),
                notify: true)
        }
        let key = try! Ed25519PublicKey(bytes: fields.key)
        var signedTranscript = transcript
        signedTranscript += body[..<(1 + 32 + 32)]
        guard key.isValidSignature(fields.signature, for: Self.signedMessage(NetWire.responderSignatureLabel,
                                                                              signedTranscript))
        else {
            return fail(.init(.badSignature, "REPLY from \(address) (key \(peer.short)) has an invalid signature"),
                        notify: true)
        }
        let keys: KeyExchangeKeys
        do {
            keys = try ephemeral.clientSessionKeys(serverPublicKey: fields.ephemeral)
        } catch {
            return fail(.init(.weakKey, "REPLY from \(address) has a low-order ephemeral key"), notify: true)
        }
        transcript += body
        var finish: [UInt8] = [NetWire.HandshakeType.finish.rawValue]
        finish += identity.sign(Self.signedMessage(NetWire.initiatorSignatureLabel, transcript))
        precondition(finish.count == Self.finishByteCount)
        transcript += finish
        state = .complete
        return [.send(finish), .complete(outcome(peer: peer, keys: keys, initiator: true))]
    }

    // MARK: Shared

    private mutating func fail(_ error: HandshakeError, notify: Bool) -> [Action] {
        state = .failed
        guard notify else { return [.fail(error, notifyPeer: nil)] }
        // The peer learns why (keys are public; the reason helps whoever runs the other node).
        let refuse = [NetWire.HandshakeType.refuse.rawValue] + NetWire.reasonBytes(error.message)
        return [.fail(error, notifyPeer: refuse)]
    }

    private static func refusal(_ body: [UInt8], from address: String) -> HandshakeError {
        guard body.count - 1 <= NetWire.reasonBytesMax else {
            return .malformed("REFUSE", field: "reason", "is \(body.count - 1) bytes; at most \(NetWire.reasonBytesMax)")
        }
        return HandshakeError(
            .refusedByPeer, "the peer at \(address) refused the connection: \(NetWire.reasonText(body.dropFirst()))")
    }

    /// label || BLAKE2b-256(transcript): what each side signs.
    static func signedMessage(_ label: [UInt8], _ transcript: [UInt8]) -> [UInt8] {
        label + Hash.blake2b256(transcript)
    }

    private func outcome(peer: PeerID, keys: KeyExchangeKeys, initiator: Bool) -> HandshakeOutcome {
        let transcriptHash = Hash.blake2b256(transcript)
        // crypto_kx: the client's transmit key is the server's receive key, so each direction has one kx key.
        let (initiatorToResponder, responderToInitiator) =
            initiator ? (keys.transmit, keys.receive) : (keys.receive, keys.transmit)
        func derive(_ kxKey: UnsafeRawBufferPointer, _ direction: UInt8) -> AEADKey {
            NetWire.sessionKeyLabel.withUnsafeBytes { label in
                transcriptHash.withUnsafeBytes { hash in
                    withUnsafeBytes(of: direction) { direction in
                        Hash.deriveAEADKey(key: kxKey, parts: [label, hash, direction])
                    }
                }
            }
        }
        let i2r = derive(initiatorToResponder, NetWire.initiatorToResponder)
        let r2i = derive(responderToInitiator, NetWire.responderToInitiator)
        return HandshakeOutcome(
            peer: peer, isInitiator: initiator, initiatorKey: initiator ? localID : peer,
            sendKey: initiator ? i2r : r2i, receiveKey: initiator ? r2i : i2r, transcriptHash: transcriptHash)
    }
}

/// Reads a handshake message's fixed fields in order; each shortfall names the field.
private struct FieldReader {
    let bytes: [UInt8]
    let message: String
    var offset = 0

    init(_ bytes: [UInt8], message: String) {
        self.bytes = bytes
        self.message = message
    }

    private var lastField = "none"

    mutating func read(_ field: String, _ count: Int) throws(HandshakeError) -> [UInt8] {
        let remaining = bytes.count - offset
        guard remaining >= count else {
            throw HandshakeError.malformed(
                message, field: field,
                remaining == 0 ? "is missing (the message ends after \(offset) bytes)"
                    : "is truncated: \(remaining) of \(count) bytes")
        }
        defer { offset += count }
        lastField = field
        return Array(bytes[offset..<(offset + count)])
    }

    func finish() throws(HandshakeError) {
        guard offset == bytes.count else {
            throw HandshakeError.malformed(
                message, field: lastField, "is followed by \(bytes.count - offset) unexpected bytes")
        }
    }
}
