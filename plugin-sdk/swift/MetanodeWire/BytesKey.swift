/// A dictionary key of bytes (a public key, a transaction id, a state key) that hashes them once, when made.
/// `[UInt8]` feeds its hasher byte by byte at every lookup, and the ledger looks the same senders, ids and state keys
/// up several times per transaction (admission, block checks, pruning, module handlers).
public struct BytesKey: Hashable, Sendable {
    public let bytes: [UInt8]
    private let bytesHash: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var hasher = Hasher()
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        bytesHash = hasher.finalize()
    }

    public static func == (a: BytesKey, b: BytesKey) -> Bool { a.bytesHash == b.bytesHash && a.bytes == b.bytes }

    public func hash(into hasher: inout Hasher) { hasher.combine(bytesHash) }
}
