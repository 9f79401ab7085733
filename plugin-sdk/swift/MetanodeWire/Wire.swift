/// Metanode's wire encoding: what crosses a node or the ABI and gets hashed or signed (transactions, blocks,
/// consensus messages). Specified in plugin-sdk/docs/wire.md with golden vectors, so a C plugin produces the same
/// bytes.
///
/// The rules make every value's encoding unique, so hashing the bytes is hashing the value:
/// - integers are fixed width and big-endian (so encoded heights sort as numbers do in a key-value store);
/// - a byte string is its length (u16 or u32, named per field) then its bytes; a fixed-size field has no length;
/// - a list is its count (u16 or u32) then its items; an optional value is a u8 0 (absent) or 1 then the value;
/// - structures are their fields in order, with no padding and no tags; a leading version byte says which layout.
/// Decoders check every length against the field's named limit before reading, and reject trailing bytes.

/// Why bytes did not decode, naming the field.
public struct WireError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        case truncated, tooLong, trailingBytes, invalidValue
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Appends encoded fields to a byte array.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }
    public mutating func u16(_ value: UInt16) { append(bigEndian: value) }
    public mutating func u32(_ value: UInt32) { append(bigEndian: value) }
    public mutating func u64(_ value: UInt64) { append(bigEndian: value) }

    /// A fixed-size field: no length prefix. The caller's type guarantees the size.
    public mutating func fixed(_ value: some Collection<UInt8>, count: Int) {
        precondition(value.count == count, "a fixed \(count)-byte field got \(value.count) bytes")
        bytes.append(contentsOf: value)
    }

    /// A byte string of at most 65,535 bytes: u16 length, then the bytes.
    public mutating func bytes16(_ value: some Collection<UInt8>) {
        precondition(value.count <= Int(UInt16.max), "a u16-length field cannot hold \(value.count) bytes")
        u16(UInt16(value.count))
        bytes.append(contentsOf: value)
    }

    /// A byte string: u32 length, then the bytes.
    public mutating func bytes32(_ value: some Collection<UInt8>) {
        precondition(value.count <= Int(UInt32.max), "a u32-length field cannot hold \(value.count) bytes")
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    /// A UTF-8 string with a u16 length.
    public mutating func string16(_ value: String) { bytes16(Array(value.utf8)) }

    /// Raw bytes with no length: for values that are already encodings whose reader knows where they end.
    public mutating func raw(_ value: some Sequence<UInt8>) { bytes.append(contentsOf: value) }

    private mutating func append<T: FixedWidthInteger>(bigEndian value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Reads encoded fields in order. Every read names its field, so errors say what was wrong
/// ("transaction.payload is 70000 bytes; at most 65536").
public struct WireReader: Sendable {
    public let bytes: [UInt8]
    /// What is being decoded, prefixed to field names in errors ("transaction", "block header").
    public let context: String
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], context: String) {
        self.bytes = bytes
        self.context = context
        offset = 0
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func u8(_ field: @autoclosure () -> String) throws(WireError) -> UInt8 {
        try need(1, field())
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func bool(_ field: @autoclosure () -> String) throws(WireError) -> Bool {
        switch try u8(field()) {
        case 0: return false
        case 1: return true
        case let other: throw WireError(.invalidValue, "\(context).\(field()) is \(other); a flag is 0 or 1")
        }
    }

    public mutating func u16(_ field: @autoclosure () -> String) throws(WireError) -> UInt16 { try integer(field()) }
    public mutating func u32(_ field: @autoclosure () -> String) throws(WireError) -> UInt32 { try integer(field()) }
    public mutating func u64(_ field: @autoclosure () -> String) throws(WireError) -> UInt64 { try integer(field()) }

    public mutating func fixed(_ count: Int, _ field: @autoclosure () -> String) throws(WireError) -> [UInt8] {
        try need(count, field())
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    public mutating func bytes16(_ field: @autoclosure () -> String, max: Int) throws(WireError) -> [UInt8] {
        let count = Int(try u16(field() + " length"))
        return try body(count, field(), max: max)
    }

    public mutating func bytes32(_ field: @autoclosure () -> String, max: Int) throws(WireError) -> [UInt8] {
        let count = Int(try u32(field() + " length"))
        return try body(count, field(), max: max)
    }

    /// A UTF-8 string with a u16 length, at most `max` bytes.
    public mutating func string16(_ field: @autoclosure () -> String, max: Int) throws(WireError) -> String {
        let count = Int(try u16(field() + " length"))
        guard count <= max else { throw WireError(.tooLong, "\(context).\(field()) is \(count) bytes; at most \(max)") }
        try need(count, field())
        // Validated where the bytes lie: an array of them first was an allocation per string (a transaction's chain
        // id and kind, every event's type), where a short string needs none.
        guard let text = String(validating: bytes[offset..<(offset + count)], as: UTF8.self) else {
            throw WireError(.invalidValue, "\(context).\(field()) is not valid UTF-8")
        }
        offset += count
        return text
    }

    /// A list count, at most `max`; each item must take at least `itemBytesMin` bytes, so a count larger than what
    /// remains is refused before anything is allocated.
    public mutating func count16(_ field: @autoclosure () -> String, max: Int, itemBytesMin: Int = 1) throws(WireError) -> Int {
        let count = Int(try u16(field() + " count"))
        try checkCount(count, field(), max: max, itemBytesMin: itemBytesMin)
        return count
    }

    public mutating func count32(_ field: @autoclosure () -> String, max: Int, itemBytesMin: Int = 1) throws(WireError) -> Int {
        let count = Int(try u32(field() + " count"))
        try checkCount(count, field(), max: max, itemBytesMin: itemBytesMin)
        return count
    }

    /// Throws unless every byte was read.
    public func finish() throws(WireError) {
        guard offset == bytes.count else {
            throw WireError(.trailingBytes, "\(context) has \(bytes.count - offset) byte(s) after its last field")
        }
    }

    private mutating func body(_ count: Int, _ field: @autoclosure () -> String, max: Int) throws(WireError) -> [UInt8] {
        guard count <= max else {
            throw WireError(.tooLong, "\(context).\(field()) is \(count) bytes; at most \(max)")
        }
        return try fixed(count, field())
    }

    private func checkCount(_ count: Int, _ field: @autoclosure () -> String, max: Int, itemBytesMin: Int) throws(WireError) {
        guard count <= max else {
            throw WireError(.tooLong, "\(context).\(field()) has \(count) items; at most \(max)")
        }
        guard count * Swift.max(itemBytesMin, 0) <= remaining else {
            throw WireError(.truncated, "\(context).\(field()) claims \(count) items but only \(remaining) bytes remain")
        }
    }

    private mutating func integer<T: FixedWidthInteger>(_ field: @autoclosure () -> String) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        try need(size, field())
        var value: T = 0
        for index in offset..<offset + size { value = value << 8 | T(bytes[index]) }
        offset += size
        return value
    }

    private func need(_ count: Int, _ field: @autoclosure () -> String) throws(WireError) {
        guard count <= remaining else {
            throw WireError(.truncated, "\(context) ends inside \(field()): needs \(count) byte(s), \(remaining) left")
        }
    }
}
