import Foundation
import MetanodeWire

/// Accounts' payment history, derived from BPCI's events in finalized blocks. It is an index each node keeps for
/// itself, like a block explorer's, not ledger state: the events it comes from are in the blocks' results, which
/// `resultsRoot` commits to, and keeping a copy in the state tree cost more than the transfers themselves (two new
/// state leaves per payment, each hashed into the tree and stored).
///
/// In the plugin's kv:
///
///     history/next                 u64 the next height to index
///     history/stored               u64 entries of that block already stored (only while one is split in batches)
///     h [20] address u64 sequence  a `HistoryEntry`; an account's sequences run 0, 1, 2, … without gaps
///
/// An account's entry count is not stored: `entryCount` finds it from the entries in about 2·log2(count) reads, and
/// the plugin keeps the counts it knows in memory. Storing it cost a kv write per account per block, a quarter of
/// the index's writes. (Indexes written before kept it under `n [20] address`; nothing reads that now.)
public enum HistoryIndex {
    public static let nextHeightKey = Array("history/next".utf8)
    /// How many of the next block's entries are already stored, while a large block is stored in several batches.
    public static let storedEntriesKey = Array("history/stored".utf8)

    /// How many entries `address` has: the first sequence with no entry, found by doubling then bisecting.
    public static func entryCount(_ address: Address, exists: (_ key: [UInt8]) -> Bool) -> UInt64 {
        guard exists(entryKey(address, 0)) else { return 0 }
        var present: UInt64 = 0, absent: UInt64 = 1
        while exists(entryKey(address, absent)) {
            present = absent
            guard absent < UInt64.max / 2 else { return absent + 1 }  // unreachable: 2^63 entries
            absent *= 2
        }
        while absent - present > 1 {
            let middle = present + (absent - present) / 2
            if exists(entryKey(address, middle)) { present = middle } else { absent = middle }
        }
        return absent
    }

    public static func entryKey(_ address: Address, _ sequence: UInt64) -> [UInt8] {
        var writer = WireWriter(capacity: 29)
        writer.u8(0x68)
        writer.fixed(address.bytes, count: Address.byteCount)
        writer.u64(sequence)
        return writer.bytes
    }

    /// The history entries a block's events make, in order: for each payment a "sent" entry for the payer (with the
    /// fee the transaction paid, on its first payment) and a "received" one for the payee.
    public static func entries(_ block: BlockEvents) -> [(Address, HistoryEntry)] {
        var out: [(Address, HistoryEntry)] = []
        out.reserveCapacity(block.events.count)
        // A transaction's events are consecutive, so each run of one transaction is taken whole: its fee, then its
        // payments.
        let events = block.events
        var start = 0
        while start < events.count {
            let id = events[start].transaction
            var end = start + 1
            while end < events.count, events[end].transaction == id { end += 1 }
            var fee: UInt64 = 0
            for event in events[start..<end] where event.type == "bpci.fee" && event.data.count == 56 {
                var reader = WireReader(event.data, context: "bpci.fee")
                _ = try? reader.fixed(Address.byteCount, "payer")
                fee = ((try? reader.u64("burned")) ?? 0) + ((try? reader.u64("tip")) ?? 0)
            }
            for event in events[start..<end] where event.type == "bpci.transfer" && event.data.count == 49 {
                var reader = WireReader(event.data, context: "bpci.transfer")
                guard let fromBytes = try? reader.fixed(Address.byteCount, "from"),
                      let toBytes = try? reader.fixed(Address.byteCount, "to"),
                      let from = Address(bytes: fromBytes), let to = Address(bytes: toBytes),
                      let raw = try? reader.u8("denomination"), let denomination = Denomination(rawValue: raw),
                      let amount = try? reader.u64("amount") else { continue }
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

    /// A page of an account's history, newest first, from `read` (the index's key-value store): at most
    /// `BankModule.historyPageMax` entries before sequence `before` (default: the newest) of the account's `count`.
    public static func page(_ address: Address, count: UInt64, before: UInt64? = nil, indexedThrough: UInt64,
                            read: ([UInt8]) -> [UInt8]?) -> Result<[UInt8], ModuleRefusal> {
        var sequence = min(before ?? count, count)
        var entries: [BankModule.HistoryView] = []
        while sequence > 0 && entries.count < BankModule.historyPageMax {
            sequence -= 1
            guard let raw = read(entryKey(address, sequence)), let entry = try? HistoryEntry.decode(raw) else {
                return .failure(ModuleRefusal("history entry \(sequence) of \(address) is missing or damaged"))
            }
            entries.append(BankModule.HistoryView(sequence: sequence, entry: entry))
        }
        let page = BankModule.HistoryPage(address: address.description, count: count, indexedThroughHeight: indexedThrough,
                                          entries: entries)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(page)).map { .success(Array($0)) }
            ?? .failure(ModuleRefusal("could not encode the history page"))
    }

}
