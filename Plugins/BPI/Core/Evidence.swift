import MetanodeWire

/// Proof that a validator signed two different messages of one kind for one height and round — the one thing an
/// honest validator never does (its WAL sees to that across restarts). Blocks carry evidence; executing a block
/// records each piece in the ledger state under `stateKey`, once.
///
///     evidence  signed message | signed message      (ordered by their encodings, so one offence has one form)
public struct Evidence: Sendable, Hashable {
    public static let perBlockMax = 64

    public let first: SignedMessage
    public let second: SignedMessage

    /// Orders the two messages canonically.
    public init(_ a: SignedMessage, _ b: SignedMessage) {
        if Self.encoding(a).lexicographicallyPrecedes(Self.encoding(b)) {
            first = a
            second = b
        } else {
            first = b
            second = a
        }
    }

    private static func encoding(_ message: SignedMessage) -> [UInt8] {
        var writer = WireWriter(capacity: 180)
        message.encode(into: &writer)
        return writer.bytes
    }

    public func encode(into writer: inout WireWriter) {
        first.encode(into: &writer)
        second.encode(into: &writer)
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 360)
        encode(into: &writer)
        return writer.bytes
    }

    public static func decode(from reader: inout WireReader) throws(WireError) -> Evidence {
        let a = try SignedMessage.decode(from: &reader)
        let b = try SignedMessage.decode(from: &reader)
        return Evidence(a, b)
    }

    public var hash: [UInt8] { WireCrypto.domainHash("metanode/bpi/evidence/v1", encoded) }

    /// Where the ledger state records it: "bpi/evidence/" ‖ u16 validator ‖ u64 height ‖ u32 round ‖ u8 kind.
    public var stateKey: [UInt8] {
        var writer = WireWriter(capacity: 32)
        writer.raw(Array("bpi/evidence/".utf8))
        writer.u16(first.signer)
        writer.u64(first.payload.height)
        writer.u32(first.payload.round)
        writer.u8(first.payload.kind.rawValue)
        return writer.bytes
    }

    /// nil if this proves an offence by a member of `validators`; otherwise why not.
    public func problem(validators: ValidatorSet, plugin: String) -> String? {
        let a = first.payload, b = second.payload
        guard first.signer == second.signer else { return "the two messages have different signers" }
        guard a.kind == b.kind, a.height == b.height, a.round == b.round else {
            return "the two messages are not for the same kind, height and round"
        }
        guard a != b else { return "the two messages say the same thing" }
        guard first.isSigned(by: validators, plugin: plugin), second.isSigned(by: validators, plugin: plugin) else {
            return "a signature does not verify"
        }
        return nil
    }

    public static func root(_ evidence: [Evidence]) -> [UInt8] {
        MerkleTree.root(leafHashes: evidence.map { MerkleTree.leafHash($0.hash) })
    }
}
