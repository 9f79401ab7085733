import MetanodeWire

/// What executing one transaction produced. Its encoding is a leaf of the block's results root:
///
///     u32 status (0 ok, else an MN_ERR_* code) | string16 reason | u16 n | n × (string16 type | bytes32 data)
public struct TransactionResult: Sendable, Hashable {
    public struct Event: Sendable, Hashable {
        public var type: String
        public var data: [UInt8]

        public init(type: String, data: [UInt8]) {
            self.type = type
            self.data = data
        }
    }

    public var status: UInt32
    public var reason: String
    public var events: [Event]

    public static let accepted = TransactionResult(status: 0, reason: "", events: [])

    public init(status: UInt32, reason: String, events: [Event]) {
        self.status = status
        self.reason = reason
        self.events = events
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 16)
        writer.u32(status)
        writer.string16(reason)
        writer.u16(UInt16(events.count))
        for event in events {
            writer.string16(event.type)
            writer.bytes32(event.data)
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> TransactionResult {
        var reader = WireReader(bytes, context: "transaction result")
        let status = try reader.u32("status")
        let reason = try reader.string16("reason", max: 1024)
        let count = try reader.count16("events", max: 1024, itemBytesMin: 6)
        var events: [Event] = []
        for index in 0..<count {
            events.append(Event(type: try reader.string16("events[\(index)].type", max: 256),
                                data: try reader.bytes32("events[\(index)].data", max: 1 << 20)))
        }
        try reader.finish()
        return TransactionResult(status: status, reason: reason, events: events)
    }

    public static func resultsRoot(_ results: [TransactionResult]) -> [UInt8] {
        resultsRoot(encoded: results.map(\.encoded))
    }

    /// The root over results already encoded: a block's results are encoded once, for the root and for the store.
    public static func resultsRoot(encoded: [[UInt8]]) -> [UInt8] {
        MerkleTree.root(leafDigests: encoded.map(MerkleTree.leafDigest))
    }
}

/// The block as modules see it.
public struct BlockContext: Sendable, Hashable {
    public var height: UInt64
    public var timestampMs: UInt64
    public var proposer: [UInt8]

    public init(height: UInt64, timestampMs: UInt64, proposer: [UInt8]) {
        self.height = height
        self.timestampMs = timestampMs
        self.proposer = proposer
    }
}

/// What running a block's transactions through the modules produced: a result per transaction, and the state
/// writes (full state keys; nil deletes) to commit with the block. Keys are `BytesKey`s, hashed once when a handler
/// wrote them, so the block's checks, commit and read cache never hash them byte by byte again.
public struct Execution: Sendable {
    public var results: [TransactionResult]
    public var writes: [BytesKey: [UInt8]?]
    /// The size of the block's write set after each transaction, in order (the block's begin_block writes counted
    /// from the first), so that a proposer whose block writes too much can keep the transactions that fit. Empty
    /// when the executor does not measure it: the proposer then halves its block until the writes fit.
    public var writesAfterEach: [WritesSize]
    /// What the modules' init_chain wrote (height 1 only): the genesis state, bounded by the genesis file, not by the
    /// block's writes bound, which counts only what comes after it.
    public var genesisWrites: WritesSize

    public init(results: [TransactionResult], writes: [BytesKey: [UInt8]?], writesAfterEach: [WritesSize] = [],
                genesisWrites: WritesSize = .zero) {
        self.results = results
        self.writes = writes
        self.writesAfterEach = writesAfterEach
        self.genesisWrites = genesisWrites
    }

    /// No modules: every transaction is accepted and writes nothing.
    public static func noModules(_ count: Int) -> Execution {
        Execution(results: Array(repeating: .accepted, count: count), writes: [:])
    }
}

/// How much a set of state writes stores: its keys, and their bytes (each key's, plus its value's; a delete stores
/// the key alone).
public struct WritesSize: Sendable, Hashable, CustomStringConvertible {
    public var keys: Int
    public var bytes: Int

    public init(keys: Int, bytes: Int) {
        self.keys = keys
        self.bytes = bytes
    }

    public static let zero = WritesSize(keys: 0, bytes: 0)

    public init(of writes: [BytesKey: [UInt8]?]) {
        self = .zero
        for (key, value) in writes { self.change(key, from: nil, to: value) }
    }

    /// `key` went from `old` (nil: absent from the set) to `new` (nil: absent; .some(nil): a delete).
    public mutating func change(_ key: BytesKey, from old: [UInt8]??, to new: [UInt8]??) {
        if let old {
            keys -= 1
            bytes -= key.count + (old?.count ?? 0)
        }
        if let new {
            keys += 1
            bytes += key.count + (new?.count ?? 0)
        }
    }

    public static func + (a: WritesSize, b: WritesSize) -> WritesSize {
        WritesSize(keys: a.keys + b.keys, bytes: a.bytes + b.bytes)
    }

    /// What `a` has beyond `b`, on each count (zero where it has less).
    public static func - (a: WritesSize, b: WritesSize) -> WritesSize {
        WritesSize(keys: max(a.keys - b.keys, 0), bytes: max(a.bytes - b.bytes, 0))
    }

    /// Whether this fits within `limit` on both counts.
    public func fits(_ limit: WritesSize) -> Bool { keys <= limit.keys && bytes <= limit.bytes }

    public var description: String { "\(keys) keys of \(bytes) bytes" }
}

/// Runs a block's transactions (in order, after their nonces are checked) and returns what they did, or why the
/// block is invalid (a module's end_block refused it).
/// The transactions come as their checked bytes, and their ids in the same order.
public typealias BlockExecutor = (BlockContext, [EncodedTransaction], [[UInt8]]) -> Result<Execution, BlockProblem>
