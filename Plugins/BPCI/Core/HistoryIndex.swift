import Foundation
import MetanodeWire

/// Accounts' payment history, derived from BPCI's events in finalized blocks. It is an index each node keeps for
/// itself, like a block explorer's, not ledger state: the events it comes from are in the blocks' results, which
/// `resultsRoot` commits to, and keeping a copy in the state tree cost more than the transfers themselves (two new
/// state leaves per payment, each hashed into the tree and stored).
///
/// In the plugin's kv:
///
///     history/next                  u64 the next height to index
///     history/format                u8 2: the chunked layout below (an index without it is rebuilt from height 1)
///     H [20] address u64 last       a chunk: the account's entries up to sequence `last`, `HistoryEntry.byteCount`
///                                   bytes each, at most `chunkEntriesMax`; sequences run 0, 1, 2, … without gaps
///     c [20] address                `AccountProgress`: the account's entry count and the last block it has entries in
///
/// The plugin gathers a few dozen blocks' entries in memory (`HistoryBuffer`) and stores each account's new entries
/// as one chunk. An entry per key made the index a third of the node's RocksDB inserts, two per transfer; a chunk per
/// account per flush makes it a few per cent. A chunk is keyed by its last sequence, so a forward seek to a sequence
/// lands on the chunk holding it.
public enum HistoryIndex {
    public static let nextHeightKey = Array("history/next".utf8)
    public static let formatKey = Array("history/format".utf8)
    public static let format: UInt8 = 2
    /// Entries in one chunk at most (78 KiB): an account that gets more in one flush gets several chunks.
    public static let chunkEntriesMax = 1_024

    public static func chunkKey(_ address: Address, last sequence: UInt64) -> [UInt8] {
        var writer = WireWriter(capacity: 29)
        writer.u8(0x48)
        address.write(to: &writer)
        writer.u64(sequence)
        return writer.bytes
    }

    /// The prefix of all of `address`'s chunks.
    public static func chunkPrefix(_ address: Address) -> [UInt8] { [0x48] + address.bytes }

    public static func progressKey(_ address: Address) -> [UInt8] { [0x63] + address.bytes }

    /// The first byte of every key an index of any layout stores per account: entries (`h`, before chunks), counts
    /// (`n`, before that), chunks (`H`) and progress (`c`).
    public static let accountKeyTags: [UInt8] = [0x68, 0x6E, 0x48, 0x63]

    /// Whether `key` is one of an account's index keys, in this layout or the one before chunks (an entry per key,
    /// `h [20] u64`, and counts, `n [20]`): they are all deleted when the index is rebuilt.
    public static func isAccountKey(_ key: [UInt8]) -> Bool {
        guard !key.starts(with: Array("history/".utf8)) else { return false }
        switch key.first {
        case 0x68, 0x48: return key.count == 1 + Address.byteCount + 8
        case 0x6E, 0x63: return key.count == 1 + Address.byteCount
        default: return false
        }
    }

    /// An account's new entries as chunks of at most `chunkEntriesMax`, each with its last sequence, following the
    /// `count` entries already stored.
    public static func chunks(_ entries: [HistoryEntry], after count: UInt64) -> [(last: UInt64, value: [UInt8])] {
        var encoded: [UInt8] = []
        encoded.reserveCapacity(entries.count * HistoryEntry.byteCount)
        for entry in entries { entry.append(to: &encoded) }
        return chunks(encoded: encoded, after: count)
    }

    /// The same, from the entries already encoded one after another (as `HistoryBuffer` keeps them): a buffer of at
    /// most `chunkEntriesMax` entries is its own chunk, with no copy.
    public static func chunks(encoded: [UInt8], after count: UInt64) -> [(last: UInt64, value: [UInt8])] {
        precondition(encoded.count % HistoryEntry.byteCount == 0, "whole entries")
        let entries = encoded.count / HistoryEntry.byteCount
        if entries <= chunkEntriesMax { return entries == 0 ? [] : [(count + UInt64(entries) - 1, encoded)] }
        var out: [(last: UInt64, value: [UInt8])] = []
        var next = count
        var start = 0
        while start < entries {
            let end = min(start + chunkEntriesMax, entries)
            next += UInt64(end - start)
            out.append((next - 1, Array(encoded[(start * HistoryEntry.byteCount)..<(end * HistoryEntry.byteCount)])))
            start = end
        }
        return out
    }

    /// The history entries a block's events make, in order: for each payment a "sent" entry for the payer (with the
    /// fee the transaction paid, on its first payment) and a "received" one for the payee.
    public static func entries(_ block: BlockEvents) -> [(Address, HistoryEntry)] {
        var out: [(Address, HistoryEntry)] = []
        out.reserveCapacity(block.events.count)
        // A transaction's events are consecutive, so each run of one transaction is taken whole.
        let events = block.events
        var start = 0
        while start < events.count {
            let id = events[start].transaction
            var end = start + 1
            while end < events.count, events[end].transaction == id { end += 1 }
            // The fields are read where they lie in the event's data (its length is checked first), with no reader
            // or array per field: this runs for every payment on every node.
            func u64(_ data: [UInt8], at offset: Int) -> UInt64 {
                data[offset..<(offset + 8)].reduce(0) { $0 << 8 | UInt64($1) }
            }
            // The fee: in the first payment's event; in blocks before it was, in a bpci.fee event ahead of them.
            var fee: UInt64 = 0
            for event in events[start..<end] where event.type == "bpci.fee" && event.data.count == 56 {
                // [20] payer | u64 burned | u64 tip | [20] proposer
                let (burned, tip) = (u64(event.data, at: 20), u64(event.data, at: 28))
                fee = burned.addingReportingOverflow(tip).overflow ? .max : burned + tip
            }
            for event in events[start..<end] where event.type == "bpci.transfer"
                && (event.data.count == BankModule.transferEventBytes || event.data.count == 49) {
                // [20] from | [20] to | u8 denomination | u64 amount | u64 fee (not in blocks before it was)
                let data = event.data
                guard let from = Address(bytes: data[0..<20]), let to = Address(bytes: data[20..<40]),
                      let denomination = Denomination(rawValue: data[40]) else { continue }
                let amount = u64(data, at: 41)
                if data.count == BankModule.transferEventBytes { fee = u64(data, at: 49) }
                out.append((from, HistoryEntry(height: block.height, transaction: id, direction: .sent,
                                               counterparty: to, denomination: denomination, amount: amount, fee: fee)))
                out.append((to, HistoryEntry(height: block.height, transaction: id, direction: .received,
                                             counterparty: from, denomination: denomination, amount: amount, fee: 0)))
                fee = 0  // on the first payment only
            }
            start = end
        }
        return out
    }

    /// A page of an account's history, newest first: at most `BankModule.historyPageMax` entries before sequence
    /// `before` (default: the newest) of the account's `count`, each from `entry` (nil: missing or damaged).
    public static func page(_ address: Address, count: UInt64, before: UInt64? = nil, indexedThrough: UInt64,
                            entry: (_ sequence: UInt64) -> HistoryEntry?) -> Result<[UInt8], ModuleRefusal> {
        var sequence = min(before ?? count, count)
        var entries: [BankModule.HistoryView] = []
        while sequence > 0 && entries.count < BankModule.historyPageMax {
            sequence -= 1
            guard let found = entry(sequence) else {
                return .failure(ModuleRefusal("history entry \(sequence) of \(address) is missing or damaged"))
            }
            entries.append(BankModule.HistoryView(sequence: sequence, entry: found))
        }
        let page = BankModule.HistoryPage(address: address.description, count: count, indexedThroughHeight: indexedThrough,
                                          entries: entries)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(page)).map { .success(Array($0)) }
            ?? .failure(ModuleRefusal("could not encode the history page"))
    }
}

/// What an account's stored history holds: `count` entries, the newest from block `height`. A block at or below
/// `height` is already in it, which makes storing a block again (a replay after a flush that stopped halfway)
/// harmless.
///
///     u64 count | u64 height
public struct AccountProgress: Sendable, Hashable {
    public var count: UInt64
    public var height: UInt64

    public init(count: UInt64, height: UInt64) {
        self.count = count
        self.height = height
    }

    public static let none = AccountProgress(count: 0, height: 0)

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 16)
        writer.u64(count)
        writer.u64(height)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> AccountProgress {
        var reader = WireReader(bytes, context: "history progress")
        let progress = AccountProgress(count: try reader.u64("count"), height: try reader.u64("height"))
        try reader.finish()
        return progress
    }
}

/// A stored chunk: `HistoryIndex`'s entries of one account that end at sequence `last`.
public struct HistoryChunk: Sendable {
    public let last: UInt64
    public let bytes: [UInt8]

    /// nil if `bytes` is no whole number of entries, or more entries than `last` allows.
    public init?(last: UInt64, bytes: [UInt8]) {
        guard !bytes.isEmpty, bytes.count % HistoryEntry.byteCount == 0,
              UInt64(bytes.count / HistoryEntry.byteCount) - 1 <= last else { return nil }
        self.last = last
        self.bytes = bytes
    }

    public var first: UInt64 { last - (UInt64(bytes.count / HistoryEntry.byteCount) - 1) }

    public func contains(_ sequence: UInt64) -> Bool { sequence >= first && sequence <= last }

    /// The entry at `sequence`, if this chunk holds it and it decodes.
    public func entry(_ sequence: UInt64) -> HistoryEntry? {
        guard contains(sequence) else { return nil }
        let offset = Int(sequence - first) * HistoryEntry.byteCount
        return try? HistoryEntry.decode(Array(bytes[offset..<offset + HistoryEntry.byteCount]))
    }
}

/// The entries of the blocks indexed since the last flush, per account, in order; the plugin answers queries from
/// them and the stored chunks together, and stores them every `flushBlocks` blocks or `entriesMax` entries. Each
/// account's are kept encoded, one after another, as a chunk stores them: a block adds bytes to an array rather than
/// entries (each holding its transaction's id) to an array of them, and a flush stores the bytes as they are.
public struct HistoryBuffer: Sendable {
    /// Each account's entries, `HistoryEntry.byteCount` bytes each.
    public private(set) var accounts: [Address: [UInt8]] = [:]
    public private(set) var entryCount = 0
    public private(set) var blockCount = 0

    public init() {}

    /// Adds a block's entries, leaving out those of an account whose stored history already has the block.
    public mutating func add(_ entries: [(Address, HistoryEntry)], height: UInt64,
                             stored: (Address) -> AccountProgress) {
        var skipped: Set<Address> = []
        for (address, entry) in entries {
            // An account already buffered is past its stored history; one that is not is looked up once.
            if accounts[address] == nil {
                if skipped.contains(address) { continue }
                if stored(address).height >= height {
                    skipped.insert(address)
                    continue
                }
            }
            entry.append(to: &accounts[address, default: []])
            entryCount += 1
        }
        blockCount += 1
    }

    /// `address`'s buffered entries, decoded.
    public func entries(of address: Address) -> [HistoryEntry] {
        guard let encoded = accounts[address] else { return [] }
        return stride(from: 0, to: encoded.count, by: HistoryEntry.byteCount).compactMap {
            try? HistoryEntry.decode(Array(encoded[$0..<($0 + HistoryEntry.byteCount)]))
        }
    }

    /// The height of `encoded`'s last entry (a buffered account's newest block).
    public static func lastHeight(_ encoded: [UInt8]) -> UInt64 {
        HistoryEntry.height(inEncoded: encoded, at: encoded.count - HistoryEntry.byteCount)
    }

    public mutating func removeAll() {
        accounts.removeAll(keepingCapacity: true)
        entryCount = 0
        blockCount = 0
    }
}