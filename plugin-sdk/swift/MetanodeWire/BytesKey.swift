#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

    public static func == (a: BytesKey, b: BytesKey) -> Bool {
        a.bytesHash == b.bytesHash && a.bytes.hasSameBytes(as: b.bytes)
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(bytesHash) }
}

extension Array where Element == UInt8 {
    /// Whether `other` holds the same bytes, compared with `memcmp`: `==` on byte arrays compiles to a loop that
    /// compares one byte at a time, and ids, keys and whole transactions are compared on every lookup that finds them.
    public func hasSameBytes(as other: [UInt8]) -> Bool {
        guard count == other.count else { return false }
        guard count > 0 else { return true }
        return withUnsafeBytes { a in other.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}
