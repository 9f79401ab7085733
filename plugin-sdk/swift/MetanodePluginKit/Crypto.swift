import MetanodeABI

/// Hashing, verification and randomness (capability "crypto", libsodium in the kernel).
public struct Crypto: Sendable {
    let host: Host

    /// BLAKE2b with a 32-byte digest.
    public func blake2b256(_ data: some ByteConvertible) throws(PluginError) -> [UInt8] {
        var hash = [UInt8](repeating: 0, count: 32)
        let status = data.withMNBytes { data in
            hash.withUnsafeMutableBufferPointer { host.api.pointee.hash_blake2b256(host.ctx, data, $0.baseAddress) }
        }
        try host.check(status, "hash_blake2b256")
        return hash
    }

    public func sha256(_ data: some ByteConvertible) throws(PluginError) -> [UInt8] {
        var hash = [UInt8](repeating: 0, count: 32)
        let status = data.withMNBytes { data in
            hash.withUnsafeMutableBufferPointer { host.api.pointee.hash_sha256(host.ctx, data, $0.baseAddress) }
        }
        try host.check(status, "hash_sha256")
        return hash
    }

    /// Plain Ed25519 verification. False for a signature that does not verify; throws for anything else.
    public func verify(publicKey: [UInt8], message: some ByteConvertible, signature: [UInt8]) throws(PluginError)
        -> Bool
    {
        try Ed25519Sizes.check(publicKey: publicKey, signature: signature, "ed25519_verify")
        let status = message.withMNBytes { message in
            publicKey.withUnsafeBufferPointer { key in
                signature.withUnsafeBufferPointer { signature in
                    host.api.pointee.ed25519_verify(host.ctx, key.baseAddress, message, signature.baseAddress)
                }
            }
        }
        if status == MN_ERR_BAD_SIGNATURE { return false }
        try host.check(status, "ed25519_verify")
        return true
    }

    /// `count` (at most 65536) cryptographically secure random bytes.
    public func randomBytes(_ count: Int) throws(PluginError) -> [UInt8] {
        guard count >= 0 else {
            throw PluginError(MN_ERR_INVALID_ARGUMENT, "count is \(count)", function: "random_bytes")
        }
        var bytes = [UInt8](repeating: 0, count: count)
        let status = bytes.withUnsafeMutableBufferPointer {
            host.api.pointee.random_bytes(host.ctx, $0.baseAddress, count)
        }
        try host.check(status, "random_bytes")
        return bytes
    }
}

/// Signing with the node's keys (capability "sign"). The kernel scopes every signature to this plugin; see
/// ed25519_sign in plugin.h.
public struct Signer: Sendable {
    let host: Host

    /// The public key of `keyID`; ABI 1.0 knows one key id, "node".
    public func publicKey(keyID: String = "node") throws(PluginError) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: 32)
        let status = keyID.withMNBytes { id in
            key.withUnsafeMutableBufferPointer { host.api.pointee.ed25519_public_key(host.ctx, id, $0.baseAddress) }
        }
        try host.check(status, "ed25519_public_key")
        return key
    }

    /// A 64-byte Ed25519 signature over "metanode/plugin-sig/v1" 0x00 <plugin name> 0x00 <message>.
    public func sign(_ message: some ByteConvertible, keyID: String = "node") throws(PluginError) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: 64)
        let status = keyID.withMNBytes { id in
            message.withMNBytes { message in
                signature.withUnsafeMutableBufferPointer {
                    host.api.pointee.ed25519_sign(host.ctx, id, message, $0.baseAddress)
                }
            }
        }
        try host.check(status, "ed25519_sign")
        return signature
    }

    /// Verifies a signature `sign` made for plugin `signer` (empty: this plugin). Needs capability "crypto".
    /// False for a signature that does not verify; throws for anything else.
    public func verifyScoped(publicKey: [UInt8], signer: String = "", message: some ByteConvertible,
                             signature: [UInt8]) throws(PluginError) -> Bool {
        try Ed25519Sizes.check(publicKey: publicKey, signature: signature, "ed25519_verify_scoped")
        let status = signer.withMNBytes { signer in
            message.withMNBytes { message in
                publicKey.withUnsafeBufferPointer { key in
                    signature.withUnsafeBufferPointer { signature in
                        host.api.pointee.ed25519_verify_scoped(
                            host.ctx, key.baseAddress, signer, message, signature.baseAddress)
                    }
                }
            }
        }
        if status == MN_ERR_BAD_SIGNATURE { return false }
        try host.check(status, "ed25519_verify_scoped")
        return true
    }
}

enum Ed25519Sizes {
    /// The ABI takes fixed-size arrays by pointer; check the sizes here so the host never reads past a Swift array.
    static func check(publicKey: [UInt8], signature: [UInt8], _ function: String) throws(PluginError) {
        guard publicKey.count == 32 else {
            throw PluginError(MN_ERR_INVALID_ARGUMENT, "public key is \(publicKey.count) bytes; Ed25519 keys are 32",
                              function: function)
        }
        guard signature.count == 64 else {
            throw PluginError(MN_ERR_INVALID_ARGUMENT,
                              "signature is \(signature.count) bytes; Ed25519 signatures are 64", function: function)
        }
    }
}
