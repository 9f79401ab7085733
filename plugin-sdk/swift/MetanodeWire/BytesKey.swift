#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dictionary key of bytes (a public key, a transaction id, a state key) that hashes them once, when made.
/// `[UInt8]` feeds its hasher byte by byte at every lookup, and the ledger looks the same senders, ids and state keys
/// up several times per transaction (admission, block checks, pruning, module handlers).
///
/// Keys of up to `inlineBytesMax` bytes (every public key, id and module balance key) are held in the value itself:
/// making one allocates nothing, and a table compares it where it lies, where a key in an array of its own was an
/// allocation when made and a pointer to chase, most often to a cold cache line, on every lookup that found it.
/// Longer keys keep their bytes in an array.
public struct BytesKey: Hashable, Sendable {
    public static let inlineBytesMax = 32

    /// The bytes of an inline key, in order, zero past `count`; zero for a longer key.
    @usableFromInline var inline: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    /// A longer key's bytes (nil for an inline key).
    @usableFromInline let spilled: [UInt8]?
    public let count: Int
    @usableFromInline let bytesHash: Int

    public init(_ bytes: [UInt8]) {
        if bytes.count <= Self.inlineBytesMax {
            self.init(words: bytes.withUnsafeBytes { Self.words($0) }, count: bytes.count)
        } else {
            self.init(spilling: bytes)
        }
    }

    /// A key of `bytes` (copied).
    public init(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count <= Self.inlineBytesMax {
            self.init(words: Self.words(bytes), count: bytes.count)
        } else {
            self.init(spilling: Array(bytes))
        }
    }

    /// A key of `prefix` followed by `rest`, made without an array of the two when it fits inline (a module's state
    /// key: its name and "/" before the key it passed).
    public init(_ prefix: [UInt8], _ rest: UnsafeRawBufferPointer) {
        let total = prefix.count + rest.count
        guard total <= Self.inlineBytesMax else {
            var joined: [UInt8] = []
            joined.reserveCapacity(total)
            joined.append(contentsOf: prefix)
            joined.append(contentsOf: rest)
            self.init(joined)
            return
        }
        self.init(words: prefix.withUnsafeBytes { Self.words($0, rest) }, count: total)
    }

    /// `first` then `second` (together at most `inlineBytesMax`) in order in four words, zero after them.
    private static func words(_ first: UnsafeRawBufferPointer,
                              _ second: UnsafeRawBufferPointer = .init(start: nil, count: 0))
        -> (UInt64, UInt64, UInt64, UInt64) {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { words in
            if first.count > 0 { words.baseAddress!.copyMemory(from: first.baseAddress!, byteCount: first.count) }
            if second.count > 0 {
                (words.baseAddress! + first.count).copyMemory(from: second.baseAddress!, byteCount: second.count)
            }
        }
        return words
    }

    private init(spilling bytes: [UInt8]) {
        spilled = bytes
        count = bytes.count
        var hasher = Hasher()
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        bytesHash = hasher.finalize()
    }

    private init(words: (UInt64, UInt64, UInt64, UInt64), count: Int) {
        inline = words
        spilled = nil
        self.count = count
        var hasher = Hasher()
        Swift.withUnsafeBytes(of: words) { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        bytesHash = hasher.finalize()
    }

    /// The bytes, as a new array for an inline key.
    public var bytes: [UInt8] {
        if let spilled { return spilled }
        return withUnsafeBytes { Array($0) }
    }

    /// Calls `body` with the bytes, in place.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let spilled { return try spilled.withUnsafeBytes(body) }
        return try Swift.withUnsafeBytes(of: inline) { try body(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
    }

    // Inlinable, with the comparisons below, so that a dictionary's lookup compares the key where it lies in the
    // table: through an opaque call it retained and released the stored key at every probe.
    @inlinable
    public static func == (a: BytesKey, b: BytesKey) -> Bool {
        guard a.bytesHash == b.bytesHash, a.count == b.count, a.inline == b.inline else { return false }
        guard let spilled = a.spilled else { return true }
        return spilled.hasSameBytes(as: b.spilled!)
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

    /// Whether the bytes sort before `other`'s (as `[UInt8].lexicographicallyPrecedes` would).
    public func lexicographicallyPrecedes(_ other: BytesKey) -> Bool {
        withUnsafeBytes { a in other.withUnsafeBytes { b in
            let order = memcmp(a.baseAddress!, b.baseAddress!, min(a.count, b.count))
            return order != 0 ? order < 0 : a.count < b.count
        } }
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
