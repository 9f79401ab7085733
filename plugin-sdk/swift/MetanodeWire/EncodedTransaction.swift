/// A transaction kept as the bytes it travels in, checked as `Transaction.decode` checks them, its fields read where
/// they lie.
///
/// The ledger admits, orders and executes every transaction on every validator. A decoded `Transaction` holds its
/// sender, payload and signature in arrays of their own: three allocations to make and free per transaction and
/// node, three references to retain at every copy, and cache lines apart from the bytes the transaction came in,
/// which the pool keeps anyway (for blocks and gossip). This keeps only those bytes and the places of the fields.
public struct EncodedTransaction: Sendable, Hashable {
    public let encoded: [UInt8]
    public let nonce: UInt64
    public let fee: UInt64
    /// Where the sender starts: after the version, the chain id's length and the chain id.
    private let senderStart: UInt16
    private let kindCount: UInt16
    private let payloadCount: UInt32

    /// The checks and errors of `Transaction.decode`: bytes this accepts decode, and bytes it refuses do not.
    public init(_ encoded: [UInt8]) throws(WireError) {
        guard let fields = Self.fields(of: encoded) else {
            // Refused: decode says why, in its words (it refuses whatever `fields` does).
            _ = try Transaction.decode(encoded)
            throw WireError(.invalidValue, "transaction: malformed")  // not reached while the two agree
        }
        self.encoded = encoded
        (senderStart, kindCount, payloadCount, nonce, fee) = fields
    }

    /// `transaction`'s encoding, checked.
    public init(_ transaction: Transaction) throws(WireError) {
        try self.init(transaction.encoded)
    }

    /// The places and integers of `bytes`' fields, or nil where `Transaction.decode` would throw.
    private static func fields(of bytes: [UInt8])
        -> (senderStart: UInt16, kindCount: UInt16, payloadCount: UInt32, nonce: UInt64, fee: UInt64)? {
        // u8 version | u16 len, chainID | [32] sender | u64 nonce | u64 fee | u16 len, kind | u32 len, payload
        // | [64] signature
        bytes.withUnsafeBytes { raw -> (UInt16, UInt16, UInt32, UInt64, UInt64)? in
            let count = raw.count
            guard count <= Transaction.encodedBytesMax, count >= 3, raw[0] == Transaction.version else { return nil }
            func u16(_ at: Int) -> Int { Int(raw[at]) << 8 | Int(raw[at + 1]) }
            func integer(_ at: Int, _ width: Int) -> UInt64 {
                (at..<(at + width)).reduce(0) { $0 << 8 | UInt64(raw[$1]) }
            }
            let chainIDCount = u16(1)
            let senderStart = 3 + chainIDCount
            guard chainIDCount <= Transaction.chainIDBytesMax, senderStart + 50 <= count,
                  Transaction.isName(bytes: raw[3..<senderStart], max: Transaction.chainIDBytesMax,
                                     allowingSlash: false) else { return nil }
            let kindStart = senderStart + 50
            let kindCount = u16(senderStart + 48)
            guard kindCount <= Transaction.kindBytesMax, kindStart + kindCount + 4 <= count,
                  Transaction.isName(bytes: raw[kindStart..<(kindStart + kindCount)], max: Transaction.kindBytesMax,
                                     allowingSlash: true),
                  Transaction.isModuleAndType(raw[kindStart..<(kindStart + kindCount)]) else { return nil }
            let payloadStart = kindStart + kindCount + 4
            let payloadCount = integer(payloadStart - 4, 4)
            guard payloadCount <= UInt64(Transaction.payloadBytesMax),
                  payloadStart + Int(payloadCount) + 64 == count else { return nil }
            return (UInt16(senderStart), UInt16(kindCount), UInt32(payloadCount), integer(senderStart + 32, 8),
                    integer(senderStart + 40, 8))
        }
    }

    private var chainIDRange: Range<Int> { 3..<Int(senderStart) }
    private var senderRange: Range<Int> { Int(senderStart)..<(Int(senderStart) + 32) }
    private var kindRange: Range<Int> { (Int(senderStart) + 50)..<(Int(senderStart) + 50 + Int(kindCount)) }
    private var payloadRange: Range<Int> {
        let start = kindRange.upperBound + 4
        return start..<(start + Int(payloadCount))
    }

    public var chainID: String { String(decoding: encoded[chainIDRange], as: UTF8.self) }

    /// Whether the transaction is for `chainID`, compared where the bytes lie.
    public func isFor(chainID: String) -> Bool { encoded[chainIDRange].elementsEqual(chainID.utf8) }

    /// The sender's Ed25519 public key (a new array).
    public var sender: [UInt8] { Array(encoded[senderRange]) }

    /// The sender as a dictionary key, made from the bytes where they lie.
    public var senderKey: BytesKey {
        encoded.withUnsafeBytes { BytesKey(UnsafeRawBufferPointer(rebasing: $0[senderRange])) }
    }

    /// `<module>/<type>`.
    public var kind: String { String(decoding: encoded[kindRange], as: UTF8.self) }

    /// The module part of the kind ("bpci" for "bpci/transfer").
    public var module: Substring {
        let kind = kind
        return kind[..<(kind.firstIndex(of: "/") ?? kind.endIndex)]
    }

    /// Whether the kind's module part is `module`, compared where the bytes lie (`module` makes a string).
    public func isOf(module: String) -> Bool {
        let kind = encoded[kindRange], name = module.utf8
        return kind.count > name.count && kind.starts(with: name) && kind[kind.startIndex + name.count] == 0x2F
    }

    public var payload: [UInt8] { Array(encoded[payloadRange]) }

    /// The id, from the bytes (`Transaction.id`).
    public var id: [UInt8] { Transaction.id(ofEncoded: encoded)! }

    /// Whether the sender's signature verifies (`Transaction.hasValidSignature`).
    public var hasValidSignature: Bool { Transaction.hasValidSignature(encoded: encoded) }

    /// The transaction decoded, for what needs every field as a value (the bytes were checked when this was made).
    public var decoded: Transaction {
        do { return try Transaction.decode(encoded) } catch { preconditionFailure("checked bytes failed to decode: \(error)") }
    }

    /// Calls `body` with the sender, the kind and the payload where they lie in the bytes.
    public func withFields<R>(_ body: (_ sender: UnsafeRawBufferPointer, _ kind: UnsafeRawBufferPointer,
                                       _ payload: UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try encoded.withUnsafeBytes { bytes in
            try body(UnsafeRawBufferPointer(rebasing: bytes[senderRange]), UnsafeRawBufferPointer(rebasing: bytes[kindRange]),
                     UnsafeRawBufferPointer(rebasing: bytes[payloadRange]))
        }
    }

    /// Equal when the bytes are (they decide every field).
    public static func == (a: EncodedTransaction, b: EncodedTransaction) -> Bool { a.encoded.hasSameBytes(as: b.encoded) }

    public func hash(into hasher: inout Hasher) { encoded.withUnsafeBytes { hasher.combine(bytes: $0) } }
}
