import CSodium
import MetanodeCore

extension Hash {
    /// BLAKE2b-256 keyed with `key` (16 to 64 bytes) over the concatenation of `parts`: a MAC and a key derivation
    /// function ("a new key = BLAKE2b(key: old key, label || context)"). Writes 32 bytes at `output`.
    public static func blake2b256(
        key: UnsafeRawBufferPointer, parts: [UnsafeRawBufferPointer], into output: UnsafeMutableRawPointer
    ) {
        Sodium.ensureInitialized()
        precondition(
            key.count >= Int(crypto_generichash_KEYBYTES_MIN) && key.count <= Int(crypto_generichash_KEYBYTES_MAX),
            "a BLAKE2b key is 16 to 64 bytes, not \(key.count)")
        // crypto_generichash_state is 64-byte aligned, which Swift imports as an opaque type: allocate it by size.
        let stateBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        defer {
            sodium_memzero(stateBytes.baseAddress, stateBytes.count)
            stateBytes.deallocate()
        }
        let state = OpaquePointer(stateBytes.baseAddress!)
        Sodium.expect(
            crypto_generichash_init(state, key.uint8, key.count, blake2b256ByteCount), "crypto_generichash_init")
        for part in parts {
            Sodium.expect(
                crypto_generichash_update(state, part.uint8, UInt64(part.count)), "crypto_generichash_update")
        }
        Sodium.expect(
            crypto_generichash_final(state, output.assumingMemoryBound(to: UInt8.self), blake2b256ByteCount),
            "crypto_generichash_final")
    }

    /// A derived ChaCha20-Poly1305 key: BLAKE2b-256 keyed with `key` over the concatenation of `parts`. The key bytes
    /// go straight into wiped memory.
    public static func deriveAEADKey(key: UnsafeRawBufferPointer, parts: [UnsafeRawBufferPointer]) -> AEADKey {
        let storage = SecretBytes(count: AEADKey.byteCount) { out in
            blake2b256(key: key, parts: parts, into: out.baseAddress!)
        }
        return AEADKey(storage: storage)
    }
}
