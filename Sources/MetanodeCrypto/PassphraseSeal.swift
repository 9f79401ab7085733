import CSodium
import MetanodeCore

/// A secret sealed under a passphrase: libsodium's Argon2id (crypto_pwhash, ALG_ARGON2ID13) derives a key from the
/// passphrase and a random salt, and crypto_secretbox (XSalsa20-Poly1305) seals the secret with it. A wrong passphrase
/// fails the MAC; nothing is revealed about how close it was.
public struct PassphraseSeal: Sendable, Hashable {
    public static let saltByteCount = Int(crypto_pwhash_SALTBYTES)
    public static let nonceByteCount = Int(crypto_secretbox_NONCEBYTES)
    /// libsodium's "moderate" limits: about half a second and 256 MiB here, for a key that is rarely unsealed.
    public static let defaultOpsLimit = UInt64(crypto_pwhash_OPSLIMIT_MODERATE)
    public static let defaultMemLimit = UInt64(crypto_pwhash_MEMLIMIT_MODERATE)
    /// Bounds on limits read from a file, so a tampered file cannot make unsealing take hours or all memory.
    public static let opsLimitMax: UInt64 = 16
    public static let memLimitMax: UInt64 = 1 << 30

    public var opsLimit: UInt64
    public var memLimit: UInt64
    public var salt: [UInt8]
    public var nonce: [UInt8]
    public var ciphertext: [UInt8]

    public init(opsLimit: UInt64, memLimit: UInt64, salt: [UInt8], nonce: [UInt8], ciphertext: [UInt8]) {
        self.opsLimit = opsLimit
        self.memLimit = memLimit
        self.salt = salt
        self.nonce = nonce
        self.ciphertext = ciphertext
    }

    /// Seals `secret` under `passphrase` with a fresh salt and nonce.
    public static func seal(_ secret: [UInt8], passphrase: String, opsLimit: UInt64 = defaultOpsLimit,
                            memLimit: UInt64 = defaultMemLimit) throws(MetanodeError) -> PassphraseSeal {
        Sodium.ensureInitialized()
        guard !passphrase.isEmpty else { throw MetanodeError(.invalidArgument, "the passphrase is empty") }
        var salt = [UInt8](repeating: 0, count: saltByteCount)
        var nonce = [UInt8](repeating: 0, count: nonceByteCount)
        randombytes_buf(&salt, salt.count)
        randombytes_buf(&nonce, nonce.count)
        var key = try deriveKey(passphrase, salt: salt, opsLimit: opsLimit, memLimit: memLimit)
        defer { wipe(&key) }
        var ciphertext = [UInt8](repeating: 0, count: secret.count + Int(crypto_secretbox_MACBYTES))
        try Sodium.check(crypto_secretbox_easy(&ciphertext, secret, UInt64(secret.count), nonce, key),
                         "crypto_secretbox_easy")
        return PassphraseSeal(opsLimit: opsLimit, memLimit: memLimit, salt: salt, nonce: nonce, ciphertext: ciphertext)
    }

    /// The secret, or `.denied` if the passphrase is wrong or the sealed bytes were changed.
    public func open(passphrase: String) throws(MetanodeError) -> [UInt8] {
        Sodium.ensureInitialized()
        guard salt.count == Self.saltByteCount, nonce.count == Self.nonceByteCount,
              ciphertext.count >= Int(crypto_secretbox_MACBYTES) else {
            throw MetanodeError(.invalidArgument, "the sealed key is malformed (salt, nonce or ciphertext size)")
        }
        var key = try Self.deriveKey(passphrase, salt: salt, opsLimit: opsLimit, memLimit: memLimit)
        defer { wipe(&key) }
        var secret = [UInt8](repeating: 0, count: ciphertext.count - Int(crypto_secretbox_MACBYTES))
        guard crypto_secretbox_open_easy(&secret, ciphertext, UInt64(ciphertext.count), nonce, key) == 0 else {
            throw MetanodeError(.denied, "wrong passphrase (or the sealed key was altered)")
        }
        return secret
    }

    private static func deriveKey(_ passphrase: String, salt: [UInt8], opsLimit: UInt64, memLimit: UInt64)
        throws(MetanodeError) -> [UInt8] {
        guard opsLimit >= UInt64(crypto_pwhash_OPSLIMIT_MIN), opsLimit <= opsLimitMax,
              memLimit >= UInt64(crypto_pwhash_MEMLIMIT_MIN), memLimit <= memLimitMax else {
            throw MetanodeError(.invalidArgument, "Argon2id limits out of range: ops \(opsLimit) (at most "
                + "\(opsLimitMax)), memory \(memLimit) bytes (at most \(memLimitMax))")
        }
        var key = [UInt8](repeating: 0, count: Int(crypto_secretbox_KEYBYTES))
        let length = UInt64(passphrase.utf8.count)
        let result = passphrase.withCString {
            crypto_pwhash(&key, UInt64(key.count), $0, length, salt, opsLimit, Int(memLimit),
                          crypto_pwhash_ALG_ARGON2ID13)
        }
        guard result == 0 else {
            throw MetanodeError(.crypto, "Argon2id could not derive a key (not enough memory for \(memLimit) bytes?)")
        }
        return key
    }
}
