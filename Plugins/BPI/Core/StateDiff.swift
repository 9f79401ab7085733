import MetanodeWire

/// A finalized block's changes to the ledger state, as BPI stores them between state checkpoints: each sender's next
/// nonce, and each module write (full key; nil deletes). Values are absolute, so applying a diff twice, or over a
/// checkpoint that already holds it, gives the same state.
///
///     u32 n | n × (bytes16 sender | u64 next nonce)
///     u32 m | m × (bytes16 key | u8 0)                 a delete
///               | (bytes16 key | u8 1 | bytes32 value) a put
public struct StateDiff: Sendable, Equatable {
    public var nextNonces: [BytesKey: UInt64]
    public var writes: [BytesKey: [UInt8]?]

    /// Bounds for decoding: a sender is an Ed25519 key (32 bytes); a key is a module name, "/" and ledger.h's key
    /// (at most 1,024 bytes); a value at most the kv store's 16 MiB.
    public static let senderBytesMax = 64
    public static let keyBytesMax = 2_048
    public static let valueBytesMax = 16 << 20

    public init(nextNonces: [BytesKey: UInt64], writes: [BytesKey: [UInt8]?]) {
        self.nextNonces = nextNonces
        self.writes = writes
    }

    public var isEmpty: Bool { nextNonces.isEmpty && writes.isEmpty }

    /// The encoding's size, to choose a capacity (and to see whether it fits a kv value) before encoding.
    public var encodedCount: Int {
        var count = 8
        for (sender, _) in nextNonces { count += 2 + sender.count + 8 }
        for (key, value) in writes { count += 2 + key.count + 1 + (value.map { 4 + $0.count } ?? 0) }
        return count
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: encodedCount)
        writer.u32(UInt32(nextNonces.count))
        for (sender, nonce) in nextNonces {
            sender.withUnsafeBytes { writer.bytes16($0) }
            writer.u64(nonce)
        }
        writer.u32(UInt32(writes.count))
        for (key, value) in writes {
            key.withUnsafeBytes { writer.bytes16($0) }
            if let value {
                writer.u8(1)
                writer.bytes32(value)
            } else {
                writer.u8(0)
            }
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8], context: String = "state diff") throws(WireError) -> StateDiff {
        var reader = WireReader(bytes, context: context)
        let nonceCount = try reader.count32("nonces", max: bytes.count / 11, itemBytesMin: 11)
        var nextNonces: [BytesKey: UInt64] = [:]
        nextNonces.reserveCapacity(nonceCount)
        for _ in 0..<nonceCount {
            let sender = try reader.bytes16("sender", max: senderBytesMax)
            nextNonces[BytesKey(sender)] = try reader.u64("next nonce")
        }
        let writeCount = try reader.count32("writes", max: bytes.count / 3, itemBytesMin: 3)
        var writes: [BytesKey: [UInt8]?] = [:]
        writes.reserveCapacity(writeCount)
        for _ in 0..<writeCount {
            let key = try reader.bytes16("key", max: keyBytesMax)
            writes[BytesKey(key)] = try reader.bool("present") ? .some(try reader.bytes32("value", max: valueBytesMax))
                : .some(nil)
        }
        try reader.finish()
        return StateDiff(nextNonces: nextNonces, writes: writes)
    }
}
