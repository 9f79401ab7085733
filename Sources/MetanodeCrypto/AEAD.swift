import CSodium
import MetanodeCore

/// A 32-byte ChaCha20-Poly1305 key in wiped memory. Its bytes never leave this module except through `seal`/`open`.
public struct AEADKey: Sendable, CustomStringConvertible {
    public static let byteCount = 32

    let storage: SecretBytes

    /// From raw key bytes (derived keys, test vectors).
    public init(bytes: some Collection<UInt8>) throws(MetanodeError) {
        guard bytes.count == Self.byteCount else {
            throw MetanodeError(.invalidArgument, "a ChaCha20-Poly1305 key is 32 bytes, not \(bytes.count)")
        }
        storage = SecretBytes(count: Self.byteCount) { out in
            withContiguousBytes(bytes) { out.copyMemory(from: $0) }
        }
    }

    init(storage: SecretBytes) {
        precondition(storage.buffer.count == Self.byteCount)
        self.storage = storage
    }

    public var description: String { "AEADKey(redacted)" }
}

/// ChaCha20-Poly1305 (IETF, RFC 8439) with a 96-bit nonce built from a 64-bit message counter: four zero bytes, then
/// the counter in little-endian (as Noise and WireGuard do). A key must never seal two messages under one counter;
/// callers count up from 0 and stop before the counter wraps.
///
/// Both directions work in place on the caller's memory and allocate nothing: the hot path of the network transport.
public enum ChaCha20Poly1305 {
    public static let keyByteCount = 32
    public static let nonceByteCount = 12
    public static let tagByteCount = 16

    /// Encrypts `message` in place and writes the 16-byte tag at `tag` (which must not overlap `message`).
    public static func seal(
        _ message: UnsafeMutableRawBufferPointer, tag: UnsafeMutableRawPointer, associatedData: UnsafeRawBufferPointer,
        counter: UInt64, key: AEADKey
    ) {
        Sodium.ensureInitialized()
        withNonce(counter) { nonce in
            let text = message.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyOutput
            Sodium.expect(
                crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                    text, tag.assumingMemoryBound(to: UInt8.self), nil, text, UInt64(message.count),
                    associatedData.uint8, UInt64(associatedData.count), nil, nonce, key.storage.bytes.uint8),
                "crypto_aead_chacha20poly1305_ietf_encrypt_detached")
        }
    }

    /// Verifies `tag` over `ciphertext` and `associatedData`, then writes the plaintext (as many bytes as `ciphertext`)
    /// at `output`, which may be `ciphertext`'s own memory. False, with `output` untouched, when anything was modified
    /// or the counter is not the one the message was sealed with: a result to act on, not a failure.
    public static func open(
        _ ciphertext: UnsafeRawBufferPointer, tag: UnsafeRawPointer, associatedData: UnsafeRawBufferPointer,
        counter: UInt64, key: AEADKey, into output: UnsafeMutableRawPointer
    ) -> Bool {
        Sodium.ensureInitialized()
        return withNonce(counter) { nonce in
            crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                output.assumingMemoryBound(to: UInt8.self), nil, ciphertext.uint8, UInt64(ciphertext.count),
                tag.assumingMemoryBound(to: UInt8.self), associatedData.uint8, UInt64(associatedData.count), nonce,
                key.storage.bytes.uint8) == 0
        }
    }

    /// The 12 nonce bytes for `counter`, on the stack.
    @inline(__always)
    static func withNonce<R>(_ counter: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
        withUnsafeTemporaryAllocation(byteCount: 16, alignment: 8) { nonce in
            nonce.storeBytes(of: 0, toByteOffset: 0, as: UInt32.self)
            nonce.storeBytes(of: counter.littleEndian, toByteOffset: 4, as: UInt64.self)
            return body(UnsafePointer(nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)))
        }
    }
}

/// Stands in for an empty message's nil base address: libsodium wants a pointer even for 0 bytes.
private nonisolated(unsafe) let emptyOutput: UnsafeMutablePointer<UInt8> = {
    let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
    pointer.initialize(to: 0)
    return pointer
}()
