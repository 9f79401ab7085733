import MetanodePluginTesting
import MetanodeWire
import Testing

@Suite("Encoded transaction")
struct EncodedTransactionTests {
    static let signer = Ed25519Signer(seed: Array(0..<32))

    static func samples() throws -> [Transaction] {
        [
            try Transaction.signed(chainID: "metanode-dev", signer: signer, nonce: 7, fee: 1_000, kind: "bpci/transfer",
                                   payload: Array("hello".utf8)),
            try Transaction.signed(chainID: "a", signer: signer, nonce: .max, fee: 0, kind: "m/t", payload: []),
            try Transaction.signed(chainID: String(repeating: "c", count: Transaction.chainIDBytesMax),
                                   signer: signer, nonce: 0x0102_0304_0506_0708, fee: 0x1112_1314_1516_1718,
                                   kind: "x/" + String(repeating: "k", count: Transaction.kindBytesMax - 2),
                                   payload: [UInt8](repeating: 9, count: 300)),
        ]
    }

    @Test("every field read in place equals the decoded transaction's")
    func fieldsMatchTheDecodedTransaction() throws {
        for transaction in try Self.samples() {
            let encoded = try EncodedTransaction(transaction)
            #expect(encoded.encoded == transaction.encoded)
            #expect(encoded.decoded == transaction)
            #expect(encoded.chainID == transaction.chainID && encoded.isFor(chainID: transaction.chainID))
            #expect(!encoded.isFor(chainID: transaction.chainID + "x") && !encoded.isFor(chainID: ""))
            #expect(encoded.sender == transaction.sender && encoded.senderKey == BytesKey(transaction.sender))
            #expect(encoded.nonce == transaction.nonce && encoded.fee == transaction.fee)
            #expect(encoded.kind == transaction.kind && encoded.module == transaction.module)
            let module = String(transaction.module)
            #expect(encoded.isOf(module: module) && !encoded.isOf(module: String(module.dropLast()))
                && !encoded.isOf(module: module + "x") && !encoded.isOf(module: transaction.kind)
                && !encoded.isOf(module: ""))
            #expect(encoded.payload == transaction.payload)
            #expect(encoded.id == transaction.id && encoded.hasValidSignature)
            encoded.withFields { sender, kind, payload in
                #expect(Array(sender) == transaction.sender && Array(kind) == Array(transaction.kind.utf8)
                    && Array(payload) == transaction.payload)
            }
        }
    }

    /// The ledger takes a transaction as `EncodedTransaction` where it took it as `Transaction.decode`'s: the two
    /// must accept exactly the same bytes, or a node would admit (or a block carry) what another refuses.
    @Test("accepts exactly the bytes decode accepts, and refuses the rest with decode's message (seeded mutations)")
    func agreesWithDecode() throws {
        var random = SimulationRandom(seed: 0x7478_656E_636F_6465)
        var accepted = 0, refused = 0
        for transaction in try Self.samples() {
            let valid = transaction.encoded
            for _ in 0..<3_000 {
                var bytes = valid
                switch random.below(6) {
                case 0:  // a byte anywhere
                    bytes[Int(random.below(UInt64(bytes.count)))] = UInt8(truncatingIfNeeded: random.next())
                case 1:  // a byte of the header, where the lengths and names are
                    let headerBytesMax = 3 + Transaction.chainIDBytesMax + 50 + Transaction.kindBytesMax + 4
                    let at = Int(random.below(UInt64(min(bytes.count, headerBytesMax))))
                    bytes[at] = UInt8(truncatingIfNeeded: random.next())
                case 2:  // cut short
                    bytes.removeLast(Int(random.below(UInt64(bytes.count)) + 1))
                case 3:  // bytes after the signature
                    bytes += [UInt8](repeating: 0, count: Int(random.below(4)) + 1)
                case 4:  // a length moved by a little
                    let lengthAt = [1, 2, 3 + Int(valid[2]) + 49][Int(random.below(3))]
                    bytes[lengthAt] = bytes[lengthAt] &+ UInt8(random.below(5)) &- 2
                default:  // a name byte set to one of the edge characters
                    let at = 3 + Int(random.below(UInt64(Int(valid[2]) + 50)))
                    bytes[at] = [0x2F, 0x2E, 0x2D, 0x5F, 0x41, 0x7B, 0x60, 0x3A, 0xC3, 0x00][Int(random.below(10))]
                }
                let fast = Result { () throws(WireError) in try EncodedTransaction(bytes) }
                let reference = Result { () throws(WireError) in try Transaction.decode(bytes) }
                switch (fast, reference) {
                case (.success(let encoded), .success(let decoded)):
                    accepted += 1
                    #expect(encoded.decoded == decoded && encoded.senderKey == BytesKey(decoded.sender)
                        && encoded.kind == decoded.kind && encoded.payload == decoded.payload)
                case (.failure(let fastError), .failure(let referenceError)):
                    refused += 1
                    #expect(fastError.message == referenceError.message)
                default:
                    Issue.record("EncodedTransaction and decode disagree on \(Hex.encode(bytes)): \(fast) vs \(reference)")
                }
            }
        }
        #expect(accepted > 500 && refused > 3_000, "the mutations reach both outcomes: \(accepted) and \(refused)")
    }

    @Test("lengths past their bounds are refused before anything is read past the end")
    func boundedLengths() throws {
        let valid = try Self.samples()[0].encoded
        for bytes: [UInt8] in [[], [1], [1, 0], [2] + valid.dropFirst(), [1, 0xFF, 0xFF] + valid.dropFirst(3),
                               Array(valid.prefix(3 + 12 + 32 + 16 + 1)),
                               [UInt8](repeating: 1, count: Transaction.encodedBytesMax + 1)] {
            #expect(throws: WireError.self) { try EncodedTransaction(bytes) }
        }
    }
}
