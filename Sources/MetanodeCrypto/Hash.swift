import CSodium

/// One-shot hashes. The `into:` forms write into the caller's buffer and allocate nothing, for the kernel's hot path.
public enum Hash {
    public static let blake2b256ByteCount = 32
    public static let blake2b512ByteCount = 64
    public static let sha256ByteCount = 32

    // MARK: BLAKE2b-256

    /// Writes 32 bytes at `output`.
    public static func blake2b256(_ data: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) {
        blake2b(data, into: output, byteCount: blake2b256ByteCount)
    }

    public static func blake2b256(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        digest(blake2b256ByteCount) { blake2b256(data, into: $0) }
    }

    public static func blake2b256(_ data: some Sequence<UInt8>) -> [UInt8] {
        withContiguousBytes(data) { blake2b256($0) }
    }

    // MARK: BLAKE2b-512

    /// Writes 64 bytes at `output`.
    public static func blake2b512(_ data: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) {
        blake2b(data, into: output, byteCount: blake2b512ByteCount)
    }

    public static func blake2b512(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        digest(blake2b512ByteCount) { blake2b512(data, into: $0) }
    }

    public static func blake2b512(_ data: some Sequence<UInt8>) -> [UInt8] {
        withContiguousBytes(data) { blake2b512($0) }
    }

    // MARK: SHA-256

    /// Writes 32 bytes at `output`.
    public static func sha256(_ data: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) {
        Sodium.ensureInitialized()
        Sodium.expect(
            crypto_hash_sha256(output.assumingMemoryBound(to: UInt8.self), data.uint8, UInt64(data.count)),
            "crypto_hash_sha256")
    }

    public static func sha256(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        digest(sha256ByteCount) { sha256(data, into: $0) }
    }

    public static func sha256(_ data: some Sequence<UInt8>) -> [UInt8] {
        withContiguousBytes(data) { sha256($0) }
    }

    // MARK: -

    private static func blake2b(_ data: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer, byteCount: Int) {
        Sodium.ensureInitialized()
        Sodium.expect(
            crypto_generichash(
                output.assumingMemoryBound(to: UInt8.self), byteCount, data.uint8, UInt64(data.count), nil, 0),
            "crypto_generichash")
    }

    private static func digest(_ byteCount: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, initializedCount in
            write(UnsafeMutableRawPointer(buffer.baseAddress!))
            initializedCount = byteCount
        }
    }
}

/// SHA-256 over data that arrives in pieces, e.g. a file read in chunks. Copying a hasher forks the computation.
public struct SHA256Hasher: Sendable {
    private var state = crypto_hash_sha256_state()

    public init() {
        Sodium.ensureInitialized()
        Sodium.expect(crypto_hash_sha256_init(&state), "crypto_hash_sha256_init")
    }

    public mutating func update(_ data: UnsafeRawBufferPointer) {
        Sodium.expect(crypto_hash_sha256_update(&state, data.uint8, UInt64(data.count)), "crypto_hash_sha256_update")
    }

    public mutating func update(_ data: some Sequence<UInt8>) {
        withContiguousBytes(data) { update($0) }
    }

    /// Writes 32 bytes at `output`.
    public consuming func finalize(into output: UnsafeMutableRawPointer) {
        Sodium.expect(
            crypto_hash_sha256_final(&state, output.assumingMemoryBound(to: UInt8.self)), "crypto_hash_sha256_final")
    }

    public consuming func finalize() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Hash.sha256ByteCount) { buffer, initializedCount in
            finalize(into: UnsafeMutableRawPointer(buffer.baseAddress!))
            initializedCount = Hash.sha256ByteCount
        }
    }
}

/// The operating system's CSPRNG, through libsodium.
public enum SecureRandom {
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        Sodium.ensureInitialized()
        guard let base = buffer.baseAddress else { return }
        randombytes_buf(base, buffer.count)
    }

    public static func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "SecureRandom.bytes needs a non-negative count, not \(count)")
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initializedCount in
            fill(UnsafeMutableRawBufferPointer(buffer))
            initializedCount = count
        }
    }
}
