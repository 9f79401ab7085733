/// A u64 stored as 8 big-endian bytes, so stored numbers (and keys built from them) sort by value.
public enum StoredU64 {
    public static func decode(_ bytes: [UInt8]) -> UInt64? {
        bytes.count == 8 ? bytes.reduce(0) { $0 << 8 | UInt64($1) } : nil
    }

    public static func encode(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
}
