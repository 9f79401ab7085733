// BPCI: Metanode's economy, as a ledger module on BPI ("bpi.ledger" 1.1, plugin-sdk/include/metanode/ledger.h).
// The rules are BPCICore's (`BankModule`); this file adapts them to the C table and keeps the history index.
//
//   kinds     bpci/transfer, bpci/multi-send, bpci/mint (refused for every key)
//   fees      every non-BPI transaction's fee in FLX: the base fee burned, the rest to the block's proposer
//   genesis   modules.bpci: starting balances and the fee market (BankGenesis)
//   queries   GET /v1/plugins/bpi/query/bpci/balance/<address> | supply | fees       (ledger state, via BPI)
//   GET  /history/<address>[?before=N]   payments, newest first, from this node's index of finalized blocks
//   bus  bpi.stream.events (subscribed)  each finalized block's events feed the index; "bpi.blocks.events"
//                                        requests replay the blocks it missed (after a restart, or a gap)
import BPCICore
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodeWire

public final class BPCI: Plugin {
    public static let name = BankModule.name
    public static let version = "0.1.0"

    let context: PluginContext
    /// The next block height the history index needs.
    private(set) var nextHeight: UInt64
    /// Of that block: its events received so far (parts arrive in order), and how many of its history entries are
    /// already stored (a block too large for one kv batch is stored in several, with this as the cursor).
    private var pendingEvents: [BlockEvents.Event] = []
    private var storedEntries: UInt64
    private var catchingUp = false
    let indexed: Counter
    /// History entries per kv batch (each also updates a count): well under MN_KV_BATCH_OPS_MAX.
    static let entriesPerBatchMax = 20_000
    /// Accounts' entry counts, so an account active in block after block is not looked up in kv each time (see
    /// `HistoryIndex.entryCount`). Only this plugin writes entries, and the cache takes new counts only after the
    /// batch with those entries commits.
    private var historyCounts: [Address: UInt64] = [:]
    static let cachedHistoryCountsMax = 1 << 17

    public init(context: PluginContext) throws {
        self.context = context
        let service = try context.services.lookup(MN_LEDGER_SERVICE, major: MN_LEDGER_VERSION_MAJOR, minMinor: 1)
        guard let ledger = service.bound(to: mn_ledger_api.self) else {
            throw PluginError(MN_ERR_VERSION, "bpi.ledger's table is \(service.size) bytes; BPCI needs ledger 1.1",
                              function: "service_lookup")
        }
        nextHeight = try context.kv.get(HistoryIndex.nextHeightKey).flatMap(StoredU64.decode) ?? 1
        storedEntries = try context.kv.get(HistoryIndex.storedEntriesKey).flatMap(StoredU64.decode) ?? 0
        indexed = try context.metrics.counter("history_blocks_indexed_total",
                                              help: "Finalized blocks whose events the history index has taken in")
        let status = ledger.pointee.register_module(ledger, LedgerModule.make(ledger: ledger))
        guard status == MN_OK else {
            throw PluginError(status, status == MN_ERR_EXISTS
                ? "another module is registered as 'bpci' or already takes the fees" : "register_module failed",
                function: "register_module")
        }
        _ = try context.bus.subscribe("bpi.stream.events")
        try context.http.route("GET", "/history/*") { [unowned self] request in
            let text = String(request.path.dropFirst("/history/".count))
            let address: Address
            do throws(WireError) { address = try Address.parse(text) } catch {
                return .json(["error": error.message], status: 400)
            }
            var before: UInt64?
            if let raw = request.queryItem("before") {
                guard let value = UInt64(raw) else { return .json(["error": "before must be a sequence number"], status: 400) }
                before = value
            }
            let kv = context.kv
            let count: UInt64
            do throws(PluginError) { count = try historyCount(address) } catch {
                return .json(["error": "history of \(address): \(error.message)"], status: 500)
            }
            switch HistoryIndex.page(address, count: count, before: before, indexedThrough: nextHeight - 1,
                                     read: { (try? kv.get($0)) ?? nil }) {
            case .success(let json): return .bytes(json, contentType: "application/json")
            case .failure(let refusal): return .json(["error": refusal.reason], status: 500)
            }
        }
        context.log.info("registered ledger module bpci (transfers, multi-sends, FLX fees); history indexed through "
            + "height \(nextHeight - 1)")
    }

    public func start() throws { catchUp() }

    public func receive(_ message: BusMessage) {
        guard message.topic == "bpi.stream.events", message.sender == "bpi",
              let part = try? BlockEvents.decode(message.payload) else { return }
        take(part)
    }

    /// Takes the next part in order; a gap (missed blocks or parts) asks BPI to replay from where the index is.
    /// Returns whether the part was the one expected.
    @discardableResult
    private func take(_ part: BlockEvents) -> Bool {
        guard part.height == nextHeight, Int(part.firstEvent) == pendingEvents.count else {
            if part.height > nextHeight || (part.height == nextHeight && Int(part.firstEvent) > pendingEvents.count) {
                catchUp()
            }
            return false
        }
        pendingEvents += part.events
        if part.isLastPart { index(BlockEvents(height: part.height, events: pendingEvents)) }
        return true
    }

    /// Asks BPI for the stored blocks' events from where the index is, until it answers with none.
    private func catchUp() {
        guard !catchingUp else { return }
        catchingUp = true
        var from = WireWriter(capacity: 12)
        from.u64(nextHeight)
        from.u32(UInt32(pendingEvents.count))
        do {
            try context.bus.request("bpi.blocks.events", from.bytes) { [weak self] result in
                guard let self else { return }
                catchingUp = false
                switch result {
                case .success(let reply):
                    guard let parts = try? BlockEvents.decodeReplay(reply) else {
                        context.log.warn("history index: could not read BPI's block events from height \(nextHeight)")
                        return
                    }
                    var progressed = false
                    for part in parts where take(part) { progressed = true }
                    if progressed { catchUp() }
                case .failure(let error):
                    context.log.warn("history index: replay from height \(nextHeight) failed: \(error.message)")
                }
            }
        } catch {
            catchingUp = false
            context.log.warn("history index: cannot ask BPI for blocks from \(nextHeight): \(error.message)")
        }
    }

    private func historyCount(_ address: Address) throws(PluginError) -> UInt64 {
        if let count = historyCounts[address] { return count }
        var failure: PluginError?
        let count = HistoryIndex.entryCount(address) { key in
            do throws(PluginError) { return try context.kv.get(key) != nil } catch {
                failure = error
                return false
            }
        }
        if let failure { throw failure }
        if historyCounts.count >= Self.cachedHistoryCountsMax { historyCounts.removeAll(keepingCapacity: true) }
        historyCounts[address] = count
        return count
    }

    /// Adds one block's payments to the index, in kv batches of at most `entriesPerBatchMax` entries; the last also
    /// moves `nextHeight` past the block. Each batch stores its cursor, so a restart resumes where it stopped.
    private func index(_ block: BlockEvents) {
        let entries = HistoryIndex.entries(block)
        do {
            var done = Int(min(storedEntries, UInt64(entries.count)))
            repeat {
                let chunk = entries[done..<min(done + Self.entriesPerBatchMax, entries.count)]
                var counts: [Address: UInt64] = [:]
                for (address, _) in chunk where counts[address] == nil {
                    counts[address] = try historyCount(address)
                }
                let last = chunk.endIndex == entries.count
                try context.kv.batch { batch in
                    for (address, entry) in chunk {
                        let sequence = counts[address]!
                        try batch.put(HistoryIndex.entryKey(address, sequence), entry.encoded)
                        counts[address] = sequence + 1
                    }
                    if last {
                        try batch.put(HistoryIndex.nextHeightKey, StoredU64.encode(block.height + 1))
                        try batch.delete(HistoryIndex.storedEntriesKey)
                    } else {
                        try batch.put(HistoryIndex.storedEntriesKey, StoredU64.encode(UInt64(chunk.endIndex)))
                    }
                }
                if historyCounts.count + counts.count > Self.cachedHistoryCountsMax {
                    historyCounts.removeAll(keepingCapacity: true)
                }
                historyCounts.merge(counts) { $1 }
                done = chunk.endIndex
                storedEntries = last ? 0 : UInt64(done)
            } while done < entries.count
            nextHeight = block.height + 1
            indexed.increment()
        } catch {
            context.log.error("history index: could not store block \(block.height): \(error)")
        }
        pendingEvents = []  // on failure the block is taken again from a replay
    }
}

/// The C side: a module table per registration, each with its own `user_data` (a simulation runs several nodes, so
/// several BPI instances, in one process). BPI may call the handlers for the life of the process, so the table and
/// its context are never freed (one small allocation per plugin start).
enum LedgerModule {
    /// What the handlers need: the ledger API of the BPI instance the module registered with.
    final class Context: @unchecked Sendable {  // immutable
        let api: UnsafePointer<mn_ledger_api>
        init(api: UnsafePointer<mn_ledger_api>) { self.api = api }
    }

    /// The module's name as the static bytes ledger.h asks for (written once, never freed).
    nonisolated(unsafe) static let moduleName: UnsafeMutablePointer<UInt8> = {
        let bytes = Array(BankModule.name.utf8)
        let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count)
        pointer.initialize(from: bytes, count: bytes.count)
        return pointer
    }()

    static func make(ledger: UnsafePointer<mn_ledger_api>) -> UnsafePointer<mn_ledger_module> {
        let context = Unmanaged.passRetained(Context(api: ledger)).toOpaque()
        let module = UnsafeMutablePointer<mn_ledger_module>.allocate(capacity: 1)
        module.initialize(to: mn_ledger_module(
            struct_size: UInt32(MemoryLayout<mn_ledger_module>.size),
            name: mn_str(ptr: moduleName, len: BankModule.name.utf8.count),
            user_data: context,
            check: { userData, state, tx in
                LedgerModule.run(userData, state) { view in
                    BankModule.check(LedgerModule.transaction(tx), state: view).map { .failure($0) } ?? .success([])
                }
            },
            deliver: { userData, state, tx in
                LedgerModule.run(userData, state) { view in BankModule.deliver(LedgerModule.transaction(tx), state: &view) }
            },
            begin_block: nil,
            end_block: { userData, state, block in
                // ledger 1.1 counts the block's transactions; BPCI registers only with 1.1 (minMinor: 1).
                let count = block.map { $0.pointee.struct_size >= UInt32(MemoryLayout<mn_ledger_block>.size)
                    ? $0.pointee.transaction_count : 0 } ?? 0
                return LedgerModule.run(userData, state) { view in
                    BankModule.endBlock(transactions: count, state: &view).map { .failure($0) } ?? .success([])
                }
            },
            query: { userData, state, path, request in
                guard let userData, let state else { return MN_ERR_INVALID_ARGUMENT }
                let context = Unmanaged<Context>.fromOpaque(userData).takeUnretainedValue()
                let view = StateView(api: context.api, state: state)
                switch BankModule.query(path: path.string, request: request.array, state: view) {
                case .success(let answer):
                    answer.withMNBytes { context.api.pointee.answer(state, $0) }
                    return MN_OK
                case .failure(let refusal):
                    refusal.reason.withMNBytes { context.api.pointee.reject(state, $0) }
                    return MN_ERR_NOT_FOUND
                }
            },
            init_chain: { userData, state, section in
                LedgerModule.run(userData, state) { view in
                    BankModule.initChain(section.array, state: &view).map { .failure($0) } ?? .success([])
                }
            },
            charge_fee: { userData, state, tx, block in
                LedgerModule.run(userData, state) { view in
                    BankModule.chargeFee(LedgerModule.transaction(tx), proposer: block.map { $0.pointee.proposer.array },
                                         state: &view)
                }
            }))
        return UnsafePointer(module)
    }

    /// Runs a handler over the call's state: events are emitted, a refusal is rejected with its reason.
    static func run(_ userData: UnsafeMutableRawPointer?, _ state: OpaquePointer?,
                    _ body: (inout StateView) -> Result<[ModuleEvent], ModuleRefusal>) -> mn_status {
        guard let userData, let state else { return MN_ERR_INVALID_ARGUMENT }
        let api = Unmanaged<Context>.fromOpaque(userData).takeUnretainedValue().api
        var view = StateView(api: api, state: state)
        switch body(&view) {
        case .success(let events):
            for event in events {
                let status = event.type.withMNBytes { type in
                    event.data.withMNBytes { api.pointee.emit_event(state, type, $0) }
                }
                guard status == MN_OK else { return status }
            }
            return view.failure ?? MN_OK
        case .failure(let refusal):
            refusal.reason.withMNBytes { api.pointee.reject(state, $0) }
            return MN_ERR_DENIED
        }
    }

    static func transaction(_ tx: UnsafePointer<mn_ledger_tx>?) -> ModuleTransaction {
        guard let tx = tx?.pointee else { return ModuleTransaction(id: [], sender: [], nonce: 0, fee: 0, kind: "", payload: []) }
        return ModuleTransaction(id: tx.id.array, sender: tx.sender.array, nonce: tx.nonce, fee: tx.fee,
                                 kind: tx.kind.string, payload: tx.payload.array)
    }
}

typealias StateView = LedgerStateView
extension LedgerStateView: ModuleState {}
