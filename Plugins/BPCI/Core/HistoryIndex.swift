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
///     n [20] address               u64 how many entries the account has
///     h [20] address u64 sequence  a `HistoryEntry`
public enum HistoryIndex {
    public static let nextHeightKey = Array("history/next".utf8)
    /// How many of the next block's entries are already stored, while a large block is stored in several batches.
    public static let storedEntriesKey = Array("history/stored".utf8)

    public static func countKey(_ address: Address) -> [UInt8] { [0x6E] + address.bytes }

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
        var feePaid: [[UInt8]: UInt64] = [:]
        for event in block.events where event.type == "bpci.fee" {
            guard event.data.count == 56 else { continue }
            var reader = WireReader(event.data, context: "bpci.fee")
            _ = try? reader.fixed(Address.byteCount, "payer")
            let burned = (try? reader.u64("burned")) ?? 0, tip = (try? reader.u64("tip")) ?? 0
            feePaid[event.transaction] = burned + tip
        }
        var out: [(Address, HistoryEntry)] = []
        var feeRecorded: Set<[UInt8]> = []
        for event in block.events where event.type == "bpci.transfer" {
            guard event.data.count == 49 else { continue }
            let id = event.transaction
            var reader = WireReader(event.data, context: "bpci.transfer")
            guard let fromBytes = try? reader.fixed(Address.byteCount, "from"),
                  let toBytes = try? reader.fixed(Address.byteCount, "to"),
                  let from = Address(bytes: fromBytes), let to = Address(bytes: toBytes),
                  let raw = try? reader.u8("denomination"), let denomination = Denomination(rawValue: raw),
                  let amount = try? reader.u64("amount") else { continue }
            let fee = feeRecorded.insert(event.transaction).inserted ? feePaid[event.transaction] ?? 0 : 0
            out.append((from, HistoryEntry(height: block.height, transaction: id, direction: .sent, counterparty: to,
                                           denomination: denomination, amount: amount, fee: fee)))
            out.append((to, HistoryEntry(height: block.height, transaction: id, direction: .received,
                                         counterparty: from, denomination: denomination, amount: amount, fee: 0)))
        }
        return out
    }

    /// A page of an account's history, newest first, from `read` (the index's key-value store): at most
    /// `BankModule.historyPageMax` entries before sequence `before` (default: the newest).
    public static func page(_ address: Address, before: UInt64? = nil, indexedThrough: UInt64,
                            read: ([UInt8]) -> [UInt8]?) -> Result<[UInt8], ModuleRefusal> {
        let count = read(countKey(address)).flatMap(StoredU64.decode) ?? 0
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
