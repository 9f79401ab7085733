import DockLockCore
import Foundation
import MetanodeWire
import Testing

/// The ledger module's state as a dictionary.
struct MemoryLedgerState: ReceiptLedgerState {
    var values: [[UInt8]: [UInt8]] = [:]
    func get(_ key: [UInt8]) -> [UInt8]? { values[key] }
    mutating func put(_ key: [UInt8], _ value: [UInt8]) { values[key] = value }
}

@Suite("Receipt batches on the ledger: the encoding and the docklock module's rules")
struct ReceiptLedgerTests {
    static let node = ReceiptFixture.node
    static let ledgerKey = Ed25519Signer(seed: WireCrypto.domainHash("docklock-ledger-key", []))

    /// The node's authorization of `ledgerKey`, signed as the host's ed25519_sign would for plugin "docklock".
    static func authorization(of key: [UInt8] = ledgerKey.publicKey, by signer: Ed25519Signer = node) -> [UInt8] {
        signer.sign(NodeSignature.signingBytes(plugin: "docklock",
                                               message: ReceiptBatch.authorizationMessage(ledgerKey: key)))
    }

    static func hashes(_ count: Int, from start: Int = 0) -> [[UInt8]] {
        (start..<start + count).map { WireCrypto.domainHash("receipt", [UInt8(truncatingIfNeeded: $0), UInt8($0 >> 8)]) }
    }

    static func batch(first: UInt64 = 10, hashes: [[UInt8]] = hashes(3)) -> ReceiptBatch {
        ReceiptBatch(node: node.publicKey, authorization: authorization(), firstSequence: first, hashes: hashes)
    }

    static func refusal(_ body: () throws(DockLockError) -> Void) -> String? {
        do { try body() } catch { return error.message }
        return nil
    }

    // MARK: Encoding

    @Test("a batch encodes as version, node, authorization, first sequence, count and hashes, and decodes back")
    func roundTrip() throws {
        let batch = Self.batch()
        let bytes = batch.encoded
        #expect(bytes.count == ReceiptBatch.headerBytes + 3 * 32)
        #expect(bytes[0] == 1)
        #expect(Array(bytes[1..<33]) == Self.node.publicKey)
        #expect(Array(bytes[97..<105]) == StoredU64.encode(10))
        #expect(Array(bytes[105..<107]) == [0, 3])
        #expect(Array(bytes[107..<139]) == batch.hashes[0])
        #expect(try ReceiptBatch.decode(bytes) == batch)
        #expect(batch.lastSequence == 12)
    }

    @Test("malformed batches are refused naming what is wrong", arguments: [
        ("empty", "receipt batch.count is 0"),
        ("version", "receipt batch version 2 is unknown"),
        ("trailing", "receipt batch has 1 byte(s) after its last field"),
        ("short", "receipt batch.hashes claims 3 items but only 56 bytes remain"),
        ("twice", "is in the batch twice (hashes[0] and hashes[2])"),
        ("overflow", "run past the last a chain can use"),
    ])
    func malformed(_ problem: String, _ expected: String) throws {
        var bytes = Self.batch().encoded
        switch problem {
        case "empty": bytes = Array(bytes.prefix(ReceiptBatch.headerBytes - 2)) + [0, 0]
        case "version": bytes[0] = 2
        case "trailing": bytes.append(0)
        case "short": bytes.removeLast(40)
        case "twice": bytes = Self.batch(hashes: Self.hashes(2) + Self.hashes(1)).encoded
        default: bytes = Self.batch(first: UInt64.max - 2).encoded
        }
        let message = Self.refusal { () throws(DockLockError) in _ = try ReceiptBatch.decode(bytes) }
        #expect(message?.contains(expected) == true, "\(message ?? "accepted")")
    }

    @Test("a batch holds at most hashesMax hashes; more is refused before anything is read")
    func bounded() throws {
        let full = Self.batch(hashes: Self.hashes(ReceiptBatch.hashesMax))
        #expect(try ReceiptBatch.decode(full.encoded).hashes.count == 1_024)
        var over = full.encoded + [UInt8](repeating: 7, count: 32)
        over[105] = 0x04
        over[106] = 0x01
        let message = Self.refusal { () throws(DockLockError) in _ = try ReceiptBatch.decode(over) }
        #expect(message?.contains("at most 32875") == true, "\(message ?? "accepted")")
    }

    @Test("the authorization names one ledger key: another sender, or another node's signature, does not pass")
    func authorization() throws {
        let batch = Self.batch()
        #expect(batch.authorizes(sender: Self.ledgerKey.publicKey))
        #expect(!batch.authorizes(sender: ReceiptFixture.stranger.publicKey))
        var forged = batch
        forged.authorization = Self.authorization(by: ReceiptFixture.stranger)
        #expect(!forged.authorizes(sender: Self.ledgerKey.publicKey))
    }

    // MARK: The module

    @Test("deliver records every hash with the block height, node and sequence, and emits node, first and count")
    func deliverRecords() throws {
        var state = MemoryLedgerState()
        let batch = Self.batch()
        let event = try ReceiptLedgerModule.deliver(sender: Self.ledgerKey.publicKey, kind: "docklock/receipts",
                                                    payload: batch.encoded, height: 42, state: &state).get()
        #expect(event == Self.node.publicKey + StoredU64.encode(10) + [0, 3])
        #expect(state.values.count == 3)
        for (index, hash) in batch.hashes.enumerated() {
            let stored = try #require(state.get(Array("r/".utf8) + hash))
            #expect(try LedgerReceiptRecord.decode(stored)
                == LedgerReceiptRecord(height: 42, node: Self.node.publicKey, sequence: 10 + UInt64(index)))
        }
        #expect(ReceiptLedgerModule.stateKey(batch.hashes[0]) == Array("docklock/r/".utf8) + batch.hashes[0])
    }

    @Test("a hash recorded already is refused at admission and in a block, with its sequence and height")
    func duplicatesRefused() throws {
        var state = MemoryLedgerState()
        let batch = Self.batch()
        _ = ReceiptLedgerModule.deliver(sender: Self.ledgerKey.publicKey, kind: "docklock/receipts",
                                        payload: batch.encoded, height: 7, state: &state)
        let overlapping = Self.batch(first: 12, hashes: [batch.hashes[2]] + Self.hashes(2, from: 50))
        let admission = ReceiptLedgerModule.check(sender: Self.ledgerKey.publicKey, kind: "docklock/receipts",
                                                  payload: overlapping.encoded, state: state)
        #expect(admission?.message.hasSuffix("(sequence 12) is already recorded at height 7") == true,
                "\(admission?.message ?? "admitted")")
        let before = state.values
        let replay = ReceiptLedgerModule.deliver(sender: Self.ledgerKey.publicKey, kind: "docklock/receipts",
                                                 payload: batch.encoded, height: 8, state: &state)
        guard case .failure(let error) = replay else { Issue.record("a replayed batch was delivered"); return }
        #expect(error.code == .exists && error.message.contains("(sequence 10) is already recorded at height 7"))
        #expect(state.values == before, "nothing written")
    }

    @Test("admission refuses a sender the node did not name, another kind, and a malformed payload")
    func admissionRefusals() throws {
        let state = MemoryLedgerState()
        let payload = Self.batch().encoded
        func check(_ sender: [UInt8], _ kind: String, _ payload: [UInt8]) -> String? {
            ReceiptLedgerModule.check(sender: sender, kind: kind, payload: payload, state: state)?.message
        }
        #expect(check(Self.ledgerKey.publicKey, "docklock/receipts", payload) == nil)
        #expect(check(ReceiptFixture.stranger.publicKey, "docklock/receipts", payload)?
            .contains("signature naming the sender") == true)
        #expect(check(Self.ledgerKey.publicKey, "docklock/other", payload)
            == "docklock handles docklock/receipts only, not 'docklock/other'")
        #expect(check(Self.ledgerKey.publicKey, "docklock/receipts", [1, 2, 3])?.contains("receipt batch") == true)
    }

    @Test("queries say whether and where a hash is recorded, one by hex or many in binary")
    func queries() throws {
        var state = MemoryLedgerState()
        let batch = Self.batch()
        _ = ReceiptLedgerModule.deliver(sender: Self.ledgerKey.publicKey, kind: "docklock/receipts",
                                        payload: batch.encoded, height: 5, state: &state)
        let hex = Hex.encode(batch.hashes[1])
        let found = try JSONSerialization.jsonObject(with: Data(
            try ReceiptLedgerModule.query(path: "receipt/\(hex)", data: [], state: state).get())) as? [String: Any]
        #expect(found?["recorded"] as? Bool == true && found?["height"] as? Int == 5 && found?["sequence"] as? Int == 11)
        #expect(found?["node"] as? String == Hex.encode(Self.node.publicKey))
        let missing = Hex.encode(Self.hashes(1, from: 99)[0])
        let absent = try JSONSerialization.jsonObject(with: Data(
            try ReceiptLedgerModule.query(path: "receipt/\(missing)", data: [], state: state).get())) as? [String: Any]
        #expect(absent?["recorded"] as? Bool == false && absent?["height"] == nil)

        let asked = [batch.hashes[0], Self.hashes(1, from: 99)[0], batch.hashes[2]]
        let answer = try ReceiptLedgerModule.query(path: "receipts", data: asked.flatMap { $0 }, state: state).get()
        let records = try ReceiptLedgerModule.decodeRecords(answer, count: 3)
        #expect(records.map { $0?.sequence } == [10, nil, 12])

        #expect(throws: DockLockError.self) {
            try ReceiptLedgerModule.query(path: "receipt/xyz", data: [], state: state).get()
        }
        let unknown = ReceiptLedgerModule.query(path: "nodes", data: [], state: state)
        guard case .failure(let error) = unknown else { Issue.record("answered"); return }
        #expect(error.message == "docklock answers receipt/<hex hash> and receipts; not 'nodes'")
    }
}
