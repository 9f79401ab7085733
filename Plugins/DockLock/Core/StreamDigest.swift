import MetanodeWire

/// What a receipt records of one of a container's streams (stdin, stdout or stderr): the BLAKE2b-256 of its bytes
/// and how many there were.
///
/// The hash is of the raw bytes, with no domain prefix, so anyone holding a captured stream checks it with standard
/// tools: `b2sum -l 256 stdout.log`. (It names content, like an image's sha256 digest; the receipt that carries it
/// is hashed and signed under its own domain.)
public struct StreamDigest: Sendable, Hashable, Codable {
    /// BLAKE2b-256 of the stream's bytes, 32 bytes.
    public var hash: [UInt8]
    /// The stream's length in bytes.
    public var size: UInt64

    public init(hash: [UInt8], size: UInt64) {
        self.hash = hash
        self.size = size
    }

    /// The digest of `bytes`, all at once.
    public init(of bytes: [UInt8]) {
        self.init(hash: WireCrypto.blake2b256(bytes), size: UInt64(bytes.count))
    }

    /// The digest of a stream with no bytes (a container given no stdin, or one that printed nothing).
    public static let empty = StreamDigest(of: [])

    /// Whether `bytes` are the stream this digest describes.
    public func matches(_ bytes: [UInt8]) -> Bool { self == StreamDigest(of: bytes) }

    /// Builds a digest chunk by chunk, as a stream is pumped, without keeping the bytes.
    ///
    ///     var builder = StreamDigest.Builder()
    ///     while let chunk = try read() { builder.append(chunk) }
    ///     let digest = builder.digest
    public struct Builder: Sendable {
        private var hasher = Blake2b256Hasher()
        /// The bytes appended so far.
        public private(set) var size: UInt64 = 0

        public init() {}

        public mutating func append(_ chunk: UnsafeRawBufferPointer) {
            hasher.update(chunk)
            size += UInt64(chunk.count)
        }

        public mutating func append(_ chunk: some Collection<UInt8>) {
            hasher.update(chunk)
            size += UInt64(chunk.count)
        }

        /// The digest of everything appended so far; the builder can go on after it.
        public var digest: StreamDigest { StreamDigest(hash: hasher.finalize(), size: size) }
    }

    // JSON: {"hash": "<64 hex>", "size": n}.
    enum CodingKeys: String, CodingKey { case hash, size }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        hash = try container.decodeReceiptHex(forKey: .hash, count: WireCrypto.hashBytes)
        size = try container.decode(UInt64.self, forKey: .size)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Hex.encode(hash), forKey: .hash)
        try container.encode(size, forKey: .size)
    }
}

extension KeyedDecodingContainer {
    /// A hex string of exactly `count` bytes; errors name the field and say what it should be.
    func decodeReceiptHex(forKey key: Key, count: Int) throws -> [UInt8] {
        let text = try decode(String.self, forKey: key)
        guard let bytes = Hex.decode(text), bytes.count == count else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "must be \(count * 2) hex digits, not '\(text.prefix(80))'")
        }
        return bytes
    }
}
