import DockLockCore
import Foundation
import MetanodePluginKit
import MetanodeWire

/// Receipts in the node's kv, one atomic batch per receipt:
///   r/<sequence u64 BE>          the signed receipt (encoding + 64-byte signature)
///   h/<receipt hash>             sequence u64 BE
///   c/<container id>             sequence u64 BE
///   p/<sequence u64 BE>          for --deterministic runs: what `verify` needs that the receipt only hashes
///                                (the environment and stdin), as JSON
///   head                         next sequence u64 BE + last hash (32)
/// and, with a ledger, ReceiptAnchor's: a/<sequence u64 BE>, ledger/next, ledger/flight.
enum ReceiptStore {
    static let headKey = Array("head".utf8)
    static let listLimitMax = 1000

    static func receiptKey(_ sequence: UInt64) -> [UInt8] { Array("r/".utf8) + StoredU64.encode(sequence) }
    static func hashKey(_ hash: [UInt8]) -> [UInt8] { Array("h/".utf8) + hash }
    static func containerKey(_ id: String) -> [UInt8] { Array("c/".utf8) + Array(id.utf8) }
    static func replayKey(_ sequence: UInt64) -> [UInt8] { Array("p/".utf8) + StoredU64.encode(sequence) }

    static func store(_ signed: SignedReceipt, head: ReceiptChain.State, replay: Replay?, kv: KeyValueStore) throws {
        let sequence = StoredU64.encode(signed.receipt.sequence)
        try kv.batch { batch in
            if let replay { try batch.put(replayKey(signed.receipt.sequence), Array(try JSONEncoder().encode(replay))) }
            try batch.put(receiptKey(signed.receipt.sequence), signed.encoded)
            try batch.put(hashKey(signed.hash), sequence)
            try batch.put(containerKey(signed.receipt.containerID), sequence)
            try batch.put(headKey, StoredU64.encode(head.nextSequence) + head.lastHash)
        }
    }

    static func replay(_ sequence: UInt64, kv: KeyValueStore) throws -> Replay? {
        guard let bytes = try kv.get(replayKey(sequence)) else { return nil }
        return try JSONDecoder().decode(Replay.self, from: Data(bytes))
    }

    static func decodeHead(_ bytes: [UInt8], node: [UInt8]) -> ReceiptChain.State? {
        guard bytes.count == 8 + WireCrypto.hashBytes, let next = StoredU64.decode(Array(bytes.prefix(8))) else { return nil }
        return ReceiptChain.State(node: node, nextSequence: next, lastHash: Array(bytes.suffix(WireCrypto.hashBytes)))
    }

    static func load(_ sequence: UInt64, kv: KeyValueStore) throws -> SignedReceipt? {
        guard let bytes = try kv.get(receiptKey(sequence)) else { return nil }
        return try SignedReceipt.decode(bytes)
    }

    /// A receipt by sequence number, receipt hash (64 hex) or container id.
    static func find(_ reference: String, kv: KeyValueStore) throws -> SignedReceipt? {
        if let sequence = UInt64(reference) { return try load(sequence, kv: kv) }
        if reference.count == 64, let hash = Hex.decode(reference),
           let stored = try kv.get(hashKey(hash)), let sequence = StoredU64.decode(stored)
        {
            return try load(sequence, kv: kv)
        }
        if let stored = try kv.get(containerKey(reference)), let sequence = StoredU64.decode(stored) {
            return try load(sequence, kv: kv)
        }
        return nil
    }

    static func list(after: UInt64?, limit: Int, kv: KeyValueStore) throws -> [SignedReceipt] {
        let start = receiptKey(after.map { $0 &+ 1 } ?? 0)
        var stored: [[UInt8]] = []
        try kv.scan(prefix: Array("r/".utf8), start: start) { entry in
            stored.append(entry.value)
            return stored.count < limit
        }
        return try stored.map { bytes throws(DockLockError) in try SignedReceipt.decode(bytes) }
    }
}

/// The inputs of a run its receipt records only as hashes.
struct Replay: Codable, Sendable {
    var env: [String]
    /// Base64.
    var stdin: String
}
