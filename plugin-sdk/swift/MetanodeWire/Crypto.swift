import CSodium

/// The hashing and signature primitives the wire format uses, straight from libsodium, for code that runs without
/// a host (consensus cores, simulations, wallets, offline proof checks). Inside a node, plugins sign with the node key
/// through the host's `ed25519_sign`, which produces exactly `NodeSignature.signingBytes(plugin:message:)` signed.
public enum WireCrypto {
    public static let hashBytes = 32
    public static let publicKeyBytes = 32
    public static let signatureBytes = 64
    public static let seedBytes = 32

    private static let initResult: Int32 = sodium_init()

    @inline(__always)
    static func ensureInitialized() {
        precondition(initResult >= 0, "libsodium could not be initialized (sodium_init returned \(initResult))")
    }

    /// BLAKE2b-256 of `parts`, concatenated.
    public static func blake2b256(_ parts: [UInt8]...) -> [UInt8] { blake2b256(parts: parts) }

    public static func blake2b256(parts: [[UInt8]]) -> [UInt8] {
        if parts.count == 1 { return parts[0].withUnsafeBytes { blake2b256($0) } }
        return streamed { state in
            for part in parts { part.withUnsafeBytes { update(state, $0) } }
        }
    }

    /// BLAKE2b-256 of `domain`, a zero byte, then `message`: every hash that names something carries its purpose.
    /// Streamed, so nothing is concatenated: block checks hash every transaction id, state leaf and Merkle node so.
    public static func domainHash(_ domain: String, _ message: [UInt8]) -> [UInt8] {
        domainDigest(domain, message).bytes
    }

    /// `domainHash`, as an inline `Digest256`.
    public static func domainDigest(_ domain: String, _ message: [UInt8]) -> Digest256 {
        message.withUnsafeBytes { domainDigest(domain, $0) }
    }

    /// `domainDigest` of bytes in place (a part of a larger buffer, with no copy of it).
    public static func domainDigest(_ domain: String, _ message: UnsafeRawBufferPointer) -> Digest256 {
        var domain = domain
        var digest = Digest256.zero
        domain.withUTF8 { domain in
            withUnsafeMutableBytes(of: &digest) { out in
                streamed(into: out.baseAddress!) { state in
                    update(state, UnsafeRawBufferPointer(domain))
                    withUnsafeBytes(of: UInt8(0)) { update(state, $0) }
                    update(state, message)
                }
            }
        }
        return digest
    }

    static func blake2b256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        ensureInitialized()
        return [UInt8](unsafeUninitializedCapacity: hashBytes) { out, count in
            let input = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
            precondition(crypto_generichash(out.baseAddress!, hashBytes, input, UInt64(bytes.count), nil, 0) == 0,
                         "crypto_generichash failed")
            count = hashBytes
        }
    }

    /// libsodium's BLAKE2b state is 64-byte aligned, which Swift does not import as a type: it lives in scratch
    /// memory on the stack, aligned by hand. Asking `withUnsafeTemporaryAllocation` for 64-byte alignment sends it to
    /// the heap (more than malloc's alignment), which cost an aligned malloc and free per hash.
    private static let stateBytes = crypto_generichash_statebytes()
    private static let stateAlignment = 64

    private static func streamed(_ body: (OpaquePointer) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: hashBytes) { out, count in
            streamed(into: UnsafeMutableRawPointer(out.baseAddress!), body)
            count = hashBytes
        }
    }

    /// The hash of what `body` feeds the state, written to `out` (`hashBytes` bytes).
    private static func streamed(into out: UnsafeMutableRawPointer, _ body: (OpaquePointer) -> Void) {
        ensureInitialized()
        withUnsafeTemporaryAllocation(byteCount: stateBytes + stateAlignment - 1,
                                      alignment: MemoryLayout<UInt64>.alignment) { scratch in
            let base = UInt(bitPattern: scratch.baseAddress!)
            let aligned = (base + UInt(stateAlignment - 1)) & ~UInt(stateAlignment - 1)
            let state = OpaquePointer(bitPattern: aligned)!
            precondition(crypto_generichash_init(state, nil, 0, hashBytes) == 0, "crypto_generichash_init failed")
            body(state)
            precondition(crypto_generichash_final(state, out.assumingMemoryBound(to: UInt8.self), hashBytes) == 0,
                         "crypto_generichash_final failed")
        }
    }

    /// BLAKE2b-256 of `a`, then `b`, then `c`, as an inline `Digest256`: for structures that make and keep many
    /// hashes (the state tree), where an array per hash is an allocation and a reference count per node. Fixed
    /// arities rather than variadic, which would allocate an array of the parts.
    public static func digest(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer = UnsafeRawBufferPointer(
        start: nil, count: 0), _ c: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> Digest256 {
        var digest = Digest256.zero
        withUnsafeMutableBytes(of: &digest) { out in
            streamed(into: out.baseAddress!) { state in
                update(state, a)
                update(state, b)
                update(state, c)
            }
        }
        return digest
    }

    private static func update(_ state: OpaquePointer, _ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        precondition(crypto_generichash_update(state, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                               UInt64(bytes.count)) == 0, "crypto_generichash_update failed")
    }

    /// Whether `signature` is `publicKey`'s Ed25519 signature of `message` (libsodium's strict checks: canonical
    /// encodings, no small-order keys). Wrong lengths are simply invalid.
    public static func verify(signature: [UInt8], publicKey: [UInt8], message: [UInt8]) -> Bool {
        ensureInitialized()
        guard signature.count == signatureBytes, publicKey.count == publicKeyBytes else { return false }
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
    }

    /// `verify` over bytes in place: `signature` and `publicKey` must be exactly 64 and 32 bytes.
    public static func verify(signature: UnsafeRawBufferPointer, publicKey: UnsafeRawBufferPointer,
                              message: UnsafeRawBufferPointer) -> Bool {
        ensureInitialized()
        guard signature.count == signatureBytes, publicKey.count == publicKeyBytes else { return false }
        return crypto_sign_verify_detached(signature.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                           message.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                           UInt64(message.count),
                                           publicKey.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 0
    }
}

/// An Ed25519 key held in this process (wallets, simulations, tests). The secret is wiped when the last copy goes.
public final class Ed25519Signer: @unchecked Sendable {
    public let publicKey: [UInt8]
    private let secretKey: UnsafeMutablePointer<UInt8>

    /// The key pair RFC 8032 derives from a 32-byte seed.
    public init(seed: [UInt8]) {
        precondition(seed.count == WireCrypto.seedBytes, "an Ed25519 seed is 32 bytes, not \(seed.count)")
        WireCrypto.ensureInitialized()
        secretKey = .allocate(capacity: 64)
        var publicKey = [UInt8](repeating: 0, count: WireCrypto.publicKeyBytes)
        precondition(crypto_sign_seed_keypair(&publicKey, secretKey, seed) == 0, "crypto_sign_seed_keypair failed")
        self.publicKey = publicKey
    }

    deinit {
        sodium_memzero(secretKey, 64)
        secretKey.deallocate()
    }

    public func sign(_ message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: WireCrypto.signatureBytes)
        precondition(crypto_sign_detached(&signature, nil, message, UInt64(message.count), secretKey) == 0,
                     "crypto_sign_detached failed")
        return signature
    }
}

/// What the host's `ed25519_sign` signs for a plugin: `"metanode/plugin-sig/v1" 0 <plugin> 0 <message>`, so one
/// plugin cannot make the node key sign another plugin's messages. Code that holds a node key outside a host (a
/// simulation) signs these bytes to produce the same signatures.
public enum NodeSignature {
    public static let domain = "metanode/plugin-sig/v1"

    public static func signingBytes(plugin: String, message: [UInt8]) -> [UInt8] {
        Array(domain.utf8) + [0] + Array(plugin.utf8) + [0] + message
    }

    public static func verify(signature: [UInt8], nodeKey: [UInt8], plugin: String, message: [UInt8]) -> Bool {
        WireCrypto.verify(signature: signature, publicKey: nodeKey,
                          message: signingBytes(plugin: plugin, message: message))
    }
}

/// BLAKE2b-256 fed in pieces (libsodium's `crypto_generichash_init/update/final`, 32-byte output, no key): for
/// content too large or too slow to hold at once, such as a container's output streams. Equal to
/// `WireCrypto.blake2b256` of the pieces concatenated, and to `b2sum -l 256` of a file.
///
/// A value: copying a hasher copies its state (on the next write), so two copies go on independently, and
/// `finalize()` leaves the hasher as it was, so it can be fed more after a look at the digest so far.
public struct Blake2b256Hasher: Sendable {
    private var state: State

    public init() { state = State() }

    /// Feeds `bytes` to the hash.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        if !isKnownUniquelyReferenced(&state) { state = State(copying: state) }
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        precondition(crypto_generichash_update(state.opaque, base, UInt64(bytes.count)) == 0,
                     "crypto_generichash_update failed")
    }

    public mutating func update(_ bytes: some Collection<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
        if done == nil { Array(bytes).withUnsafeBytes { update($0) } }
    }

    /// The BLAKE2b-256 of everything fed so far.
    public func finalize() -> [UInt8] {
        let copy = State(copying: state)
        var out = [UInt8](repeating: 0, count: WireCrypto.hashBytes)
        precondition(crypto_generichash_final(copy.opaque, &out, WireCrypto.hashBytes) == 0,
                     "crypto_generichash_final failed")
        return out
    }

    /// libsodium's state, in memory of its own with the 64-byte alignment the C type asks for. (Swift does not
    /// import the over-aligned struct, so the C functions take it as an opaque pointer.) Written only through a
    /// uniquely referenced `Blake2b256Hasher`.
    private final class State: @unchecked Sendable {
        static let alignment = 64
        private let pointer: UnsafeMutableRawPointer
        private let byteCount: Int
        var opaque: OpaquePointer { OpaquePointer(pointer) }

        init() {
            WireCrypto.ensureInitialized()
            byteCount = crypto_generichash_statebytes()
            pointer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: Self.alignment)
            precondition(crypto_generichash_init(OpaquePointer(pointer), nil, 0, WireCrypto.hashBytes) == 0,
                         "crypto_generichash_init failed")
        }

        /// The same state in new memory: BLAKE2b's state is plain data, so a byte copy carries on identically.
        init(copying other: State) {
            byteCount = other.byteCount
            pointer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: Self.alignment)
            pointer.copyMemory(from: other.pointer, byteCount: byteCount)
        }

        deinit { pointer.deallocate() }
    }
}

/// SHA-256 fed in pieces (libsodium's `crypto_hash_sha256_init/update/final`): for content addressed the way OCI
/// images are ("sha256:<hex>"), read from files too large to hold at once. Equal to `sha256sum` of the pieces
/// concatenated. A value: libsodium's SHA-256 state is plain data with no alignment demands, so copies go on
/// independently and `finalize()` leaves the hasher as it was.
public struct SHA256Hasher: Sendable {
    public static let digestBytes = 32
    private var state = crypto_hash_sha256_state()

    public init() {
        WireCrypto.ensureInitialized()
        precondition(crypto_hash_sha256_init(&state) == 0, "crypto_hash_sha256_init failed")
    }

    /// Feeds `bytes` to the hash.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        precondition(crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self),
                                               UInt64(bytes.count)) == 0, "crypto_hash_sha256_update failed")
    }

    public mutating func update(_ bytes: some Collection<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
        if done == nil { Array(bytes).withUnsafeBytes { update($0) } }
    }

    /// The SHA-256 of everything fed so far.
    public func finalize() -> [UInt8] {
        var copy = state
        var out = [UInt8](repeating: 0, count: Self.digestBytes)
        precondition(crypto_hash_sha256_final(&copy, &out) == 0, "crypto_hash_sha256_final failed")
        return out
    }

    /// The SHA-256 of `bytes`.
    public static func hash(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalize()
    }
}

/// A 32-byte hash held inline: no array, no allocation, no reference count. Its bytes are the hash's bytes in order,
/// whatever the machine's byte order (they are written and read as memory, never as integers).
public struct Digest256: Hashable, Sendable {
    private var word0: UInt64 = 0, word1: UInt64 = 0, word2: UInt64 = 0, word3: UInt64 = 0

    public static let zero = Digest256()

    private init() {}

    /// The digest of exactly 32 bytes; nil for any other length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == WireCrypto.hashBytes else { return nil }
        withUnsafeMutableBytes(of: &self) { $0.copyBytes(from: bytes) }
    }

    public var bytes: [UInt8] { Swift.withUnsafeBytes(of: self) { Array($0) } }

    /// Byte `index` (0..<32).
    public func byte(_ index: Int) -> UInt8 { Swift.withUnsafeBytes(of: self) { $0[index] } }

    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        Swift.withUnsafeBytes(of: self) { body($0) }
    }
}
