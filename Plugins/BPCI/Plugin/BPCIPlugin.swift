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
    /// The next block height the history index needs (the blocks before it are stored or in `buffer`).
    private(set) var nextHeight: UInt64
    /// The next height as stored: where the index starts again if what `buffer` holds is lost.
    private var storedNextHeight: UInt64
    /// Of block `nextHeight`: its events received so far (parts arrive in order).
    private var pendingEvents: [BlockEvents.Event] = []
    /// The entries of the blocks since the last flush.
    private var buffer = HistoryBuffer()
    private var catchingUp = false
    let indexed: Counter
    /// The buffer is stored after this many blocks (config `historyFlushBlocks`), or `bufferedEntriesMax` entries.
    let flushBlocks: Int
    static let defaultFlushBlocks = 32
    static let bufferedEntriesMax = 50_000
    /// Operations per kv batch when storing the buffer (config `historyBatchOperations`): well under
    /// MN_KV_BATCH_OPS_MAX by default.
    let operationsPerBatchMax: Int
    static let defaultOperationsPerBatchMax = 40_000
    /// Accounts' stored progress, so an account active in block after block is not looked up in kv each time. Only
    /// this plugin writes it, and the cache takes a new value only after the batch with it commits.
    private var storedProgress: [Address: AccountProgress] = [:]
    static let cachedProgressMax = 1 << 17

    struct Config: Decodable {
        /// Blocks between stores of the history index (1: every block). On a crash, the blocks since the last
        /// store are indexed again from BPI's stored blocks.
        var historyFlushBlocks: Int?
        /// Most kv operations per batch when the index is stored (2 to 40,000). A store that takes several batches
        /// is as safe as one: after a crash between them, each account takes only the entries it lacks.
        var historyBatchOperations: Int?
    }

    public init(context: PluginContext) throws {
        self.context = context
        let service = try context.services.lookup(MN_LEDGER_SERVICE, major: MN_LEDGER_VERSION_MAJOR, minMinor: 1)
        guard let ledger = service.bound(to: mn_ledger_api.self) else {
            throw PluginError(MN_ERR_VERSION, "bpi.ledger's table is \(service.size) bytes; BPCI needs ledger 1.1",
                              function: "service_lookup")
        }
        let config = try context.decodeConfig(Config.self)
        if let blocks = config.historyFlushBlocks, !(1...1_024).contains(blocks) {
            throw PluginError(MN_ERR_INVALID_ARGUMENT, "historyFlushBlocks is \(blocks); it must be 1 to 1,024")
        }
        flushBlocks = config.historyFlushBlocks ?? Self.defaultFlushBlocks
        if let operations = config.historyBatchOperations, !(2...Self.defaultOperationsPerBatchMax).contains(operations) {
            throw PluginError(MN_ERR_INVALID_ARGUMENT,
                              "historyBatchOperations is \(operations); it must be 2 to 40,000")
        }
        operationsPerBatchMax = config.historyBatchOperations ?? Self.defaultOperationsPerBatchMax
        if try context.kv.get(HistoryIndex.formatKey) != [HistoryIndex.format] {
            try Self.startChunkedLayout(context)
        }
        nextHeight = try context.kv.get(HistoryIndex.nextHeightKey).flatMap(StoredU64.decode) ?? 1
        storedNextHeight = nextHeight
        indexed = try context.metrics.counter("history_blocks_indexed_total",
                                              help: "Finalized blocks whose events the history index has taken in")
        // From ledger 1.4 on, a transfer's fee is taken in its deliver: one handler call where it was two.
        let status = ledger.pointee.register_module(ledger, LedgerModule.make(
            ledger: ledger, takesOwnFeesInDeliver: service.minor >= 4))
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
            let stored: AccountProgress
            do throws(PluginError) { stored = try progress(address) } catch {
                return .json(["error": "history of \(address): \(error.message)"], status: 500)
            }
            let buffered = buffer.entries(of: address)
            var chunk: HistoryChunk?  // a page's entries are mostly in one or two chunks
            let entry = { [context] (sequence: UInt64) -> HistoryEntry? in
                if sequence >= stored.count {
                    let index = Int(sequence - stored.count)
                    return index < buffered.count ? buffered[index] : nil
                }
                if let chunk, chunk.contains(sequence) { return chunk.entry(sequence) }
                chunk = Self.chunk(holding: sequence, of: address, in: context.kv)
                return chunk?.entry(sequence)
            }
            switch HistoryIndex.page(address, count: stored.count + UInt64(buffered.count), before: before,
                                     indexedThrough: nextHeight - 1, entry: entry) {
            case .success(let json): return .bytes(json, contentType: "application/json")
            case .failure(let refusal): return .json(["error": refusal.reason], status: 500)
            }
        }
        context.log.info("registered ledger module bpci (transfers, multi-sends, FLX fees); history indexed through "
            + "height \(nextHeight - 1)")
    }

    public func start() throws { catchUp() }

    /// A clean stop stores the buffer, so the next start need not index those blocks again.
    public func stop() { flush() }

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
        if part.firstEvent == 0 && part.isLastPart {
            add(part)  // a whole block in one part, as nearly all are: no copy of its events into pendingEvents
        } else {
            pendingEvents += part.events
            if part.isLastPart { add(BlockEvents(height: part.height, events: pendingEvents)) }
        }
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

    /// `address`'s stored history: how many entries, up to which block.
    private func progress(_ address: Address) throws(PluginError) -> AccountProgress {
        if let known = storedProgress[address] { return known }
        guard let bytes = try context.kv.get(HistoryIndex.progressKey(address)) else { return .none }
        let progress: AccountProgress
        do throws(WireError) { progress = try AccountProgress.decode(bytes) } catch {
            throw PluginError(MN_ERR_INTERNAL, "the history index's record of \(address) is damaged: \(error.message)")
        }
        remember(address, progress)
        return progress
    }

    private func remember(_ address: Address, _ progress: AccountProgress) {
        if storedProgress.count >= Self.cachedProgressMax { storedProgress.removeAll(keepingCapacity: true) }
        storedProgress[address] = progress
    }

    /// The stored chunk of `address` that holds `sequence`: the first at or after it, as chunks are keyed by their
    /// last sequence. nil if there is none or it is damaged.
    static func chunk(holding sequence: UInt64, of address: Address, in kv: KeyValueStore) -> HistoryChunk? {
        var found: KVPair?
        do throws(PluginError) {
            try kv.scan(prefix: HistoryIndex.chunkPrefix(address), start: HistoryIndex.chunkKey(address, last: sequence)) {
                found = $0
                return false
            }
        } catch { return nil }
        guard let found, found.key.count == 29 else { return nil }
        var reader = WireReader(Array(found.key.suffix(8)), context: "history chunk key")
        guard let last = try? reader.u64("last"), let chunk = HistoryChunk(last: last, bytes: found.value),
              chunk.contains(sequence) else { return nil }
        return chunk
    }

    /// Takes one block's payments into the buffer, and stores the buffer when it is due.
    private func add(_ block: BlockEvents) {
        pendingEvents = []
        var failure: PluginError?
        buffer.add(HistoryIndex.entries(block), height: block.height) { address in
            guard failure == nil else { return .none }
            do throws(PluginError) { return try progress(address) } catch {
                failure = error
                return .none
            }
        }
        if let failure { return forgetBuffer("could not read it for block \(block.height): \(failure)") }
        nextHeight = block.height + 1
        indexed.increment()
        if buffer.blockCount >= flushBlocks || buffer.entryCount >= Self.bufferedEntriesMax { flush() }
    }

    /// Stores the buffer: each account's new entries as chunks and its progress, in kv batches of at most
    /// `operationsPerBatchMax` operations; the last also moves the stored next height. A batch holds whole accounts,
    /// so after a failure halfway the blocks are indexed again and each account takes only what it lacks.
    private func flush() {
        guard buffer.blockCount > 0 else { return }
        let accounts = Array(buffer.accounts)
        var done = 0
        do {
            repeat {
                var stored: [(Address, AccountProgress)] = []
                try context.kv.batch { batch in
                    var operations = 0
                    while done < accounts.count {
                        let (address, encoded) = accounts[done]
                        let before = try progress(address)
                        let chunks = HistoryIndex.chunks(encoded: encoded, after: before.count)
                        if operations > 0 && operations + chunks.count + 1 > operationsPerBatchMax { break }
                        for chunk in chunks {
                            try batch.put(HistoryIndex.chunkKey(address, last: chunk.last), chunk.value)
                        }
                        let after = AccountProgress(count: before.count + UInt64(encoded.count / HistoryEntry.byteCount),
                                                    height: HistoryBuffer.lastHeight(encoded))
                        try batch.put(HistoryIndex.progressKey(address), after.encoded)
                        stored.append((address, after))
                        operations += chunks.count + 1
                        done += 1
                    }
                    if done == accounts.count { try batch.put(HistoryIndex.nextHeightKey, StoredU64.encode(nextHeight)) }
                }
                for (address, progress) in stored { remember(address, progress) }
            } while done < accounts.count
            storedNextHeight = nextHeight
            buffer.removeAll()
        } catch {
            forgetBuffer("could not store blocks \(storedNextHeight)...\(nextHeight - 1): \(error)")
        }
    }

    /// Drops what is not stored; the blocks from the stored next height are indexed again, from BPI's stored blocks.
    private func forgetBuffer(_ why: String) {
        context.log.error("history index: \(why); indexing again from height \(storedNextHeight)")
        buffer.removeAll()
        pendingEvents = []
        nextHeight = storedNextHeight
        catchUp()
    }

    /// An index in the layout before chunks (an entry per key), or none yet: its account keys go, and the index is
    /// built again from height 1 as BPI replays its stored blocks' events. Keys are deleted a batch at a time, so a
    /// large former index never sits in memory whole.
    private static func startChunkedLayout(_ context: PluginContext) throws {
        var deleted = 0
        while true {
            var keys: [[UInt8]] = []
            for tag in HistoryIndex.accountKeyTags where keys.count < defaultOperationsPerBatchMax {
                try context.kv.scan(prefix: [tag]) { pair in
                    if HistoryIndex.isAccountKey(pair.key) { keys.append(pair.key) }
                    return keys.count < defaultOperationsPerBatchMax
                }
            }
            guard !keys.isEmpty else { break }
            try context.kv.batch { batch in for key in keys { try batch.delete(key) } }
            deleted += keys.count
        }
        try context.kv.batch { batch in
            try batch.put(HistoryIndex.nextHeightKey, StoredU64.encode(1))
            try batch.delete(Array("history/stored".utf8))
            try batch.put(HistoryIndex.formatKey, [HistoryIndex.format])
        }
        if deleted > 0 {
            context.log.info("history index: rebuilding in the chunked layout from height 1 (\(deleted) keys of the "
                + "former layout deleted)")
        }
    }
}

/// The C side: a module table per registration, each with its own `user_data` (a simulation runs several nodes, so
/// several BPI instances, in one process). BPI may call the handlers for the life of the process, so the table and
/// its context are never freed (one small allocation per plugin start).
enum LedgerModule {
    /// What the handlers need: the ledger API of the BPI instance the module registered with.
    final class Context: @unchecked Sendable {  // immutable
        let api: UnsafePointer<mn_ledger_api>
        /// Registered with MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER: BPI calls no charge_fee before BPCI's own kinds.
        let takesOwnFeesInDeliver: Bool

        init(api: UnsafePointer<mn_ledger_api>, takesOwnFeesInDeliver: Bool) {
            self.api = api
            self.takesOwnFeesInDeliver = takesOwnFeesInDeliver
        }
    }

    /// The module's name as the static bytes ledger.h asks for (written once, never freed).
    nonisolated(unsafe) static let moduleName: UnsafeMutablePointer<UInt8> = {
        let bytes = Array(BankModule.name.utf8)
        let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count)
        pointer.initialize(from: bytes, count: bytes.count)
        return pointer
    }()

    /// The table to register; with `takesOwnFeesInDeliver` (a BPI of ledger 1.4 or later) BPCI's own kinds pay
    /// their fee in their deliver.
    static func make(ledger: UnsafePointer<mn_ledger_api>, takesOwnFeesInDeliver: Bool)
        -> UnsafePointer<mn_ledger_module> {
        let context = Unmanaged.passRetained(Context(api: ledger, takesOwnFeesInDeliver: takesOwnFeesInDeliver))
            .toOpaque()
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
                let chargingFee = userData.map { Unmanaged<Context>.fromOpaque($0).takeUnretainedValue() }?
                    .takesOwnFeesInDeliver ?? false
                return LedgerModule.run(userData, state) { view in
                    BankModule.deliver(LedgerModule.transaction(tx), chargingFee: chargingFee, state: &view)
                }
            },
            begin_block: nil,
            end_block: { userData, state, block in
                // ledger 1.1 counts the block's transactions; BPCI registers only with 1.1 (minMinor: 1).
                let count = block.map { $0.pointee.struct_size >= UInt32(MemoryLayout<mn_ledger_block>.size)
                    ? $0.pointee.transaction_count : 0 } ?? 0
                let proposer = block.map { $0.pointee.proposer.array }
                return LedgerModule.run(userData, state) { view in
                    BankModule.endBlock(transactions: count, proposer: proposer, state: &view).map { .failure($0) }
                        ?? .success([])
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
            },
            flags: takesOwnFeesInDeliver ? MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER : 0))
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
        guard let tx = tx?.pointee else {
            return ModuleTransaction(senderKey: [], nonce: 0, fee: 0, kind: "", payload: [])
        }
        // The account straight from the key's bytes where BPI holds them: no copy of the key, nor of the id, which
        // the bank does not read.
        let key = UnsafeRawBufferPointer(start: tx.sender.ptr,
                                         count: tx.sender.ptr == nil ? 0 : max(tx.sender.len, 0))
        return ModuleTransaction(sender: Address(publicKey: key), nonce: tx.nonce, fee: tx.fee,
                                 kind: tx.kind.string, payload: tx.payload.array)
    }
}

typealias StateView = LedgerStateView
extension LedgerStateView: ModuleState {}
