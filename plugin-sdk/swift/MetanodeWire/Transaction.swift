/// A signed transaction: the envelope every module's transactions travel in (plugin-sdk/docs/wire.md).
///
///     u8 version (1) | string16 chainID | [32] sender | u64 nonce | u64 fee | string16 kind | bytes32 payload
///     | [64] signature
///
/// The sender signs `"metanode/tx/v1" 0 <body>`, where the body is every field before the signature. The transaction
/// id is BLAKE2b-256 of `"metanode/txid/v1" 0 <body>`: it leaves out the signature, since Ed25519 lets a signer make
/// many valid signatures of one body, and one body must be one transaction.
public struct Transaction: Sendable, Hashable {
    public static let version: UInt8 = 1
    public static let signingDomain = "metanode/tx/v1"
    public static let idDomain = "metanode/txid/v1"
    public static let chainIDBytesMax = 64
    public static let kindBytesMax = 64
    public static let payloadBytesMax = 64 * 1024
    /// The largest encoded transaction.
    public static let encodedBytesMax = 1 + 2 + chainIDBytesMax + 32 + 8 + 8 + 2 + kindBytesMax + 4 + payloadBytesMax
        + 64

    public var chainID: String
    /// The sender's Ed25519 public key.
    public var sender: [UInt8]
    /// The sender's sequence number: 0 for its first transaction, then one more each time.
    public var nonce: UInt64
    /// The most the sender pays for inclusion, in the fee denomination's smallest unit.
    public var fee: UInt64
    /// `<module>/<type>`, e.g. "bpci/transfer": which module handles the payload.
    public var kind: String
    public var payload: [UInt8]
    public var signature: [UInt8]

    public init(chainID: String, sender: [UInt8], nonce: UInt64, fee: UInt64, kind: String, payload: [UInt8],
                signature: [UInt8] = [UInt8](repeating: 0, count: 64)) {
        self.chainID = chainID
        self.sender = sender
        self.nonce = nonce
        self.fee = fee
        self.kind = kind
        self.payload = payload
        self.signature = signature
    }

    /// A transaction signed by `signer`, whose public key becomes the sender.
    public static func signed(chainID: String, signer: Ed25519Signer, nonce: UInt64, fee: UInt64, kind: String,
                              payload: [UInt8]) throws(WireError) -> Transaction {
        var transaction = Transaction(chainID: chainID, sender: signer.publicKey, nonce: nonce, fee: fee, kind: kind,
                                      payload: payload)
        try transaction.checkFields()
        transaction.signature = signer.sign(transaction.signingBytes)
        return transaction
    }

    /// Every field before the signature, encoded.
    public var body: [UInt8] {
        var writer = WireWriter(capacity: 128 + payload.count)
        writer.u8(Self.version)
        writer.string16(chainID)
        writer.fixed(sender, count: 32)
        writer.u64(nonce)
        writer.u64(fee)
        writer.string16(kind)
        writer.bytes32(payload)
        return writer.bytes
    }

    public var signingBytes: [UInt8] { Array(Self.signingDomain.utf8) + [0] + body }

    public var id: [UInt8] { WireCrypto.domainHash(Self.idDomain, body) }

    /// The id of an encoded transaction, without decoding it (its body is all but the last 64 bytes); nil if it is too
    /// short to be one. It only equals a decoded transaction's id if `encoded` is one.
    public static func id(ofEncoded encoded: [UInt8]) -> [UInt8]? {
        guard encoded.count > 64 else { return nil }
        return encoded.withUnsafeBytes { bytes in
            WireCrypto.domainDigest(idDomain, UnsafeRawBufferPointer(rebasing: bytes[..<(bytes.count - 64)]))
        }.bytes
    }

    /// The chain id, sender, nonce and fee of an encoded transaction, read where `decode` finds them, without
    /// decoding the rest; nil if the bytes are too short to hold them. Only a decoded transaction's if `encoded` is
    /// one. The sender comes as a dictionary key, made where it lies: the pool looks it up by nothing else.
    public static func fields(ofEncoded encoded: [UInt8])
        -> (chainID: ArraySlice<UInt8>, sender: BytesKey, nonce: UInt64, fee: UInt64)? {
        // u8 version | u16 chainID length | chainID | [32] sender | u64 nonce | u64 fee | …
        guard encoded.count >= 3 else { return nil }
        let senderStart = 3 + (Int(encoded[1]) << 8 | Int(encoded[2]))
        guard senderStart + 48 <= encoded.count else { return nil }
        func u64(at start: Int) -> UInt64 { encoded[start..<(start + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        let sender = encoded.withUnsafeBytes { BytesKey(UnsafeRawBufferPointer(rebasing: $0[senderStart..<(senderStart + 32)])) }
        return (encoded[3..<senderStart], sender, u64(at: senderStart + 32), u64(at: senderStart + 40))
    }

    /// Whether an encoded transaction carries its sender's valid signature, read from the bytes as they are:
    /// for bytes `decode` accepts, the decoded transaction's `hasValidSignature`, without encoding its body again to
    /// sign it. Admission checks every transaction so, once per node. Bytes too short to hold a sender and a
    /// signature are simply invalid.
    public static func hasValidSignature(encoded: [UInt8]) -> Bool {
        // u8 version | u16 chainID length | chainID | [32] sender | … | [64] signature
        guard encoded.count >= 3 else { return false }
        let senderStart = 3 + (Int(encoded[1]) << 8 | Int(encoded[2]))
        let bodyCount = encoded.count - 64
        guard senderStart + 32 <= bodyCount else { return false }
        let domain = signingDomain.utf8
        return encoded.withUnsafeBytes { bytes in
            // The signed message is the domain, a zero byte and the body: made once here, on the stack when small.
            withUnsafeTemporaryAllocation(byteCount: domain.count + 1 + bodyCount, alignment: 1) { message in
                var at = 0
                for byte in domain {
                    message[at] = byte
                    at += 1
                }
                message[at] = 0
                UnsafeMutableRawBufferPointer(rebasing: message[(at + 1)...])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[..<bodyCount]))
                let sender = UnsafeRawBufferPointer(rebasing: bytes[senderStart..<(senderStart + 32)])
                return WireCrypto.verify(signature: UnsafeRawBufferPointer(rebasing: bytes[bodyCount...]),
                                         publicKey: sender, message: UnsafeRawBufferPointer(message))
            }
        }
    }

    public var encoded: [UInt8] { body + signature }

    public var hasValidSignature: Bool {
        WireCrypto.verify(signature: signature, publicKey: sender, message: signingBytes)
    }

    /// The module part of `kind` ("bpci" for "bpci/transfer").
    public var module: Substring { kind[..<(kind.firstIndex(of: "/") ?? kind.endIndex)] }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Transaction {
        guard bytes.count <= encodedBytesMax else {
            throw WireError(.tooLong, "a transaction is \(bytes.count) bytes; at most \(encodedBytesMax)")
        }
        var reader = WireReader(bytes, context: "transaction")
        let version = try reader.u8("version")
        guard version == Self.version else {
            throw WireError(.invalidValue, "transaction version \(version) is unknown; this node reads version 1")
        }
        let transaction = Transaction(
            chainID: try reader.string16("chainID", max: chainIDBytesMax), sender: try reader.fixed(32, "sender"),
            nonce: try reader.u64("nonce"), fee: try reader.u64("fee"),
            kind: try reader.string16("kind", max: kindBytesMax),
            payload: try reader.bytes32("payload", max: payloadBytesMax), signature: try reader.fixed(64, "signature"))
        try reader.finish()
        try transaction.checkFields()
        return transaction
    }

    /// The rules on field contents beyond their lengths: a chain id and a kind are lowercase names, the kind has a
    /// module part and a type part.
    public func checkFields() throws(WireError) {
        guard Self.isName(chainID, max: Self.chainIDBytesMax, allowingSlash: false) else {
            throw WireError(.invalidValue, "transaction.chainID '\(chainID)' must be 1-\(Self.chainIDBytesMax) "
                + "characters of a-z, 0-9, '-', '_' or '.'")
        }
        guard Self.isName(kind, max: Self.kindBytesMax, allowingSlash: true), Self.isModuleAndType(kind.utf8) else {
            throw WireError(.invalidValue, "transaction.kind '\(kind)' must be '<module>/<type>' in a-z, 0-9, '-', "
                + "'_' or '.', at most \(Self.kindBytesMax) characters")
        }
        guard sender.count == 32 else {
            throw WireError(.invalidValue, "transaction.sender is \(sender.count) bytes; an Ed25519 key is 32")
        }
        guard payload.count <= Self.payloadBytesMax else {
            throw WireError(.tooLong, "transaction.payload is \(payload.count) bytes; at most \(Self.payloadBytesMax)")
        }
    }

    /// Whether `kind` is two non-empty parts around one "/", checked where it lies: every decoded transaction is
    /// checked, and splitting the kind made an array of its parts each time.
    static func isModuleAndType<Kind: Collection<UInt8>>(_ kind: Kind) -> Bool {
        guard let slash = kind.firstIndex(of: 0x2F), slash != kind.startIndex else { return false }
        let type = kind[kind.index(after: slash)...]
        return !type.isEmpty && !type.contains(0x2F)
    }

    public static func isName(_ text: String, max: Int, allowingSlash: Bool) -> Bool {
        isName(bytes: text.utf8, max: max, allowingSlash: allowingSlash)
    }

    /// `isName` on bytes: one to `max` of a-z, 0-9, '-', '_', '.' (and '/' where allowed). `EncodedTransaction`
    /// checks names where they lie in the encoding.
    static func isName<Bytes: Collection<UInt8>>(bytes: Bytes, max: Int, allowingSlash: Bool) -> Bool {
        guard !bytes.isEmpty, bytes.count <= max else { return false }
        return bytes.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x2D || byte == 0x5F
                || byte == 0x2E || (allowingSlash && byte == 0x2F)
        }
    }
}
