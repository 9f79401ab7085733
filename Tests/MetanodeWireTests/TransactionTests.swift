import MetanodeWire
import Testing

@Suite("Transaction envelope")
struct TransactionTests {
    static let signer = Ed25519Signer(seed: Array(0..<32))

    static func transfer(nonce: UInt64 = 7) throws -> Transaction {
        try Transaction.signed(chainID: "metanode-dev", signer: signer, nonce: nonce, fee: 1_000, kind: "bpci/transfer",
                               payload: Array("hello".utf8))
    }

    @Test("a signed transaction decodes to itself and its signature verifies")
    func roundTrip() throws {
        let transaction = try Self.transfer()
        let decoded = try Transaction.decode(transaction.encoded)
        #expect(decoded == transaction)
        #expect(decoded.hasValidSignature)
        #expect(decoded.module == "bpci")
    }

    @Test("changing any signed field breaks the signature; the id ignores the signature")
    func tampering() throws {
        let transaction = try Self.transfer()
        var changed = transaction
        changed.nonce += 1
        #expect(!changed.hasValidSignature)
        changed = transaction
        changed.chainID = "other"
        #expect(!changed.hasValidSignature)
        changed = transaction
        changed.payload[0] ^= 1
        #expect(!changed.hasValidSignature)
        changed = transaction
        changed.signature[10] ^= 1
        #expect(!changed.hasValidSignature)
        #expect(changed.id == transaction.id)
    }

    @Test("the id and signature check read from the encoded bytes agree with the decoded transaction's")
    func fromEncodedBytes() throws {
        let transaction = try Self.transfer()
        let encoded = transaction.encoded
        #expect(Transaction.id(ofEncoded: encoded) == transaction.id)
        #expect(hex(Transaction.id(ofEncoded: encoded) ?? []) == Self.goldenID)
        #expect(Transaction.hasValidSignature(encoded: encoded))
        // Any byte changed, in the body or in the signature, breaks it; so does another sender's key in its place.
        for index in encoded.indices {
            var changed = encoded
            changed[index] ^= 0x01
            #expect(!Transaction.hasValidSignature(encoded: changed), "byte \(index) changed")
        }
        var otherSender = try Transaction.signed(chainID: "metanode-dev", signer: Ed25519Signer(seed: Array(1...32)),
                                                 nonce: 7, fee: 1_000, kind: "bpci/transfer",
                                                 payload: Array("hello".utf8))
        otherSender.signature = transaction.signature
        #expect(!Transaction.hasValidSignature(encoded: otherSender.encoded))
        // Bytes that are no transaction, or whose chain id length runs past the sender: invalid, not a crash.
        for bytes: [UInt8] in [[], [1], [1, 0], [1, 0xFF, 0xFF] + encoded, Array(encoded.prefix(3 + 12 + 32 + 63))] {
            #expect(!Transaction.hasValidSignature(encoded: bytes))
        }
        #expect(Transaction.id(ofEncoded: Array(encoded.prefix(64))) == nil)
        // The chain id, sender, nonce and fee where decode finds them; nil for bytes too short to hold them.
        let read = try #require(Transaction.fields(ofEncoded: encoded))
        #expect(Array(read.chainID) == Array(transaction.chainID.utf8) && read.sender.bytes == transaction.sender
            && read.nonce == transaction.nonce && read.fee == transaction.fee)
        let large = try Transaction.signed(chainID: "metanode-dev", signer: Ed25519Signer(seed: Array(1...32)),
                                           nonce: 0x0102_0304_0506_0708, fee: 0x1112_1314_1516_1718,
                                           kind: "bpci/transfer", payload: [])
        let largeFields = try #require(Transaction.fields(ofEncoded: large.encoded))
        #expect(largeFields.nonce == 0x0102_0304_0506_0708 && largeFields.fee == 0x1112_1314_1516_1718)
        for bytes: [UInt8] in [[], [1, 0], [1, 0xFF, 0xFF] + encoded, Array(encoded.prefix(3 + 12 + 32 + 15))] {
            #expect(Transaction.fields(ofEncoded: bytes) == nil)
        }
    }

    /// The golden vector in plugin-sdk/docs/wire.md: a C implementation must produce these exact bytes.
    @Test("golden vector: seed 00..1f, chain metanode-dev, nonce 7, fee 1000, bpci/transfer, payload 'hello'")
    func goldenVector() throws {
        let transaction = try Self.transfer()
        #expect(hex(transaction.body) == "01000c6d6574616e6f64652d646576"
            + "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
            + "0000000000000007" + "00000000000003e8" + "000d627063692f7472616e73666572" + "0000000568656c6c6f")
        #expect(hex(transaction.signature) == Self.goldenSignature)
        #expect(hex(transaction.id) == Self.goldenID)
    }

    static let goldenSignature = "f72c183a88aa98a0b5be43fde28100d0443903af9957f680335cf7660898ea7c"
        + "75089e85f0bfe78028dde9ae65a8759613d079a35fd03f9a64062383148b460d"
    static let goldenID = "f817b19eb295f2ea4f949126d7c20cf5ec9c750ec96e5537423229df9dc2df7e"

    @Test("bad bytes are refused with the field named", arguments: [
        (Array<UInt8>([2]), "transaction version 2 is unknown; this node reads version 1"),
        ([1, 0], "transaction ends inside chainID length: needs 2 byte(s), 1 left"),
        ([1, 0, 65] + [UInt8](repeating: 0x61, count: 65), "transaction.chainID is 65 bytes; at most 64"),
    ])
    func badBytes(bytes: [UInt8], message: String) {
        #expect(throws: WireError.self) { try Transaction.decode(bytes) }
        do { _ = try Transaction.decode(bytes) } catch { #expect(error.message == message) }
    }

    @Test("a payload over 64 KiB, a kind without a module, an upper-case chain id, or trailing bytes are refused")
    func badFields() throws {
        #expect(throws: WireError(.invalidValue, "transaction.kind 'transfer' must be '<module>/<type>' in a-z, 0-9, "
            + "'-', '_' or '.', at most 64 characters")) {
            try Transaction.signed(chainID: "dev", signer: Self.signer, nonce: 0, fee: 0, kind: "transfer", payload: [])
        }
        #expect(throws: WireError.self) {
            try Transaction.signed(chainID: "Dev", signer: Self.signer, nonce: 0, fee: 0, kind: "a/b", payload: [])
        }
        var big = try Self.transfer()
        big.payload = [UInt8](repeating: 0, count: Transaction.payloadBytesMax + 1)
        #expect(throws: WireError(.tooLong, "transaction.payload is 65537 bytes; at most 65536")) {
            try Transaction.decode(big.encoded)
        }
        #expect(throws: WireError(.trailingBytes, "transaction has 1 byte(s) after its last field")) {
            try Transaction.decode(try Self.transfer().encoded + [0])
        }
    }

    @Test("a kind is two non-empty parts around one slash", arguments: [
        ("bpci/transfer", true), ("a/b", true), ("a/b.c-d_e", true), ("/b", false), ("a/", false), ("/", false),
        ("a/b/c", false), ("a//b", false), ("ab", false),
    ])
    func kindShape(kind: String, valid: Bool) {
        let transaction = Transaction(chainID: "dev", sender: [UInt8](repeating: 1, count: 32), nonce: 0, fee: 0,
                                      kind: kind, payload: [])
        #expect(((try? transaction.checkFields()) != nil) == valid)
        if !valid {
            #expect(throws: WireError(.invalidValue, "transaction.kind '\(kind)' must be '<module>/<type>' in a-z, "
                + "0-9, '-', '_' or '.', at most 64 characters")) { try transaction.checkFields() }
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

@Suite("Block events")
struct BlockEventsTests {
    @Test("block events and replays decode to what was encoded; a truncated or oversized one is refused by field")
    func roundTrip() throws {
        let block = BlockEvents(height: 7, events: [
            .init(transaction: [UInt8](repeating: 1, count: 32), type: "bpci.transfer", data: [1, 2, 3]),
            .init(transaction: [UInt8](repeating: 2, count: 32), type: "bpci.fee", data: []),
        ])
        #expect(try BlockEvents.decode(block.encoded) == block)
        let replay = BlockEvents.encodeReplay([block, BlockEvents(height: 8, events: [])])
        #expect(try BlockEvents.decodeReplay(replay).map(\.height) == [7, 8])
        #expect(try BlockEvents.decodeReplay(BlockEvents.encodeReplay([])).isEmpty)
        #expect(throws: WireError.self) { try BlockEvents.decode(Array(block.encoded.dropLast())) }
        var long = block
        long.events[0].type = String(repeating: "x", count: BlockEvents.typeBytesMax + 1)
        #expect(throws: WireError.self) { try BlockEvents.decode(long.encoded) }
        #expect(throws: WireError.self) { try BlockEvents.decodeReplay(replay + [0]) }
    }

    @Test("a block's events are cut into parts of a bounded size, in order, the last one marked")
    func parts() throws {
        let events = (0..<10).map {
            BlockEvents.Event(transaction: [UInt8](repeating: UInt8($0), count: 32), type: "m.e", data: [UInt8](repeating: 1, count: 100))
        }
        let parts = BlockEvents.parts(height: 3, events: events, partBytesMax: 300)  // two 141-byte events each
        #expect(parts.count == 5 && parts.map(\.firstEvent) == [0, 2, 4, 6, 8])
        #expect(parts.map(\.isLastPart) == [false, false, false, false, true])
        #expect(parts.flatMap(\.events) == events && parts.allSatisfy { $0.totalEvents == 10 })
        #expect(try parts.map { try BlockEvents.decode($0.encoded) } == parts)
        #expect(BlockEvents.parts(height: 3, events: events, from: 7, partBytesMax: 300).map(\.firstEvent) == [7, 9])
        #expect(BlockEvents.parts(height: 4, events: []).map(\.isLastPart) == [true])
        var lying = parts[4]
        lying.firstEvent = 9  // 9 + 2 events > 10
        #expect(throws: WireError.self) { try BlockEvents.decode(lying.encoded) }
    }
}
