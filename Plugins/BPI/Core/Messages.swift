import MetanodeWire

/// QBFT's four message types.
public enum MessageKind: UInt8, Sendable, CaseIterable {
    case proposal = 1, prepare = 2, commit = 3, roundChange = 4
}

/// What a validator signs in a consensus message. Signed as `"metanode/bpi/qbft/v1" 0 <encoding>` through the node
/// key's plugin scope ("bpi"), so the signature cannot be replayed as anything else.
///
///     u8 kind | u64 height | u32 round | [32] digest | kind-specific:
///       roundChange: u8 hasPrepared, then u32 preparedRound if 1 (digest is the prepared block's hash, else zeros)
///       commit: [64] commit seal over CommitSeal.signingBytes(digest, round)
public struct ConsensusPayload: Sendable, Hashable {
    public static let domain = "metanode/bpi/qbft/v1"
    public static let zeroDigest = [UInt8](repeating: 0, count: 32)

    public var kind: MessageKind
    public var height: UInt64
    public var round: UInt32
    public var digest: [UInt8]
    public var preparedRound: UInt32?
    public var commitSeal: [UInt8]?

    public init(kind: MessageKind, height: UInt64, round: UInt32, digest: [UInt8], preparedRound: UInt32? = nil,
                commitSeal: [UInt8]? = nil) {
        self.kind = kind
        self.height = height
        self.round = round
        self.digest = digest
        self.preparedRound = preparedRound
        self.commitSeal = commitSeal
    }

    public func encode(into writer: inout WireWriter) {
        writer.u8(kind.rawValue)
        writer.u64(height)
        writer.u32(round)
        writer.fixed(digest, count: 32)
        switch kind {
        case .roundChange:
            writer.bool(preparedRound != nil)
            if let preparedRound { writer.u32(preparedRound) }
        case .commit:
            writer.fixed(commitSeal ?? [], count: 64)
        case .proposal, .prepare:
            break
        }
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 120)
        encode(into: &writer)
        return writer.bytes
    }

    public var signingBytes: [UInt8] { Array(Self.domain.utf8) + [0] + encoded }

    public static func decode(from reader: inout WireReader) throws(WireError) -> ConsensusPayload {
        let rawKind = try reader.u8("kind")
        guard let kind = MessageKind(rawValue: rawKind) else {
            throw WireError(.invalidValue, "\(reader.context).kind \(rawKind) is not a QBFT message type (1-4)")
        }
        var payload = ConsensusPayload(kind: kind, height: try reader.u64("height"), round: try reader.u32("round"),
                                       digest: try reader.fixed(32, "digest"))
        switch kind {
        case .roundChange:
            if try reader.bool("hasPrepared") { payload.preparedRound = try reader.u32("preparedRound") }
        case .commit:
            payload.commitSeal = try reader.fixed(64, "commitSeal")
        case .proposal, .prepare:
            break
        }
        return payload
    }
}

/// A payload with its signer (an index into the height's validator set) and signature.
public struct SignedMessage: Sendable, Hashable {
    public var payload: ConsensusPayload
    public var signer: UInt16
    public var signature: [UInt8]

    public init(payload: ConsensusPayload, signer: UInt16, signature: [UInt8]) {
        self.payload = payload
        self.signer = signer
        self.signature = signature
    }

    public func encode(into writer: inout WireWriter) {
        payload.encode(into: &writer)
        writer.u16(signer)
        writer.fixed(signature, count: 64)
    }

    public static func decode(from reader: inout WireReader) throws(WireError) -> SignedMessage {
        SignedMessage(payload: try ConsensusPayload.decode(from: &reader), signer: try reader.u16("signer"),
                      signature: try reader.fixed(64, "signature"))
    }

    /// Whether the signature is the named validator's; false for an index outside the set.
    public func isSigned(by validators: ValidatorSet, plugin: String) -> Bool {
        guard let key = validators.key(Int(signer)) else { return false }
        return NodeSignature.verify(signature: signature, nodeKey: key, plugin: plugin, message: payload.signingBytes)
    }
}

/// A consensus message as it travels between validators, with what justifies it.
public enum ConsensusEnvelope: Sendable, Hashable {
    /// A proposal for (height, round) by that round's proposer. Above round 0, `roundChanges` is a quorum of round
    /// changes for the round and `prepares` a quorum of prepares for the highest prepared block among them (if any).
    case proposal(SignedMessage, block: Block, roundChanges: [SignedMessage], prepares: [SignedMessage])
    case prepare(SignedMessage)
    case commit(SignedMessage)
    /// A round change; if its signer prepared a block, the block and the quorum of prepares that prepared it.
    case roundChange(SignedMessage, preparedBlock: Block?, prepares: [SignedMessage])

    public static let justificationMax = ValidatorSet.countMax

    public var message: SignedMessage {
        switch self {
        case .proposal(let message, _, _, _), .prepare(let message), .commit(let message),
             .roundChange(let message, _, _):
            message
        }
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: encodedCapacity)
        encode(into: &writer)
        return writer.bytes
    }

    /// Room for `encoded`: the block's, and a kilobyte for each message beside it.
    var encodedCapacity: Int {
        switch self {
        case .proposal(_, let block, let roundChanges, let prepares):
            block.encodedCapacity + 1_024 * (1 + roundChanges.count + prepares.count)
        case .roundChange(_, let block, let prepares): (block?.encodedCapacity ?? 0) + 1_024 * (1 + prepares.count)
        case .prepare, .commit: 256
        }
    }

    public func encode(into writer: inout WireWriter) {
        let message = self.message
        writer.u8(message.payload.kind.rawValue)
        message.encode(into: &writer)
        switch self {
        case .proposal(_, let block, let roundChanges, let prepares):
            block.encode(into: &writer)
            Self.encode(roundChanges, into: &writer)
            Self.encode(prepares, into: &writer)
        case .roundChange(_, let block, let prepares):
            writer.bool(block != nil)
            block?.encode(into: &writer)
            Self.encode(prepares, into: &writer)
        case .prepare, .commit:
            break
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> ConsensusEnvelope {
        var reader = WireReader(bytes, context: "consensus message")
        let rawKind = try reader.u8("type")
        let message = try SignedMessage.decode(from: &reader)
        guard message.payload.kind.rawValue == rawKind else {
            throw WireError(.invalidValue, "consensus message of type \(rawKind) carries a "
                + "\(message.payload.kind) payload")
        }
        let envelope: ConsensusEnvelope
        switch message.payload.kind {
        case .proposal:
            envelope = .proposal(message, block: try Block.decode(from: &reader),
                                 roundChanges: try decodeList(&reader, "roundChanges"),
                                 prepares: try decodeList(&reader, "prepares"))
        case .roundChange:
            let block: Block? = try reader.bool("hasPreparedBlock") ? try Block.decode(from: &reader) : nil
            envelope = .roundChange(message, preparedBlock: block, prepares: try decodeList(&reader, "prepares"))
        case .prepare:
            envelope = .prepare(message)
        case .commit:
            envelope = .commit(message)
        }
        try reader.finish()
        return envelope
    }

    private static func encode(_ messages: [SignedMessage], into writer: inout WireWriter) {
        writer.u16(UInt16(messages.count))
        for message in messages { message.encode(into: &writer) }
    }

    private static func decodeList(_ reader: inout WireReader, _ field: String) throws(WireError) -> [SignedMessage] {
        let count = try reader.count16(field, max: justificationMax, itemBytesMin: 111)
        var messages: [SignedMessage] = []
        for _ in 0..<count { messages.append(try SignedMessage.decode(from: &reader)) }
        return messages
    }
}
