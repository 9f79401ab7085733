import CSodium
import MetanodeCore

/// libsodium's one-time setup and the one place its return codes become errors.
public enum Sodium {
    /// A static stored property is initialized exactly once, under `swift_once`, so this is thread-safe and costs one
    /// load after the first use. sodium_init returns 0 (initialized now), 1 (already) or -1 (no entropy source).
    private static let initResult: Int32 = sodium_init()

    /// Initializes libsodium on first use. Every public entry point of this module calls it; the kernel may too.
    @inline(__always)
    public static func ensureInitialized() {
        precondition(initResult >= 0, "libsodium could not be initialized (sodium_init returned \(initResult))")
    }

    /// The funnel: every libsodium call that can fail hands its return code here, naming the operation.
    static func check(_ result: Int32, _ operation: StaticString) throws(MetanodeError) {
        guard result == 0 else {
            throw MetanodeError(.crypto, "libsodium \(operation) failed (returned \(result))")
        }
    }

    /// For calls that fail only if this module passes wrong sizes: a bug here, so it stops the process.
    static func expect(_ result: Int32, _ operation: StaticString) {
        do { try check(result, operation) } catch { preconditionFailure(error.message) }
    }
}

/// Secret key material owned by this module: one allocation, wiped before it is freed, never printed.
/// `@unchecked Sendable`: the bytes are written once in `init` and only read afterwards.
final class SecretBytes: @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer

    init(count: Int, _ initialize: (UnsafeMutableRawBufferPointer) -> Void) {
        buffer = .allocate(byteCount: count, alignment: 16)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        initialize(buffer)
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(buffer) }

    deinit {
        sodium_memzero(buffer.baseAddress, buffer.count)
        buffer.deallocate()
    }
}

/// Overwrites an array's bytes in place, for temporaries that held secrets.
func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
}

/// Runs `body` over a sequence's bytes without copying when they are already contiguous.
func withContiguousBytes<R, E: Error>(
    _ data: some Sequence<UInt8>, _ body: (UnsafeRawBufferPointer) throws(E) -> R
) throws(E) -> R {
    let contiguous: Result<R, E>? = data.withContiguousStorageIfAvailable { buffer in
        Result { () throws(E) -> R in try body(UnsafeRawBufferPointer(buffer)) }
    }
    if let contiguous { return try contiguous.get() }
    let copy = Array(data)
    let result = copy.withUnsafeBytes { buffer in Result { () throws(E) -> R in try body(buffer) } }
    return try result.get()
}

/// Stands in for an empty buffer's nil base address: libsodium declares its pointers nonnull even for length 0.
private nonisolated(unsafe) let emptyBytes: UnsafeMutablePointer<UInt8> = {
    let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
    pointer.initialize(to: 0)
    return pointer
}()

extension UnsafeRawBufferPointer {
    /// The bytes as libsodium's `const unsigned char *`, never nil.
    var uint8: UnsafePointer<UInt8> { baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(emptyBytes) }
}

/// Base64 in libsodium's strict, constant-time codec (the original alphabet with padding, as minisign writes).
enum Base64 {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        Sodium.ensureInitialized()
        return withContiguousBytes(bytes) { input in
            let encodedCount = (input.count + 2) / 3 * 4 + 1  // sodium_base64_ENCODED_LEN, including the NUL
            var output = [CChar](repeating: 0, count: encodedCount)
            _ = sodium_bin2base64(&output, encodedCount, input.uint8, input.count, sodium_base64_VARIANT_ORIGINAL)
            return String(decoding: output.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// The decoded bytes, or nil if `text` is not canonical padded base64. Invalid input is a validation result
    /// the caller turns into a precise message, not a libsodium failure.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        Sodium.ensureInitialized()
        let encoded = text.map { CChar(bitPattern: $0) }
        var output = [UInt8](repeating: 0, count: encoded.count / 4 * 3 + 3)
        var decodedCount = 0
        let result = sodium_base642bin(
            &output, output.count, encoded, encoded.count, nil, &decodedCount, nil, sodium_base64_VARIANT_ORIGINAL)
        guard result == 0 else { return nil }
        output.removeLast(output.count - decodedCount)
        return output
    }
}

/// Hex text; uppercase is how minisign prints key IDs.
func hexEncode(_ bytes: some Sequence<UInt8>, uppercase: Bool = false) -> String {
    let digits = Array((uppercase ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
    var text: [UInt8] = []
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: text, as: UTF8.self)
}
