import BPICore
import MetanodePluginKit
import MetanodeWire

/// BPI's data in its kv namespace. Heights are big-endian u64, so blocks scan in height order.
///
///     b <height>          finalized block (block + certificate)
///     h <hash>            height of the block with that hash
///     t <txid>            u64 height, u32 index of a finalized transaction, then its result (TransactionResult
///                         encoding): one key per transaction, written with the block
///     n <sender>          the sender's next nonce (u64)
///     w <height> <u32 seq> consensus WAL record for a height not yet finalized
///     s <module>/<key>    a module's committed state value
///     r <txid>            a transaction's result, in stores written before results moved into t <txid>
///     v <from height>     the validator set in force from that height on (written when a change is finalized)
///     tip                 u64 height of the last finalized block
struct ChainStore {
    let kv: KeyValueStore

    static func key(_ prefix: UInt8, _ height: UInt64) -> [UInt8] {
        var writer = WireWriter(capacity: 9)
        writer.u8(prefix)
        writer.u64(height)
        return writer.bytes
    }

    func tipHeight() throws -> UInt64 {
        guard let bytes = try kv.get("tip") else { return 0 }
        var reader = WireReader(bytes, context: "kv tip")
        return try reader.u64("height")
    }

    func block(at height: UInt64) throws -> FinalizedBlock? {
        guard let bytes = try kv.get(Self.key(0x62, height)) else { return nil }
        return try FinalizedBlock.decode(bytes)
    }

    func height(ofBlock hash: [UInt8]) throws -> UInt64? {
        guard let bytes = try kv.get([0x68] + hash) else { return nil }
        var reader = WireReader(bytes, context: "kv block index")
        return try reader.u64("height")
    }

    struct FinalTransaction {
        var height: UInt64
        var index: Int
        var result: TransactionResult?
    }

    /// Where finalized transaction `id` is, and its result.
    func finalTransaction(_ id: [UInt8]) throws -> FinalTransaction? {
        guard let bytes = try kv.get([0x74] + id) else { return nil }
        var reader = WireReader(bytes, context: "kv transaction index")
        let height = try reader.u64("height"), index = Int(try reader.u32("index"))
        let result = bytes.count > Self.locationBytes
            ? try TransactionResult.decode(Array(bytes[Self.locationBytes...]))
            : try kv.get([0x72] + id).map { bytes throws in try TransactionResult.decode(bytes) }
        return FinalTransaction(height: height, index: index, result: result)
    }

    /// A transaction key's value before its result: u64 height, u32 index.
    static let locationBytes = 12

    func nextNonceIfStored(_ sender: [UInt8]) throws -> UInt64? {
        guard let bytes = try kv.get([0x6E] + sender) else { return nil }
        var reader = WireReader(bytes, context: "kv nonce")
        return try reader.u64("nonce")
    }

    /// The state tree of the committed ledger state: BPI's nonces and every module's values.
    func loadState() throws -> StateTree {
        var state = StateTree()
        for pair in try kv.scan(prefix: [0x6E]) {
            state.set(BlockRules.nonceKey(Array(pair.key.dropFirst())), pair.value)
        }
        for pair in try kv.scan(prefix: [0x73]) { state.set(Array(pair.key.dropFirst()), pair.value) }
        return state
    }

    func moduleState(_ key: [UInt8]) throws -> [UInt8]? { try kv.get([0x73] + key) }

    func loadNonces() throws -> [BytesKey: UInt64] {
        var nonces: [BytesKey: UInt64] = [:]
        for pair in try kv.scan(prefix: [0x6E]) {
            var reader = WireReader(pair.value, context: "kv nonce")
            nonces[BytesKey(Array(pair.key.dropFirst()))] = try reader.u64("nonce")
        }
        return nonces
    }

    /// The validator set in force at `height`, if it changed at or before it (nil: the genesis set).
    func validators(at height: UInt64) throws -> ValidatorSet? {
        var latest: [UInt8]?
        try kv.scan(prefix: [0x76]) { pair in
            var reader = WireReader(Array(pair.key.dropFirst()), context: "kv validator history")
            guard let from = try? reader.u64("height"), from <= height else { return false }
            latest = pair.value
            return true
        }
        return try latest.map { bytes throws in try ValidatorSet.decode(bytes) }
    }

    /// Stores a finalized block, its indexes and its effects, moves the tip and drops the height's WAL, atomically.
    func commit(_ finalized: FinalizedBlock, effects: BlockRules.Effects, walCount: Int) throws {
        let height = finalized.block.header.height
        try kv.batch { batch in
            try batch.put(Self.key(0x62, height), finalized.encoded)
            var heightBytes = WireWriter(capacity: 8)
            heightBytes.u64(height)
            try batch.put([0x68] + finalized.block.hash, heightBytes.bytes)
            for (index, (id, result)) in zip(effects.transactionIDs, effects.results).enumerated() {
                let encoded = result.encoded
                var value = WireWriter(capacity: Self.locationBytes + encoded.count)
                value.u64(height)
                value.u32(UInt32(index))
                value.fixed(encoded, count: encoded.count)
                try batch.put([0x74] + id, value.bytes)
            }
            if let changed = effects.writes[BytesKey(ValidatorSetChange.stateKey)], let encoded = changed {
                try batch.put(Self.key(0x76, height + 1), encoded)
            }
            for (key, value) in effects.writes {
                if let value { try batch.put([0x73] + key.bytes, value) } else { try batch.delete([0x73] + key.bytes) }
            }
            for (sender, nonce) in effects.nextNonces {
                var value = WireWriter(capacity: 8)
                value.u64(nonce)
                try batch.put([0x6E] + sender.bytes, value.bytes)
            }
            try batch.put("tip", heightBytes.bytes)
            for seq in 0..<walCount { try batch.delete(Self.walKey(height, UInt32(seq))) }
        }
    }

    static func walKey(_ height: UInt64, _ seq: UInt32) -> [UInt8] {
        var writer = WireWriter(capacity: 13)
        writer.u8(0x77)
        writer.u64(height)
        writer.u32(seq)
        return writer.bytes
    }

    func appendWAL(height: UInt64, seq: Int, _ record: QBFTRecord) throws {
        try kv.put(Self.walKey(height, UInt32(seq)), record.encoded)
    }

    func walRecords(height: UInt64) throws -> [QBFTRecord] {
        try kv.scan(prefix: Self.key(0x77, height)).map { pair throws -> QBFTRecord in
            try QBFTRecord.decode(pair.value)
        }
    }
}
