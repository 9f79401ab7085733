import Foundation
import MetanodeWire

/// One node's receipt hashes, in sequence order, for the ledger: the payload of a `docklock/receipts` transaction
/// (plugin-sdk/docs/wire.md, "DockLock: receipt batches on the ledger").
///
///     u8 version (1) | [32] node | [64] authorization | u64 firstSequence | u16 count (1…hashesMax)
///     | count × [32] receipt hash
///
/// Receipt `firstSequence + i` has hash `i`. The transaction's sender is not the node key (the host signs with that
/// only under its plugin scope, which no transaction envelope accepts) but a ledger key DockLock keeps beside it;
/// `authorization` is the node key's signature naming that ledger key, so only the key a node names can record
/// receipts in its name: `NodeSignature` under plugin "docklock" over `authorizationMessage(ledgerKey:)`.
public struct ReceiptBatch: Sendable, Hashable {
    public static let version: UInt8 = 1
    /// The most receipt hashes one batch carries (32 KiB of hashes: half a transaction payload).
    public static let hashesMax = 1_024
    public static let authorizationDomain = "metanode/docklock/ledger-key/v1"
    /// The encoding's size without the hashes.
    public static let headerBytes = 1 + 32 + 64 + 8 + 2

    /// The node's public key: the receipts' signer.
    public var node: [UInt8]
    public var authorization: [UInt8]
    public var firstSequence: UInt64
    public var hashes: [[UInt8]]

    public init(node: [UInt8], authorization: [UInt8], firstSequence: UInt64, hashes: [[UInt8]]) {
        self.node = node
        self.authorization = authorization
        self.firstSequence = firstSequence
        self.hashes = hashes
    }

    /// What the node key signs (through the host's `ed25519_sign`, which adds its plugin scope) to name the ledger
    /// key that submits its batches: `"metanode/docklock/ledger-key/v1" 0x00 ledgerKey`.
    public static func authorizationMessage(ledgerKey: [UInt8]) -> [UInt8] {
        Array(authorizationDomain.utf8) + [0] + ledgerKey
    }

    /// Whether `authorization` is the node's signature naming `sender` as its ledger key.
    public func authorizes(sender: [UInt8]) -> Bool {
        sender.count == WireCrypto.publicKeyBytes && authorization.count == WireCrypto.signatureBytes
            && NodeSignature.verify(signature: authorization, nodeKey: node, plugin: ExecutionReceipt.signingPlugin,
                                    message: Self.authorizationMessage(ledgerKey: sender))
    }

    /// The sequence of the batch's last receipt.
    public var lastSequence: UInt64 { firstSequence + UInt64(hashes.count) - 1 }

    public var encoded: [UInt8] {
        precondition((1...Self.hashesMax).contains(hashes.count), "a batch holds 1...\(Self.hashesMax) hashes")
        var writer = WireWriter(capacity: Self.headerBytes + 32 * hashes.count)
        writer.u8(Self.version)
        writer.fixed(node, count: WireCrypto.publicKeyBytes)
        writer.fixed(authorization, count: WireCrypto.signatureBytes)
        writer.u64(firstSequence)
        writer.u16(UInt16(hashes.count))
        for hash in hashes { writer.fixed(hash, count: WireCrypto.hashBytes) }
        return writer.bytes
    }

    /// Decodes and checks the shape: the version, 1…`hashesMax` hashes, sequences that do not run past the last a
    /// chain can use, no hash twice. Errors name the field ("receipt batch.count is 0; a batch holds 1…1024").
    public static func decode(_ bytes: [UInt8]) throws(DockLockError) -> ReceiptBatch {
        guard bytes.count <= headerBytes + 32 * hashesMax else {
            throw DockLockError(.limit, "a receipt batch is \(bytes.count) bytes; at most "
                + "\(headerBytes + 32 * hashesMax) (\(hashesMax) hashes)")
        }
        var reader = WireReader(bytes, context: "receipt batch")
        let batch = try ExecutionReceipt.wire { () throws(WireError) -> ReceiptBatch in
            let version = try reader.u8("version")
            guard version == Self.version else {
                throw WireError(.invalidValue, "receipt batch version \(version) is unknown; this build reads version "
                    + "\(Self.version)")
            }
            let node = try reader.fixed(WireCrypto.publicKeyBytes, "node")
            let authorization = try reader.fixed(WireCrypto.signatureBytes, "authorization")
            let first = try reader.u64("firstSequence")
            let count = try reader.count16("hashes", max: hashesMax, itemBytesMin: WireCrypto.hashBytes)
            guard count >= 1 else {
                throw WireError(.invalidValue, "receipt batch.count is 0; a batch holds 1…\(hashesMax)")
            }
            var hashes: [[UInt8]] = []
            hashes.reserveCapacity(count)
            for index in 0..<count { hashes.append(try reader.fixed(WireCrypto.hashBytes, "hashes[\(index)]")) }
            try reader.finish()
            return ReceiptBatch(node: node, authorization: authorization, firstSequence: first, hashes: hashes)
        }
        guard batch.firstSequence <= ExecutionReceipt.sequenceEnd - UInt64(batch.hashes.count) else {
            throw DockLockError(.invalid, "receipt batch sequences \(batch.firstSequence)… run past the last a chain "
                + "can use (\(ExecutionReceipt.sequenceEnd - 1))")
        }
        var seen: [[UInt8]: Int] = [:]
        for (index, hash) in batch.hashes.enumerated() {
            if let earlier = seen.updateValue(index, forKey: hash) {
                throw DockLockError(.invalid, "receipt \(receiptShortHex(hash)) is in the batch twice "
                    + "(hashes[\(earlier)] and hashes[\(index)])")
            }
        }
        return batch
    }
}

/// Where the ledger recorded a receipt hash: the value of `"r/" ‖ hash` in DockLock's ledger state, so a state
/// proof of that key proves the receipt was recorded, when, and as whose.
///
///     u64 height | [32] node | u64 sequence
public struct LedgerReceiptRecord: Sendable, Hashable {
    public static let encodedBytes = 8 + 32 + 8

    /// The height of the block that recorded it.
    public var height: UInt64
    public var node: [UInt8]
    public var sequence: UInt64

    public init(height: UInt64, node: [UInt8], sequence: UInt64) {
        self.height = height
        self.node = node
        self.sequence = sequence
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: Self.encodedBytes)
        writer.u64(height)
        writer.fixed(node, count: WireCrypto.publicKeyBytes)
        writer.u64(sequence)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(DockLockError) -> LedgerReceiptRecord {
        var reader = WireReader(bytes, context: "ledger receipt record")
        return try ExecutionReceipt.wire { () throws(WireError) -> LedgerReceiptRecord in
            let record = LedgerReceiptRecord(height: try reader.u64("height"),
                                             node: try reader.fixed(WireCrypto.publicKeyBytes, "node"),
                                             sequence: try reader.u64("sequence"))
            try reader.finish()
            return record
        }
    }
}

/// A module's view of the ledger state during one handler call (ledger.h's state_get and state_put): its own keys,
/// without the "docklock/" prefix BPI stores them under.
public protocol ReceiptLedgerState {
    func get(_ key: [UInt8]) -> [UInt8]?
    mutating func put(_ key: [UInt8], _ value: [UInt8])
}

/// DockLock's ledger module ("docklock" on BPI's `bpi.ledger`): what each handler does, over any
/// `ReceiptLedgerState`. Pure and deterministic: the transaction, the block height and state reads only.
///
///   kind    docklock/receipts   payload: `ReceiptBatch`; sender: the ledger key the batch's authorization names
///   state   r/<receipt hash>    `LedgerReceiptRecord` (height, node, sequence); a hash is recorded once
///   event   docklock.receipts   [32] node | u64 firstSequence | u16 count
///   query   receipt/<hex hash>  JSON: {"receipt", "recorded", and if recorded "height", "node", "sequence"}
///           receipts            data: n × [32] hash (n ≤ `ReceiptBatch.hashesMax`); answer: n × (bool recorded
///                               | record if recorded)
public enum ReceiptLedgerModule {
    public static let name = "docklock"
    public static let receiptsKind = "docklock/receipts"
    public static let eventType = "docklock.receipts"

    /// The module's state key of a receipt hash.
    public static func key(_ receiptHash: [UInt8]) -> [UInt8] { Array("r/".utf8) + receiptHash }

    /// The full ledger state key (BPI's `GET /state/<hex>` and its proofs): "docklock/r/" ‖ hash.
    public static func stateKey(_ receiptHash: [UInt8]) -> [UInt8] { Array("\(name)/".utf8) + key(receiptHash) }

    /// Admission over committed state: nil admits, else the refusal.
    public static func check(sender: [UInt8], kind: String, payload: [UInt8], state: some ReceiptLedgerState)
        -> DockLockError? {
        switch validate(sender: sender, kind: kind, payload: payload, state: state) {
        case .success: nil
        case .failure(let error): error
        }
    }

    /// Execution in the block at `height`: records every hash, or none (a refusal fails the transaction). Returns the
    /// event's data.
    public static func deliver(sender: [UInt8], kind: String, payload: [UInt8], height: UInt64,
                               state: inout some ReceiptLedgerState) -> Result<[UInt8], DockLockError> {
        let batch: ReceiptBatch
        switch validate(sender: sender, kind: kind, payload: payload, state: state) {
        case .success(let valid): batch = valid
        case .failure(let error): return .failure(error)
        }
        for (index, hash) in batch.hashes.enumerated() {
            let record = LedgerReceiptRecord(height: height, node: batch.node,
                                             sequence: batch.firstSequence + UInt64(index))
            state.put(key(hash), record.encoded)
        }
        var event = WireWriter(capacity: 42)
        event.fixed(batch.node, count: WireCrypto.publicKeyBytes)
        event.u64(batch.firstSequence)
        event.u16(UInt16(batch.hashes.count))
        return .success(event.bytes)
    }

    /// The checks admission and execution share: the kind, the payload's shape, the authorization of the sender, and
    /// that no hash is recorded already.
    static func validate(sender: [UInt8], kind: String, payload: [UInt8], state: some ReceiptLedgerState)
        -> Result<ReceiptBatch, DockLockError> {
        guard kind == receiptsKind else {
            return .failure(DockLockError(.invalid, "docklock handles \(receiptsKind) only, not '\(kind)'"))
        }
        let batch: ReceiptBatch
        do { batch = try ReceiptBatch.decode(payload) } catch { return .failure(error) }
        guard batch.authorizes(sender: sender) else {
            return .failure(DockLockError(.integrity, "the batch's authorization is not node "
                + "\(receiptShortHex(batch.node))'s signature naming the sender \(receiptShortHex(sender)) as its "
                + "ledger key: only that key records the node's receipts"))
        }
        for (index, hash) in batch.hashes.enumerated() {
            guard let stored = state.get(key(hash)) else { continue }
            let at = (try? LedgerReceiptRecord.decode(stored)).map { " at height \($0.height)" } ?? ""
            return .failure(DockLockError(.exists, "receipt \(receiptShortHex(hash)) (sequence "
                + "\(batch.firstSequence + UInt64(index))) is already recorded\(at)"))
        }
        return .success(batch)
    }

    /// A read-only question over committed state.
    public static func query(path: String, data: [UInt8], state: some ReceiptLedgerState)
        -> Result<[UInt8], DockLockError> {
        if path.hasPrefix("receipt/") {
            let text = String(path.dropFirst("receipt/".count))
            guard text.utf8.count == 64, let hash = Hex.decode(text) else {
                return .failure(DockLockError(.invalid, "'\(text.prefix(80))' is not a receipt hash (64 hex digits)"))
            }
            var view = ReceiptView(receipt: text, recorded: false)
            if let stored = state.get(key(hash)) {
                do {
                    let record = try LedgerReceiptRecord.decode(stored)
                    view = ReceiptView(receipt: text, recorded: true, height: record.height,
                                       node: Hex.encode(record.node), sequence: record.sequence,
                                       stateKey: Hex.encode(stateKey(hash)))
                } catch { return .failure(DockLockError(.integrity, "the stored record of \(text): \(error.message)")) }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return .success(Array((try? encoder.encode(view)) ?? Data("{}".utf8)))
        }
        if path == "receipts" {
            guard data.count % WireCrypto.hashBytes == 0, data.count / WireCrypto.hashBytes <= ReceiptBatch.hashesMax
            else {
                return .failure(DockLockError(.invalid, "receipts takes up to \(ReceiptBatch.hashesMax) 32-byte "
                    + "hashes, not \(data.count) bytes"))
            }
            var writer = WireWriter(capacity: data.count / 32 * (1 + LedgerReceiptRecord.encodedBytes))
            for start in stride(from: 0, to: data.count, by: WireCrypto.hashBytes) {
                let stored = state.get(key(Array(data[start..<start + WireCrypto.hashBytes])))
                writer.bool(stored != nil)
                if let stored { writer.raw(stored) }
            }
            return .success(writer.bytes)
        }
        return .failure(DockLockError(.notFound, "docklock answers receipt/<hex hash> and receipts; not '\(path)'"))
    }

    /// The answer to `receipts`: for each hash asked, its record or nil.
    public static func decodeRecords(_ answer: [UInt8], count: Int) throws(DockLockError) -> [LedgerReceiptRecord?] {
        var reader = WireReader(answer, context: "docklock receipts answer")
        return try ExecutionReceipt.wire { () throws(WireError) -> [LedgerReceiptRecord?] in
            var records: [LedgerReceiptRecord?] = []
            for index in 0..<count {
                guard try reader.bool("[\(index)].recorded") else {
                    records.append(nil)
                    continue
                }
                var record = WireReader(try reader.fixed(LedgerReceiptRecord.encodedBytes, "[\(index)]"),
                                        context: "ledger receipt record")
                records.append(LedgerReceiptRecord(height: try record.u64("height"),
                                                   node: try record.fixed(32, "node"),
                                                   sequence: try record.u64("sequence")))
            }
            try reader.finish()
            return records
        }
    }

    struct ReceiptView: Encodable {
        var receipt: String
        var recorded: Bool
        var height: UInt64?
        var node: String?
        var sequence: UInt64?
        var stateKey: String?
    }
}
