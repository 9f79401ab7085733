import CSodium
import MetanodeCore

/// An X25519 key pair for one key exchange (libsodium `crypto_kx`). Made fresh for every connection and dropped after
/// the handshake, so a stolen node key does not decrypt recorded traffic (forward secrecy). The secret half lives in
/// wiped memory and stays out of `description`.
public struct X25519KeyPair: Sendable, CustomStringConvertible {
    public static let publicKeyByteCount = 32
    public static let seedByteCount = 32

    /// The 32-byte public key, sent to the peer.
    public let publicKey: [UInt8]
    private let secret: SecretBytes

    public static func generate() -> X25519KeyPair {
        Sodium.ensureInitialized()
        var publicKey = [UInt8](repeating: 0, count: publicKeyByteCount)
        let secret = SecretBytes(count: Int(crypto_kx_SECRETKEYBYTES)) { secretKey in
            Sodium.expect(
                crypto_kx_keypair(&publicKey, secretKey.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                "crypto_kx_keypair")
        }
        return X25519KeyPair(publicKey: publicKey, secret: secret)
    }

    /// The key pair derived from a 32-byte seed: for reproducible tests and golden vectors only.
    public init(seed: [UInt8]) throws(MetanodeError) {
        guard seed.count == Self.seedByteCount else {
            throw MetanodeError(.invalidArgument, "an X25519 seed is 32 bytes, not \(seed.count)")
        }
        Sodium.ensureInitialized()
        var publicKey = [UInt8](repeating: 0, count: Self.publicKeyByteCount)
        secret = SecretBytes(count: Int(crypto_kx_SECRETKEYBYTES)) { secretKey in
            Sodium.expect(
                crypto_kx_seed_keypair(&publicKey, secretKey.baseAddress!.assumingMemoryBound(to: UInt8.self), seed),
                "crypto_kx_seed_keypair")
        }
        self.publicKey = publicKey
    }

    private init(publicKey: [UInt8], secret: SecretBytes) {
        self.publicKey = publicKey
        self.secret = secret
    }

    /// The two session keys of the side that initiated (crypto_kx "client"). Fails when `serverPublicKey` is not
    /// 32 bytes or is a low-order point (the shared secret would be all zeros, which a peer could force).
    public func clientSessionKeys(serverPublicKey: some Collection<UInt8>) throws(MetanodeError) -> KeyExchangeKeys {
        try sessionKeys(peer: serverPublicKey, client: true)
    }

    /// The two session keys of the side that accepted (crypto_kx "server"). Fails as `clientSessionKeys` does.
    public func serverSessionKeys(clientPublicKey: some Collection<UInt8>) throws(MetanodeError) -> KeyExchangeKeys {
        try sessionKeys(peer: clientPublicKey, client: false)
    }

    private func sessionKeys(peer: some Collection<UInt8>, client: Bool) throws(MetanodeError) -> KeyExchangeKeys {
        guard peer.count == Self.publicKeyByteCount else {
            throw MetanodeError(.invalidArgument, "an X25519 public key is 32 bytes, not \(peer.count)")
        }
        var result: Int32 = 0
        let keys = SecretBytes(count: 2 * Int(crypto_kx_SESSIONKEYBYTES)) { out in
            let receive = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let transmit = receive + Int(crypto_kx_SESSIONKEYBYTES)
            withContiguousBytes(peer) { peer in
                publicKey.withUnsafeBytes { own in
                    let secretKey = secret.bytes.uint8
                    result =
                        client
                        ? crypto_kx_client_session_keys(receive, transmit, own.uint8, secretKey, peer.uint8)
                        : crypto_kx_server_session_keys(receive, transmit, own.uint8, secretKey, peer.uint8)
                }
            }
        }
        // -1 here is a property of the peer's input (a low-order point), not a libsodium failure: say so.
        guard result == 0 else {
            throw MetanodeError(
                .crypto, "the peer's X25519 public key is a low-order point; no shared secret can be agreed with it")
        }
        return KeyExchangeKeys(keys)
    }

    public var description: String { "X25519KeyPair(publicKey: \(hexEncode(publicKey)))" }
}

/// The result of a key exchange: one 32-byte key per direction, in wiped memory.
public struct KeyExchangeKeys: Sendable {
    private let storage: SecretBytes

    init(_ storage: SecretBytes) {
        precondition(storage.buffer.count == 64)
        self.storage = storage
    }

    /// The key the other side transmits with.
    public var receive: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage.bytes[0..<32]) }
    /// The key this side transmits with.
    public var transmit: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage.bytes[32..<64]) }
}
