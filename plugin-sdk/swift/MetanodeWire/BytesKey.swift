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
    @usableFromInline let bytesHash: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var hasher = Hasher()
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        bytesHash = hasher.finalize()
    }

    // Inlinable, with the comparisons below, so that a dictionary's lookup compares the key where it lies in the
    // table: through an opaque call it retained and released the stored key's array at every probe.
    @inlinable
    public static func == (a: BytesKey, b: BytesKey) -> Bool {
        a.bytesHash == b.bytesHash && a.bytes.hasSameBytes(as: b.bytes)
    }

    @inlinable
    public func hash(into hasher: inout Hasher) { hasher.combine(bytesHash) }

    /// What a dictionary or set asks on every lookup and insert: by default a second SipHash, of `bytesHash` and the
    /// table's seed. `bytesHash` is already SipHash of the bytes under the process's random key, so mixing the seed
    /// in with splitmix64's finalizer spreads it as well, for a few multiplies: the ledger looks up thousands of
    /// keys per block on every node.
    @inlinable
    public func _rawHashValue(seed: Int) -> Int {
        var mixed = UInt64(UInt(bitPattern: bytesHash)) ^ UInt64(UInt(bitPattern: seed))
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int(truncatingIfNeeded: mixed ^ (mixed >> 31))
    }
}

extension Array where Element == UInt8 {
    /// Whether `other` holds the same bytes, compared with `memcmp`: `==` on byte arrays compiles to a loop that
    /// compares one byte at a time, and ids, keys and whole transactions are compared on every lookup that finds them.
    @inlinable
    public func hasSameBytes(as other: [UInt8]) -> Bool {
        guard count == other.count else { return false }
        guard count > 0 else { return true }
        return withUnsafeBytes { a in other.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}
