/// The one type the plugin side (MetanodePluginKit) and the host side (MetanodeHostBridge) share: a node's network
/// identity. Both modules re-export this module, so `PeerID` means the same type everywhere.

/// A node's identity on the network: its 32-byte Ed25519 public key.
public struct PeerID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Exactly 32 bytes.
    public let bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        self.bytes = Array(bytes)
    }

    /// Reads 32 bytes at `pointer` (a key passed across the ABI).
    public init(pointer: UnsafePointer<UInt8>) {
        bytes = Array(UnsafeBufferPointer(start: pointer, count: 32))
    }

    /// Lowercase hex, as the CLI and config show keys.
    public init?(hex: String) {
        guard hex.utf8.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        var high: UInt8?
        for character in hex.utf8 {
            let value: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = character - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = character - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let first = high {
                bytes.append(first << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        self.bytes = bytes
    }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(64)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The first 8 bytes in hex: enough to tell peers apart in logs.
    public var short: String { String(hex.prefix(16)) }

    public var description: String { hex }

    public static func < (a: PeerID, b: PeerID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
