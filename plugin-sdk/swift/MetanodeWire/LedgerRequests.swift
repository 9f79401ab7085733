/// The bus requests BPI answers for plugins that submit transactions of their own without going through HTTP (such
/// as DockLock's receipt batches), in the wire encoding (plugin-sdk/docs/wire.md, "BPI: bus requests"):
///
///     "bpi.tx.submit"   transaction wire bytes            → TxSubmitReply   (the mempool's admission, then gossip)
///     "bpi.tx.status"   [32] transaction id               → TxStatus        (final, waiting, or unknown)
///     "bpi.tx.nonce"    [32] sender key                   → LedgerAccount   (chain id, height, next nonces)
///     "bpi.query"       LedgerQuery                       → LedgerQueryReply (a module's query over committed state)
///
/// BPI answers them on its own thread with the same code as its HTTP routes. A request that does not decode gets
/// a reply saying why (a refused submission or query, an invalid status request), never silence; a nonce request
/// whose payload is no key gets the nonces of a sender with no transactions.
public enum LedgerRequests {
    public static let submitTopic = "bpi.tx.submit"
    public static let statusTopic = "bpi.tx.status"
    public static let nonceTopic = "bpi.tx.nonce"
    public static let queryTopic = "bpi.query"
    /// Refusal reasons and query paths are cut to this many bytes.
    public static let reasonBytesMax = 1_024
    public static let pathBytesMax = 1_024
    public static let moduleBytesMax = 32
    /// A query's request data and answer: at most this many bytes (a bus message holds 4 MiB).
    public static let queryDataBytesMax = 1 << 20

    /// `text` cut to at most `max` UTF-8 bytes, at a character boundary.
    static func clip(_ text: String, _ max: Int) -> String {
        guard text.utf8.count > max else { return text }
        var clipped = ""
        for character in text {
            guard clipped.utf8.count + character.utf8.count <= max else { break }
            clipped.append(character)
        }
        return clipped
    }
}

/// The answer to "bpi.tx.submit": `bool accepted | [32] id | string16 reason`. The id is the transaction's (32 zero
/// bytes if the bytes did not decode); the reason is empty when accepted and says why otherwise, as `POST /tx` does
/// ("nonce 3 already used, next is 5", "bpci refused it: insufficient FLX: …").
public struct TxSubmitReply: Sendable, Hashable {
    public var accepted: Bool
    public var id: [UInt8]
    public var reason: String

    public init(accepted: Bool, id: [UInt8], reason: String) {
        precondition(id.count == WireCrypto.hashBytes, "a transaction id is 32 bytes")
        self.accepted = accepted
        self.id = id
        self.reason = LedgerRequests.clip(reason, LedgerRequests.reasonBytesMax)
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 35 + reason.utf8.count)
        writer.bool(accepted)
        writer.fixed(id, count: WireCrypto.hashBytes)
        writer.string16(reason)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> TxSubmitReply {
        var reader = WireReader(bytes, context: "bpi.tx.submit reply")
        let reply = TxSubmitReply(accepted: try reader.bool("accepted"), id: try reader.fixed(32, "id"),
                                  reason: try reader.string16("reason", max: LedgerRequests.reasonBytesMax))
        try reader.finish()
        return reply
    }
}

/// The answer to "bpi.tx.status": where a transaction is.
///
///     u8 state (0 unknown, 1 waiting in the mempool, 2 final, 3 invalid request) | final: u64 height | u32 index
///     | u32 status | string16 reason | invalid: string16 reason
///
/// A final transaction's `status` is 0 when its module delivered it, else the MN_ERR_* code with the module's reason
/// (a failed transaction stays in its block). Unknown: never seen, or dropped from the mempool (a fee its sender could
/// no longer pay, a restart).
public enum TxStatus: Sendable, Hashable {
    case unknown
    case waiting
    case final(height: UInt64, index: UInt32, status: UInt32, reason: String)
    /// The request was not a transaction id.
    case invalid(String)

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 32)
        switch self {
        case .unknown: writer.u8(0)
        case .waiting: writer.u8(1)
        case .final(let height, let index, let status, let reason):
            writer.u8(2)
            writer.u64(height)
            writer.u32(index)
            writer.u32(status)
            writer.string16(LedgerRequests.clip(reason, LedgerRequests.reasonBytesMax))
        case .invalid(let reason):
            writer.u8(3)
            writer.string16(LedgerRequests.clip(reason, LedgerRequests.reasonBytesMax))
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> TxStatus {
        var reader = WireReader(bytes, context: "bpi.tx.status reply")
        let status: TxStatus
        switch try reader.u8("state") {
        case 0: status = .unknown
        case 1: status = .waiting
        case 2:
            status = .final(height: try reader.u64("height"), index: try reader.u32("index"),
                            status: try reader.u32("status"),
                            reason: try reader.string16("reason", max: LedgerRequests.reasonBytesMax))
        case 3: status = .invalid(try reader.string16("reason", max: LedgerRequests.reasonBytesMax))
        case let other:
            throw WireError(.invalidValue, "bpi.tx.status reply.state is \(other); it is 0, 1, 2 or 3")
        }
        try reader.finish()
        return status
    }
}

/// The answer to "bpi.tx.nonce": what a sender needs to sign its next transaction.
///
///     string16 chainID | u64 height (the tip) | u64 committed (next nonce after finalized transactions)
///     | u64 next (after those waiting in this node's mempool too, without a gap)
public struct LedgerAccount: Sendable, Hashable {
    public var chainID: String
    public var height: UInt64
    public var committedNonce: UInt64
    public var nextNonce: UInt64

    public init(chainID: String, height: UInt64, committedNonce: UInt64, nextNonce: UInt64) {
        self.chainID = chainID
        self.height = height
        self.committedNonce = committedNonce
        self.nextNonce = nextNonce
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 26 + chainID.utf8.count)
        writer.string16(chainID)
        writer.u64(height)
        writer.u64(committedNonce)
        writer.u64(nextNonce)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> LedgerAccount {
        var reader = WireReader(bytes, context: "bpi.tx.nonce reply")
        let account = LedgerAccount(
            chainID: try reader.string16("chainID", max: Transaction.chainIDBytesMax), height: try reader.u64("height"),
            committedNonce: try reader.u64("committed"), nextNonce: try reader.u64("next"))
        try reader.finish()
        return account
    }
}

/// A "bpi.query" request: `string16 module | string16 path | bytes32 data`, what
/// `GET /v1/plugins/bpi/query/<module>/<path>?data=<hex>` asks.
public struct LedgerQuery: Sendable, Hashable {
    public var module: String
    public var path: String
    public var data: [UInt8]

    public init(module: String, path: String, data: [UInt8] = []) {
        self.module = module
        self.path = path
        self.data = data
    }

    public var encoded: [UInt8] {
        precondition(module.utf8.count <= LedgerRequests.moduleBytesMax
                     && path.utf8.count <= LedgerRequests.pathBytesMax
                     && data.count <= LedgerRequests.queryDataBytesMax, "a ledger query is over its limits")
        var writer = WireWriter(capacity: 8 + module.utf8.count + path.utf8.count + data.count)
        writer.string16(module)
        writer.string16(path)
        writer.bytes32(data)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> LedgerQuery {
        var reader = WireReader(bytes, context: "bpi.query")
        let query = LedgerQuery(module: try reader.string16("module", max: LedgerRequests.moduleBytesMax),
                                path: try reader.string16("path", max: LedgerRequests.pathBytesMax),
                                data: try reader.bytes32("data", max: LedgerRequests.queryDataBytesMax))
        try reader.finish()
        return query
    }
}

/// The answer to "bpi.query": `bool answered | bytes32 answer` or `bool 0 | string16 reason` ("no module 'bpci' is
/// registered", the module's refusal).
public enum LedgerQueryReply: Sendable, Hashable {
    case answer([UInt8])
    case refused(String)

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 64)
        switch self {
        case .answer(let bytes):
            writer.bool(true)
            writer.bytes32(bytes)
        case .refused(let reason):
            writer.bool(false)
            writer.string16(LedgerRequests.clip(reason, LedgerRequests.reasonBytesMax))
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> LedgerQueryReply {
        var reader = WireReader(bytes, context: "bpi.query reply")
        let reply: LedgerQueryReply = try reader.bool("answered")
            ? .answer(try reader.bytes32("answer", max: LedgerRequests.queryDataBytesMax))
            : .refused(try reader.string16("reason", max: LedgerRequests.reasonBytesMax))
        try reader.finish()
        return reply
    }
}
