import CSodium
import MetanodeCore

/// An Ed25519 public key (32 bytes).
public struct Ed25519PublicKey: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public static let signatureByteCount = 64

    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(MetanodeError) {
        guard bytes.count == Self.byteCount else {
            throw MetanodeError(.invalidArgument, "an Ed25519 public key is 32 bytes, not \(bytes.count)")
        }
        self.bytes = bytes
    }

    init(uncheckedBytes bytes: [UInt8]) {
        precondition(bytes.count == Self.byteCount)
        self.bytes = bytes
    }

    /// Lowercase hex of the 32 bytes.
    public var hex: String { hexEncode(bytes) }

    public var description: String { "Ed25519PublicKey(\(hex))" }

    /// Whether `signature` is this key's signature of `message`. A wrong-length signature is simply invalid.
    public func isValidSignature(_ signature: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer) -> Bool {
        Sodium.ensureInitialized()
        guard signature.count == Self.signatureByteCount else { return false }
        // -1 here means "does not verify", a result rather than a failure, so it bypasses the error funnel.
        return bytes.withUnsafeBytes { key in
            crypto_sign_verify_detached(signature.uint8, message.uint8, UInt64(message.count), key.uint8) == 0
        }
    }

    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        signature.withUnsafeBytes { signature in
            message.withUnsafeBytes { message in isValidSignature(signature, for: message) }
        }
    }
}

/// An Ed25519 signing key. The secret half lives in wiped memory and stays out of `description`, `debugDescription`
/// and reflection (`dump`), which show only the public key.
public struct Ed25519KeyPair: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public static let seedByteCount = 32
    /// libsodium's secret key: the seed followed by the public key.
    public static let secretKeyByteCount = 64

    public let publicKey: Ed25519PublicKey
    private let secret: SecretBytes

    public static func generate() -> Ed25519KeyPair {
        Sodium.ensureInitialized()
        var publicKey = [UInt8](repeating: 0, count: Ed25519PublicKey.byteCount)
        let secret = SecretBytes(count: secretKeyByteCount) { secretKey in
            let secretKey = secretKey.baseAddress!.assumingMemoryBound(to: UInt8.self)
            Sodium.expect(crypto_sign_keypair(&publicKey, secretKey), "crypto_sign_keypair")
        }
        return Ed25519KeyPair(publicKey: Ed25519PublicKey(uncheckedBytes: publicKey), secret: secret)
    }

    private init(publicKey: Ed25519PublicKey, secret: SecretBytes) {
        self.publicKey = publicKey
        self.secret = secret
    }

    /// The key pair RFC 8032 derives from a 32-byte seed.
    public init(seed: [UInt8]) throws(MetanodeError) {
        guard seed.count == Self.seedByteCount else {
            throw MetanodeError(.invalidArgument, "an Ed25519 seed is 32 bytes, not \(seed.count)")
        }
        self = seed.withUnsafeBytes { Self(checkedSeed: $0) }
    }

    /// From libsodium's 64-byte secret key (seed || public key); the public half must match the seed.
    public init(secretKey: [UInt8]) throws(MetanodeError) {
        self = try withContiguousBytes(secretKey) { bytes throws(MetanodeError) in try Self(secretKey: bytes) }
    }

    init(secretKey bytes: UnsafeRawBufferPointer) throws(MetanodeError) {
        guard bytes.count == Self.secretKeyByteCount else {
            throw MetanodeError(.invalidArgument, "an Ed25519 secret key is 64 bytes, not \(bytes.count)")
        }
        self.init(checkedSeed: UnsafeRawBufferPointer(rebasing: bytes[..<Self.seedByteCount]))
        // Rederiving catches a corrupted key before it signs anything that would then not verify.
        guard publicKey.bytes.elementsEqual(bytes[Self.seedByteCount...]) else {
            throw MetanodeError(
                .invalidArgument, "this Ed25519 secret key is corrupted: its public half does not match its seed")
        }
    }

    private init(checkedSeed seed: UnsafeRawBufferPointer) {
        Sodium.ensureInitialized()
        var publicKey = [UInt8](repeating: 0, count: Ed25519PublicKey.byteCount)
        secret = SecretBytes(count: Self.secretKeyByteCount) { secretKey in
            let secretKey = secretKey.baseAddress!.assumingMemoryBound(to: UInt8.self)
            Sodium.expect(crypto_sign_seed_keypair(&publicKey, secretKey, seed.uint8), "crypto_sign_seed_keypair")
        }
        self.publicKey = Ed25519PublicKey(uncheckedBytes: publicKey)
    }

    /// The 32-byte seed: all that is needed to recreate this key pair. Handle the copy with care.
    public var seed: [UInt8] { Array(secret.bytes[..<Self.seedByteCount]) }

    /// libsodium's 64-byte secret key, for this module's key file writer.
    var secretKeyBytes: UnsafeRawBufferPointer { secret.bytes }

    /// Writes the 64-byte signature of `message` at `signature`.
    public func sign(_ message: UnsafeRawBufferPointer, into signature: UnsafeMutableRawPointer) {
        Sodium.expect(
            crypto_sign_detached(
                signature.assumingMemoryBound(to: UInt8.self), nil, message.uint8, UInt64(message.count),
                secret.bytes.uint8),
            "crypto_sign_detached")
    }

    public func sign(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Ed25519PublicKey.signatureByteCount) { buffer, initializedCount in
            sign(message, into: UnsafeMutableRawPointer(buffer.baseAddress!))
            initializedCount = Ed25519PublicKey.signatureByteCount
        }
    }

    public func sign(_ message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { sign($0) }
    }

    public var description: String { "Ed25519KeyPair(publicKey: \(publicKey.hex))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["publicKey": publicKey]) }
}
