import MetanodeWire

/// An account: 20 bytes of BLAKE2b-256("metanode/bpci/address/v1" 0 publicKey), written as bech32 (BIP-173) with
/// the human-readable part "mn", so a mistyped address fails its checksum instead of sending funds nowhere.
/// Module accounts (treasury, fee collector) have addresses derived from their names and no key.
public struct Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public static let byteCount = 20
    public static let humanReadablePart = "mn"

    // The 20 bytes as three big-endian integers, in the value itself: an account is made, copied, compared and hashed
    // several times per transfer (balance keys, fees, events, the history index), and a 20-byte array was a heap
    // allocation and a reference count each time. Compared in this order, they sort as the bytes do.
    private let high: UInt64
    private let middle: UInt64
    private let low: UInt32

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        var high: UInt64 = 0, middle: UInt64 = 0, low: UInt32 = 0
        for (index, byte) in bytes.enumerated() {
            switch index {
            case 0..<8: high = high << 8 | UInt64(byte)
            case 8..<16: middle = middle << 8 | UInt64(byte)
            default: low = low << 8 | UInt32(byte)
            }
        }
        self.high = high
        self.middle = middle
        self.low = low
    }

    /// The first 20 bytes of a digest (always at least that long).
    private init(prefixOf digest: [UInt8]) {
        self.init(bytes: digest.prefix(Self.byteCount))!
    }

    public init(publicKey: [UInt8]) {
        self = publicKey.withUnsafeBytes { Address(publicKey: $0) }
    }

    /// `init(publicKey:)` of key bytes in place.
    public init(publicKey: UnsafeRawBufferPointer) {
        // The digest inline, its first 20 bytes read in place: no array made for a hash that is mostly dropped.
        let digest = WireCrypto.domainDigest(Self.publicKeyDomain, publicKey)
        (high, middle, low) = digest.withUnsafeBytes { bytes in
            (UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self)),
             UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
             UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))
        }
    }

    static let publicKeyDomain = "metanode/bpci/address/v1"

    public var bytes: [UInt8] {
        var writer = WireWriter(capacity: Self.byteCount)
        write(to: &writer)
        return writer.bytes
    }

    /// Appends the 20 bytes, as `bytes` holds them, without making an array of them first.
    public func write(to writer: inout WireWriter) {
        writer.u64(high)
        writer.u64(middle)
        writer.u32(low)
    }

    /// Writes the 20 bytes at `offset` in `buffer` (which must have room for them).
    public func store(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        precondition(offset >= 0 && offset + Self.byteCount <= buffer.count, "no room for an address")
        buffer.storeBytes(of: high.bigEndian, toByteOffset: offset, as: UInt64.self)
        buffer.storeBytes(of: middle.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
        buffer.storeBytes(of: low.bigEndian, toByteOffset: offset + 16, as: UInt32.self)
    }

    /// Appends the 20 bytes to `array`.
    public func append(to array: inout [UInt8]) {
        withUnsafeBytes(of: high.bigEndian) { array.append(contentsOf: $0) }
        withUnsafeBytes(of: middle.bigEndian) { array.append(contentsOf: $0) }
        withUnsafeBytes(of: low.bigEndian) { array.append(contentsOf: $0) }
    }

    /// The account of a module ("treasury", "fee-collector"): no key signs for it.
    public init(module name: String) {
        self.init(prefixOf: WireCrypto.domainHash("metanode/bpci/module-account/v1", Array(name.utf8)))
    }

    public static let treasury = Address(module: "treasury")
    public static let feeCollector = Address(module: "fee-collector")

    public var description: String { Bech32.encode(hrp: Self.humanReadablePart, data: bytes) }

    /// Parses the text form; the error says what is wrong with it.
    public static func parse(_ text: String) throws(WireError) -> Address {
        guard let (hrp, data) = Bech32.decode(text) else {
            throw WireError(.invalidValue, "'\(text)' is not an address: the checksum or the characters are wrong")
        }
        guard hrp == humanReadablePart else {
            throw WireError(.invalidValue, "'\(text)' is not a Metanode address (it starts '\(hrp)1', not 'mn1')")
        }
        guard let address = Address(bytes: data) else {
            throw WireError(.invalidValue, "'\(text)' holds \(data.count) bytes; an address is \(byteCount)")
        }
        return address
    }

    public static func < (a: Address, b: Address) -> Bool { (a.high, a.middle, a.low) < (b.high, b.middle, b.low) }
}

/// BIP-173 bech32: a human-readable part, "1", then 5-bit groups and a 6-character BCH checksum.
enum Bech32 {
    static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)
    static let generator: [UInt32] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]

    static func polymod(_ values: [UInt8]) -> UInt32 {
        var checksum: UInt32 = 1
        for value in values {
            let top = checksum >> 25
            checksum = (checksum & 0x1ffffff) << 5 ^ UInt32(value)
            for index in 0..<5 where (top >> index) & 1 == 1 { checksum ^= generator[index] }
        }
        return checksum
    }

    static func expand(_ hrp: String) -> [UInt8] {
        let bytes = Array(hrp.utf8)
        return bytes.map { $0 >> 5 } + [0] + bytes.map { $0 & 31 }
    }

    static func convert(_ data: [UInt8], from: Int, to: Int, pad: Bool) -> [UInt8]? {
        var accumulator = 0, bits = 0
        var out: [UInt8] = []
        let maxValue = (1 << to) - 1
        for value in data {
            guard Int(value) >> from == 0 else { return nil }
            accumulator = accumulator << from | Int(value)
            bits += from
            while bits >= to {
                bits -= to
                out.append(UInt8((accumulator >> bits) & maxValue))
            }
        }
        if pad {
            if bits > 0 { out.append(UInt8((accumulator << (to - bits)) & maxValue)) }
        } else if bits >= from || (accumulator << (to - bits)) & maxValue != 0 {
            return nil
        }
        return out
    }

    static func encode(hrp: String, data: [UInt8]) -> String {
        let values = convert(data, from: 8, to: 5, pad: true)!
        let mod = polymod(expand(hrp) + values + [0, 0, 0, 0, 0, 0]) ^ 1
        let checksum = (0..<6).map { UInt8((mod >> (5 * (5 - UInt32($0)))) & 31) }
        return hrp + "1" + String(decoding: (values + checksum).map { charset[Int($0)] }, as: UTF8.self)
    }

    static func decode(_ text: String) -> (hrp: String, data: [UInt8])? {
        guard text.utf8.count <= 90, text == text.lowercased() || text == text.uppercased() else { return nil }
        let lower = Array(text.lowercased().utf8)
        guard let separator = lower.lastIndex(of: UInt8(ascii: "1")), separator >= 1,
              separator + 7 <= lower.count else { return nil }
        let hrp = String(decoding: lower[..<separator], as: UTF8.self)
        var values: [UInt8] = []
        for character in lower[(separator + 1)...] {
            guard let index = charset.firstIndex(of: character) else { return nil }
            values.append(UInt8(index))
        }
        guard polymod(expand(hrp) + values) == 1,
              let data = convert(Array(values.dropLast(6)), from: 5, to: 8, pad: false) else { return nil }
        return (hrp, data)
    }
}
