import BPICore
import MetanodePluginKit
import MetanodeWire

/// BPI's data in its kv namespace. Heights are big-endian u64, so blocks scan in height order.
///
///     b <height>          finalized block (block + certificate)
///     h <hash>            height of the block with that hash
///     t <txid>            u64 height, u32 index of a finalized transaction: written at state checkpoints for the
///                         blocks since the last one. Stores from before that also hold its result after these
///     x <height> <u32 part> the block's transaction ids and results in block order, in parts of at most 8 MiB (a
///                         value may hold 16 MiB): u32 n | n × ([32] id | bytes32 result (TransactionResult
///                         encoding)); a block without transactions has one part with n = 0
///     indexed             u64 height: t keys are written for every block up to it (absent: for every block, as
///                         stores from before checkpointed t keys were)
///     n <sender>          the sender's next nonce (u64), as of the last state checkpoint
///     w <height> <u32 seq> consensus WAL record for a height not yet finalized
///     s <module>/<key>    a module's committed state value, as of the last state checkpoint
///     d <height>          a block's state changes since the last checkpoint (`StateDiff`): written with the block,
///                         folded into the n and s keys and deleted at the next checkpoint
///     r <txid>            a transaction's result, in stores written before results moved into t <txid>
///     v <from height>     the validator set in force from that height on (written when a change is finalized)
///     tip                 u64 height of the last finalized block
///
/// A block's state changes used to go into the n and s keys with the block: a nonce and two balances per transfer,
/// three of a node's four RocksDB inserts per transfer. They now go in as one `d` value per block, and every
/// `checkpointBlocks` blocks the latest value of each key changed since the last checkpoint is written to n and s
/// (a few thousand keys where the blocks wrote tens of thousands). At start the n and s keys are loaded and the d
/// values applied over them in height order; reads of committed state see the changes since the checkpoint first.
///
/// The transaction index went the same way. A t key per transaction, each in a random place in the key space, was
/// most of what a block inserted into RocksDB. Now a block stores its ids and results as one x value (more parts for a
/// block whose results pass 8 MiB), and its t keys wait in memory for the next checkpoint, where they go into RocksDB
/// as one sorted run of thousands (inserting them took a third of the time). At start the t keys of the blocks since
/// then are read back from their x values.
final class ChainStore {
    let kv: KeyValueStore
    /// Blocks between state checkpoints (1: every block writes its changes to n and s, as before checkpoints).
    let checkpointBlocks: Int
    /// A checkpoint comes sooner once this many changed keys, d values and waiting t keys wait, or this many bytes of
    /// d values, so that what waits takes at most a fifth of MN_KV_BATCH_OPS_MAX (100,000) and well under
    /// MN_KV_BATCH_BYTES_MAX (64 MiB) in a checkpoint's batch; the rest is the block's own keys (a t key, a nonce and
    /// a few state writes per transaction). These also bound the memory below.
    static let unsavedEntriesMax = 20_000
    static let unsavedBytesMax = 24 << 20

    /// The state changes of the blocks since the last checkpoint (their d keys), the latest value per key.
    private var unsavedWrites: [BytesKey: [UInt8]?] = [:]
    private var unsavedNonces: [BytesKey: UInt64] = [:]
    private var unsavedHeights: [UInt64] = []
    private var unsavedBytes = 0
    /// The transactions of the blocks since the last checkpoint, whose t keys are not written yet.
    private var unsavedTransactions: [BytesKey: (height: UInt64, index: UInt32)] = [:]
    /// The height through which t keys are written.
    private var indexedThrough: UInt64 = 0

    init(kv: KeyValueStore, checkpointBlocks: Int) {
        precondition(checkpointBlocks >= 1, "checkpointBlocks must be at least 1")
        self.kv = kv
        self.checkpointBlocks = checkpointBlocks
    }

    /// `prefix` and the key's bytes, in one array.
    static func key(_ prefix: UInt8, _ key: BytesKey) -> [UInt8] {
        key.withUnsafeBytes { bytes in
            [UInt8](unsafeUninitializedCapacity: 1 + bytes.count) { buffer, count in
                buffer[0] = prefix
                if bytes.count > 0 {
                    UnsafeMutableRawPointer(buffer.baseAddress! + 1)
                        .copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                }
                count = 1 + bytes.count
            }
        }
    }

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
        try encodedBlock(at: height).map { bytes throws in try FinalizedBlock.decode(bytes) }
    }

    /// The finalized block at `height` as stored (its wire encoding), for those who pass it on: a peer syncing, a
    /// client asking for raw bytes. Decoding and encoding it again was a copy of every transaction on BPI's thread.
    func encodedBlock(at height: UInt64) throws -> [UInt8]? { try kv.get(Self.key(0x62, height)) }

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
        var stored: [UInt8]?  // the t value, once read
        let height: UInt64, index: Int
        if let unsaved = unsavedTransactions[BytesKey(id)] {
            (height, index) = (unsaved.height, Int(unsaved.index))
        } else {
            guard let bytes = try kv.get([0x74] + id) else { return nil }
            var reader = WireReader(bytes, context: "kv transaction index")
            height = try reader.u64("height")
            index = Int(try reader.u32("index"))
            stored = bytes
        }
        if let parts = try resultParts(at: height) {
            let result = try Self.result(in: parts, index: index, id: id, height: height)
            return FinalTransaction(height: height, index: index, result: try TransactionResult.decode(result))
        }
        // A block an earlier version stored: the result after the location in its t key, or in r <txid>.
        if stored == nil { stored = try kv.get([0x74] + id) }
        if let stored, stored.count > Self.locationBytes {
            return FinalTransaction(height: height, index: index,
                                    result: try TransactionResult.decode(Array(stored[Self.locationBytes...])))
        }
        let result = try kv.get([0x72] + id).map { bytes throws in try TransactionResult.decode(bytes) }
        return FinalTransaction(height: height, index: index, result: result)
    }

    /// A transaction key's value before its result: u64 height, u32 index.
    static let locationBytes = 12

    /// The ids and results of the block at `height`, in block order (nil: none stored, for a block an earlier version
    /// stored).
    func blockResults(at height: UInt64) throws -> [(id: [UInt8], result: TransactionResult)]? {
        try resultParts(at: height).map { parts throws in
            try parts.flatMap { part throws in try Self.decodeResults(part, height: height) }.map { entry throws in
                (entry.id, try TransactionResult.decode(entry.result))
            }
        }
    }

    /// The x values of the block at `height`, in order (nil: none).
    private func resultParts(at height: UInt64) throws -> [[UInt8]]? {
        let parts = try kv.scan(prefix: Self.key(0x78, height)).map(\.value)
        return parts.isEmpty ? nil : parts
    }

    static func resultsKey(_ height: UInt64, part: UInt32) -> [UInt8] {
        var writer = WireWriter(capacity: 13)
        writer.u8(0x78)
        writer.u64(height)
        writer.u32(part)
        return writer.bytes
    }

    /// A block's x values: entries in order, a part closed before it would pass `partBytesMax` (a part holds at least
    /// one entry; a result is at most about 0.5 MiB). At least one part, empty for a block without transactions.
    static func encodeResults(ids: [[UInt8]], results: [[UInt8]], partBytesMax: Int = resultsPartBytesMax)
        -> [[UInt8]] {
        precondition(ids.count == results.count, "a result for each id")
        var parts: [[UInt8]] = []
        var start = 0
        repeat {
            var end = start, bytes = 4
            while end < ids.count, end == start || bytes + 36 + results[end].count <= partBytesMax {
                bytes += 36 + results[end].count
                end += 1
            }
            var writer = WireWriter(capacity: bytes)
            writer.u32(UInt32(end - start))
            for index in start..<end {
                writer.fixed(ids[index], count: 32)
                writer.bytes32(results[index])
            }
            parts.append(writer.bytes)
            start = end
        } while start < ids.count
        return parts
    }

    static func decodeResults(_ part: [UInt8], height: UInt64) throws(WireError) -> [(id: [UInt8], result: [UInt8])] {
        var reader = WireReader(part, context: "the results of block \(height)")
        let count = try reader.count32("count", max: Self.resultsPerBlockMax, itemBytesMin: 36)
        var entries: [(id: [UInt8], result: [UInt8])] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            entries.append((try reader.fixed(32, "id"), try reader.bytes32("result", max: Self.resultBytesMax)))
        }
        try reader.finish()
        return entries
    }

    /// The result of transaction `index` of a block from its x values, read past the others without decoding them;
    /// the id there must be `id`.
    static func result(in parts: [[UInt8]], index: Int, id: [UInt8], height: UInt64) throws(WireError) -> [UInt8] {
        var remaining = index
        for part in parts {
            var reader = WireReader(part, context: "the results of block \(height)")
            let count = try reader.count32("count", max: Self.resultsPerBlockMax, itemBytesMin: 36)
            guard remaining < count else {
                remaining -= count
                continue
            }
            for _ in 0..<remaining {
                _ = try reader.fixed(32, "id")
                _ = try reader.bytes32("result", max: Self.resultBytesMax)
            }
            guard try reader.fixed(32, "id") == id else { break }
            return try reader.bytes32("result", max: Self.resultBytesMax)
        }
        throw WireError(.invalidValue, "the results of block \(height) have no transaction \(index) with id "
            + Hex.encode(id))
    }

    /// Bounds for decoding an x value: more transactions than any block can carry, and a result's reason and events
    /// at ledger.h's limits.
    static let resultsPerBlockMax = 1 << 20
    static let resultBytesMax = 1 << 20
    /// An x value's size, at most: half the kv store's 16 MiB per value.
    static let resultsPartBytesMax = 8 << 20

    func nextNonceIfStored(_ sender: [UInt8]) throws -> UInt64? {
        if let unsaved = unsavedNonces[BytesKey(sender)] { return unsaved }
        guard let bytes = try kv.get([0x6E] + sender) else { return nil }
        var reader = WireReader(bytes, context: "kv nonce")
        return try reader.u64("nonce")
    }

    /// The committed ledger state (BPI's nonces and every module's values) as a state tree, and every sender's next
    /// nonce: the last checkpoint's n and s keys with the d values since applied in height order.
    func loadState() throws -> (state: StateTree, nonces: [BytesKey: UInt64]) {
        var state = StateTree()
        var nonces: [BytesKey: UInt64] = [:]
        for pair in try kv.scan(prefix: [0x6E]) {
            let sender = Array(pair.key.dropFirst())
            var reader = WireReader(pair.value, context: "kv nonce")
            nonces[BytesKey(sender)] = try reader.u64("nonce")
            state.set(BlockRules.nonceKey(sender), pair.value)
        }
        for pair in try kv.scan(prefix: [0x73]) { state.set(Array(pair.key.dropFirst()), pair.value) }
        unsavedWrites = [:]
        unsavedNonces = [:]
        unsavedHeights = []
        unsavedBytes = 0
        for pair in try kv.scan(prefix: [0x64]) {
            var reader = WireReader(Array(pair.key.dropFirst()), context: "kv state diff key")
            let height = try reader.u64("height")
            try reader.finish()
            let diff = try StateDiff.decode(pair.value, context: "the state changes of block \(height)")
            for (sender, nonce) in diff.nextNonces {
                nonces[sender] = nonce
                state.set(BlockRules.nonceKey(sender.bytes), BlockRules.nonceValue(nonce))
            }
            for (key, value) in diff.writes { state.set(key.bytes, value) }
            remember(diff, height: height, bytes: pair.value.count)
        }
        try loadTransactionIndex()
        return (state, nonces)
    }

    /// The t keys still to write: those of the blocks after `indexed`, from their x values. A block without them (an
    /// earlier version stored it, or they are lost) gives its ids from its transactions, and its height is kept in
    /// `blocksWithoutResults` for BPI to report.
    private func loadTransactionIndex() throws {
        let tip = try tipHeight()
        unsavedTransactions = [:]
        blocksWithoutResults = []
        indexedThrough = tip
        if let bytes = try kv.get("indexed") {
            var reader = WireReader(bytes, context: "kv indexed")
            indexedThrough = try reader.u64("height")
            try reader.finish()
        }
        guard indexedThrough < tip else { return }
        for height in (indexedThrough + 1)...tip {
            let ids: [[UInt8]]
            if let parts = try resultParts(at: height) {
                ids = try parts.flatMap { part throws in try Self.decodeResults(part, height: height).map(\.id) }
            } else {
                guard let finalized = try block(at: height) else {
                    throw WireError(.truncated, "block \(height) is missing below the tip at \(tip)")
                }
                ids = finalized.block.transactions.compactMap { Transaction.id(ofEncoded: $0) }
                blocksWithoutResults.append(height)
            }
            for (index, id) in ids.enumerated() { unsavedTransactions[BytesKey(id)] = (height, UInt32(index)) }
        }
    }

    /// Blocks after the last written t keys that had no x values at start: their transactions are found, without
    /// results unless an earlier version stored them.
    private(set) var blocksWithoutResults: [UInt64] = []

    /// A module's committed state value by full key: a change since the last checkpoint, else the s key.
    func moduleState(_ key: [UInt8]) throws -> [UInt8]? {
        if let unsaved = unsavedWrites[BytesKey(key)] { return unsaved }
        return try kv.get([0x73] + key)
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
    /// The state changes go in as the block's d value, or, at a checkpoint, with those since the last one into the n
    /// and s keys (the d values deleted in the same batch).
    func commit(_ finalized: FinalizedBlock, effects: BlockRules.Effects, walCount: Int) throws {
        precondition(effects.encodedResults.count == effects.transactionIDs.count, "a result for each transaction")
        let height = finalized.block.header.height
        let diff = StateDiff(nextNonces: effects.nextNonces, writes: effects.writes)
        let diffBytes = diff.encodedCount
        let ids = effects.transactionIDs
        let entries = unsavedWrites.count + unsavedNonces.count + unsavedHeights.count + unsavedTransactions.count
            + diff.writes.count + diff.nextNonces.count + ids.count + 1
        // A block too large for one d value is a checkpoint too.
        // Waiting t keys bring a checkpoint after `checkpointBlocks` blocks even when the blocks since change no
        // state (empty blocks on a heartbeat), so a start never reads back more than that many blocks' x values.
        let waitingSince = unsavedTransactions.isEmpty ? nil : indexedThrough
        let checkpoint = unsavedHeights.count + 1 >= checkpointBlocks || entries >= Self.unsavedEntriesMax
            || unsavedBytes + diffBytes >= Self.unsavedBytesMax || diffBytes > Self.diffBytesMax
            || waitingSince.map { height - $0 >= UInt64(checkpointBlocks) } ?? false
        // With no t key waiting, none to write: the index is complete through this block.
        let indexedAfter = checkpoint || (unsavedTransactions.isEmpty && ids.isEmpty) ? height : indexedThrough
        try kv.batch { batch in
            try batch.put(Self.key(0x62, height), finalized.encoded)
            var heightBytes = WireWriter(capacity: 8)
            heightBytes.u64(height)
            try batch.put([0x68] + finalized.block.hash, heightBytes.bytes)
            for (part, value) in Self.encodeResults(ids: ids, results: effects.encodedResults).enumerated() {
                try batch.put(Self.resultsKey(height, part: UInt32(part)), value)
            }
            if let changed = effects.writes[BytesKey(ValidatorSetChange.stateKey)], let encoded = changed {
                try batch.put(Self.key(0x76, height + 1), encoded)
            }
            if checkpoint {
                // The latest value of each key: the unsaved ones this block leaves alone, then the block's.
                func write(_ key: BytesKey, _ value: [UInt8]?) throws {
                    let stored = Self.key(0x73, key)
                    if let value { try batch.put(stored, value) } else { try batch.delete(stored) }
                }
                for (key, value) in unsavedWrites where diff.writes[key] == nil { try write(key, value) }
                for (key, value) in diff.writes { try write(key, value) }
                for (sender, nonce) in unsavedNonces where diff.nextNonces[sender] == nil {
                    try batch.put(Self.key(0x6E, sender), BlockRules.nonceValue(nonce))
                }
                for (sender, nonce) in diff.nextNonces {
                    try batch.put(Self.key(0x6E, sender), BlockRules.nonceValue(nonce))
                }
                for unsavedHeight in unsavedHeights { try batch.delete(Self.key(0x64, unsavedHeight)) }
                // The t keys of these blocks, sorted by the batch: one run where the blocks' inserts were scattered.
                func index(_ key: [UInt8], _ height: UInt64, _ index: UInt32) throws {
                    var location = WireWriter(capacity: Self.locationBytes)
                    location.u64(height)
                    location.u32(index)
                    try batch.put(key, location.bytes)
                }
                for (id, location) in unsavedTransactions {
                    try index(Self.key(0x74, id), location.height, location.index)
                }
                for (position, id) in ids.enumerated() { try index([0x74] + id, height, UInt32(position)) }
            } else if !diff.isEmpty {
                try batch.put(Self.key(0x64, height), diff.encoded)
            }
            var indexed = WireWriter(capacity: 8)
            indexed.u64(indexedAfter)
            try batch.put("indexed", indexed.bytes)
            try batch.put("tip", heightBytes.bytes)
            for seq in 0..<walCount { try batch.delete(Self.walKey(height, UInt32(seq))) }
        }
        if checkpoint {
            unsavedWrites.removeAll(keepingCapacity: true)
            unsavedNonces.removeAll(keepingCapacity: true)
            unsavedHeights.removeAll(keepingCapacity: true)
            unsavedBytes = 0
            unsavedTransactions.removeAll(keepingCapacity: true)
        } else {
            if !diff.isEmpty { remember(diff, height: height, bytes: diffBytes) }
            for (position, id) in ids.enumerated() { unsavedTransactions[BytesKey(id)] = (height, UInt32(position)) }
        }
        indexedThrough = indexedAfter
    }

    /// A d value at most this size: well under the kv store's 16 MiB per value.
    static let diffBytesMax = 8 << 20

    private func remember(_ diff: StateDiff, height: UInt64, bytes: Int) {
        unsavedWrites.merge(diff.writes) { $1 }
        unsavedNonces.merge(diff.nextNonces) { $1 }
        unsavedHeights.append(height)
        unsavedBytes += bytes
    }

    static func walKey(_ height: UInt64, _ seq: UInt32) -> [UInt8] {
        var writer = WireWriter(capacity: 13)
        writer.u8(0x77)
        writer.u64(height)
        writer.u32(seq)
        return writer.bytes
    }

    /// Appends `records` to the height's WAL from `seq` on, in one write (one fsync with `storage.syncWrites`, as
    /// `chain genesis` sets for validators) where consensus persists
    /// several records in a row (a prepared block, then the commit it sends).
    func appendWAL(height: UInt64, seq: Int, _ records: [QBFTRecord]) throws {
        if records.count == 1 { return try kv.put(Self.walKey(height, UInt32(seq)), records[0].encoded) }
        try kv.batch { batch in
            for (offset, record) in records.enumerated() {
                try batch.put(Self.walKey(height, UInt32(seq + offset)), record.encoded)
            }
        }
    }

    func walRecords(height: UInt64) throws -> [QBFTRecord] {
        try kv.scan(prefix: Self.key(0x77, height)).map { pair throws -> QBFTRecord in
            try QBFTRecord.decode(pair.value)
        }
    }
}
