import BPICore
import MetanodeABI
import MetanodePluginKit
import MetanodeWire
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The ledger service one BPI instance exports ("bpi.ledger" 1.4, plugin-sdk/include/metanode/ledger.h): modules
/// register here, and BPI runs their handlers when it admits transactions, executes blocks and answers queries.
///
/// The exported C table has no context argument of its own, so each instance allocates its table with a pointer
/// back to itself right after it; `register_module` gets the table and finds its instance there. Handler calls get
/// an `mn_ledger_state`, which is an unretained `LedgerCall`.
final class LedgerService: @unchecked Sendable {  // `modules` is behind a mutex; the rest is used on BPI's thread
    static let reservedModules: Set<String> = ["bpi", "test"]

    /// A registered module: a copy of its handler table, zero past what its `struct_size` covers (a 1.0 module
    /// has no `init_chain` or `charge_fee`), so BPI never reads past the module's static struct.
    struct Module: @unchecked Sendable {  // the copy is immutable; user_data is the module's to guard
        let name: String
        let handlers: mn_ledger_module
        /// "<name>/": where its keys live in the ledger state.
        let prefix: [UInt8]
        /// The fee module takes its own kinds' fees in their `deliver` (MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER).
        let takesOwnFeesInDeliver: Bool

        init(name: String, handlers: mn_ledger_module) {
            self.name = name
            self.handlers = handlers
            prefix = Array(name.utf8) + [0x2F]
            takesOwnFeesInDeliver = handlers.charge_fee != nil
                && handlers.flags & MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER != 0
        }
    }

    /// `mn_ledger_module`'s size in ledger 1.0, the smallest BPI accepts.
    static let moduleSizeV1_0 = MemoryLayout<mn_ledger_module>.offset(of: \mn_ledger_module.init_chain)!

    private let modules = Mutex<[String: Module]>([:])
    /// Whether BPI's `test/…` kinds are valid on this chain (genesis `parameters.testTransactions`); set by BPI.
    var testTransactions = false
    /// Each module's genesis section (JSON), for `init_chain` in block 1; set by BPI.
    var genesisSections: [String: String] = [:]
    /// The table, followed by a pointer to this instance.
    let table: UnsafeMutableRawPointer
    /// Committed module state by full key ("<module>/<key>") from storage; set by BPI. Read through `committed`.
    var readStored: ([UInt8]) throws -> [UInt8]? = { _ in nil }
    /// Committed state only changes when a block commits, and then only by the block's writes, which
    /// `committed(writes:)` applies here: a transfer reads the same fee parameters, supplies and balances many times
    /// over, at admission and in every execution of a block, and each would otherwise be a RocksDB read.
    private var committedCache: [StateKey: [UInt8]?] = [:]
    static let committedCacheEntriesMax = 1 << 18

    /// Committed module state by full key, cached.
    func readCommitted(_ key: [UInt8]) -> [UInt8]? { readCommitted(StateKey(key)) }

    func readCommitted(_ key: StateKey) -> [UInt8]? {
        if let cached = committedCache[key] { return cached }
        let value: [UInt8]?
        do { value = try readStored(key.bytes) } catch {
            return nil  // not cached: a failed read must not stand for an absent key in later blocks
        }
        if committedCache.count >= Self.committedCacheEntriesMax { committedCache.removeAll(keepingCapacity: true) }
        committedCache[key] = .some(value)
        return value
    }

    /// `readCommitted`, as the closure each handler call reads through: made once, where passing the method made a
    /// closure context for every call (two per transaction in a block).
    private var readCommittedState: (StateKey) -> [UInt8]? = { _ in nil }  // set in init

    /// BPI committed a block with these module state writes (full keys; nil deletes): the cache takes the new values,
    /// so the accounts a block touched stay cached for the next one rather than each being read from RocksDB again.
    func committed(writes: [StateKey: [UInt8]?]) {
        if committedCache.count + writes.count > Self.committedCacheEntriesMax {
            committedCache.removeAll(keepingCapacity: true)
        }
        for (key, value) in writes { committedCache[key] = .some(value) }
    }
    /// BPI's own kinds ("bpi/…"): admission, and execution given the block's writes so far.
    var systemCheck: (Transaction) -> MempoolRejection? = { .unknownKind($0.kind) }
    var systemDeliver: (Transaction, BlockContext, [StateKey: [UInt8]?])
        -> (TransactionResult, [StateKey: [UInt8]?]) = {
        transaction, _, _ in
        (TransactionResult(status: UInt32(MN_ERR_NOT_FOUND), reason: "no module handles kind '\(transaction.kind)'",
                           events: []), [:])
    }

    init() {
        let stride = MemoryLayout<mn_ledger_api>.stride
        table = .allocate(byteCount: stride + MemoryLayout<UnsafeRawPointer>.size,
                          alignment: max(MemoryLayout<mn_ledger_api>.alignment, MemoryLayout<UnsafeRawPointer>.alignment))
        table.initializeMemory(as: mn_ledger_api.self, repeating: Self.api, count: 1)
        table.storeBytes(of: UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()), toByteOffset: stride,
                         as: UnsafeRawPointer.self)
        readCommittedState = { [unowned self] key in readCommitted(key) }
    }

    var registeredNames: [String] { modules.withLock { $0.keys.sorted() } }

    func module(_ name: Substring) -> Module? { modules.withLock { $0[String(name)] } }

    /// Modules the genesis has sections for that have not registered yet (they start after BPI). No block runs
    /// until this is empty: without them it would not reach the state the other validators reach.
    func missingGenesisModules() -> [String] {
        missingGenesisModules(among: modules.withLock { Set($0.keys) })
    }

    private func missingGenesisModules(among registered: Set<String>) -> [String] {
        genesisSections.keys.filter { !registered.contains($0) }.sorted()
    }

    /// Transactions of the last `execute` whose fee could not be paid (such a block is invalid; a proposer drops
    /// them and builds again).
    private(set) var unpayable: [Int] = []

    static func isValidName(_ name: String) -> Bool {
        let utf8 = name.utf8
        return !utf8.isEmpty && utf8.count <= Int(MN_LEDGER_MODULE_NAME_LEN_MAX)
            && utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2D }
    }

    fileprivate func register(_ module: UnsafePointer<mn_ledger_module>) -> mn_status {
        // Read the size alone first: the module's struct may be smaller than this BPI's.
        let declared = Int(UnsafeRawPointer(module).load(as: UInt32.self))
        guard declared >= Self.moduleSizeV1_0 else { return MN_ERR_INVALID_ARGUMENT }
        var handlers = mn_ledger_module()
        withUnsafeMutableBytes(of: &handlers) { copy in
            // Whole fields only: a size that ends inside a function pointer must not leave half of one behind.
            let fields = min(declared, copy.count) / MemoryLayout<UnsafeRawPointer>.size
            copy.copyMemory(from: UnsafeRawBufferPointer(start: module,
                                                         count: fields * MemoryLayout<UnsafeRawPointer>.size))
        }
        guard handlers.deliver != nil else { return MN_ERR_INVALID_ARGUMENT }
        let name = handlers.name.string
        guard Self.isValidName(name), !Self.reservedModules.contains(name) else { return MN_ERR_INVALID_ARGUMENT }
        return modules.withLock { table -> mn_status in
            guard table[name] == nil else { return MN_ERR_EXISTS }
            guard table.count < Int(MN_LEDGER_MODULES_MAX) else { return MN_ERR_LIMIT }
            if handlers.charge_fee != nil, table.values.contains(where: { $0.handlers.charge_fee != nil }) {
                return MN_ERR_EXISTS
            }
            table[name] = Module(name: name, handlers: handlers)
            return MN_OK
        }
    }

    // MARK: - Running handlers

    /// Mempool admission: nil admits, else why not. BPI's own kinds need no handler and pay no fee: "bpi/…" (signed
    /// by node keys, which hold no tokens) and, where the genesis allows them, "test/…".
    func check(_ transaction: EncodedTransaction, id: [UInt8]) -> MempoolRejection? {
        if transaction.isOf(module: "test") {
            return testTransactions ? nil : .refused(module: "bpi", reason: "test transactions are off on this chain "
                + "(genesis parameters.testTransactions)")
        }
        if transaction.isOf(module: "bpi") { return systemCheck(transaction.decoded) }
        guard let module = module(transaction.module) else { return .unknownKind(transaction.kind) }
        // The fee module's own check covers the fee of its own kinds (it must: it knows what else they spend).
        if let payer = feeModule(), payer.name != module.name, let charge = payer.handlers.charge_fee {
            let call = LedgerCall(mode: .check, prefix: payer.prefix, read: readCommittedState)
            let status = call.run { state in
                Self.withTx(transaction, id: id) { charge(payer.handlers.user_data, state, $0, nil) }
            }
            if status != MN_OK { return .refused(module: payer.name, reason: call.reasonOr(status)) }
        }
        guard let check = module.handlers.check else { return nil }
        let call = LedgerCall(mode: .check, prefix: module.prefix, read: readCommittedState)
        let status = call.run { state in
            Self.withTx(transaction, id: id) { check(module.handlers.user_data, state, $0) }
        }
        return status == MN_OK ? nil : .refused(module: module.name, reason: call.reasonOr(status))
    }

    /// Executes a block: every module's begin_block (in name order), each transaction's deliver, every end_block.
    func execute(_ context: BlockContext, _ transactions: [EncodedTransaction], _ ids: [[UInt8]])
        -> Result<Execution, BlockProblem> {
        let ordered = modules.withLock { $0.values.sorted { $0.name < $1.name } }
        unpayable = []
        // Against the block's own list, not the registry again: a module registering in between must not be
        // counted present and then be missing from the block's hooks, fees and deliveries.
        if let missing = missingGenesisModules(among: Set(ordered.map(\.name))).first {
            return .failure(BlockProblem(stringLiteral: "the genesis has a section for module \(missing), which is not "
                + "registered on this node: enable its plugin"))
        }
        // One write set for the block, read by each handler while it runs (a copy per handler would make every
        // later merge copy the whole set: quadratic in the block's writes).
        let block = BlockWrites()
        // A transfer writes about two accounts of its own (the proposer's and the supply are shared): room for that
        // up front, rather than the set rehashing itself as it doubles.
        block.reserveCapacity(2 * transactions.count + 16)
        if context.height == 1, let problem = initChain(ordered, context, block) { return .failure(problem) }
        let genesisWrites = block.size
        if let problem = runBlockHooks(ordered, \.begin_block, "begin_block", context, transactions.count, block) {
            return .failure(problem)
        }
        let payer = ordered.first { $0.handlers.charge_fee != nil }
        let read = readCommittedState
        var results: [TransactionResult] = []
        results.reserveCapacity(transactions.count)
        var unpayableReason = ""
        var writesAfterEach: [WritesSize] = []
        writesAfterEach.reserveCapacity(transactions.count)
        for (index, (transaction, id)) in zip(transactions, ids).enumerated() {
            defer { writesAfterEach.append(block.size) }
            if testTransactions && transaction.isOf(module: "test") {
                results.append(.accepted)
                continue
            }
            if transaction.isOf(module: "bpi") {
                // BPI's own transactions read only the validator-set key of the block so far (not a copy of it all).
                let setKey = StateKey(ValidatorSetChange.stateKey)
                let sofar: [StateKey: [UInt8]?] = block.writes[setKey].map { [setKey: $0] } ?? [:]
                let (result, systemWrites) = systemDeliver(transaction.decoded, context, sofar)
                for (key, value) in systemWrites { block.set(key, value) }
                results.append(result)
                continue
            }
            // One view of the transaction for both handler calls, and the modules' committed state read through one
            // closure made for the block.
            let outcome = Self.withTx(transaction, id: id) { tx in
                deliverOne(tx, payer: payer, ordered: ordered, context: context, transactions: transactions.count,
                           block: block, read: read)
            }
            switch outcome {
            case .unpayable(let status, let reason):
                // Not a failed transaction but an invalid block: a sender who cannot pay must not get its nonces
                // and block space for free (admission checks each fee alone, not a sender's queue).
                if unpayable.isEmpty { unpayableReason = reason }
                unpayable.append(index)
                results.append(TransactionResult(status: UInt32(bitPattern: status), reason: "", events: []))
            case .done(let result):
                results.append(result)
            }
        }
        if let first = unpayable.first {
            return .failure(BlockProblem(stringLiteral: "\(unpayable.count) transaction(s) cannot pay their fee, "
                + "the first \(Hex.encode(ids[first])): \(unpayableReason)"))
        }
        if let problem = runBlockHooks(ordered, \.end_block, "end_block", context, transactions.count, block) {
            return .failure(problem)
        }
        return .success(Execution(results: results, writes: block.writes, writesAfterEach: writesAfterEach,
                                  genesisWrites: genesisWrites))
    }

    private enum Delivered {
        case done(TransactionResult)
        /// The fee module refused the fee: the block cannot hold the transaction.
        case unpayable(mn_status, reason: String)
    }

    /// A module's transaction in a block: the fee first, for every kind but BPI's own (its writes and events stay
    /// even when the owner's deliver fails), then the owner's deliver. The fee module's own kinds, when it takes
    /// their fees in `deliver`, are one call, and the fee is charged alone only if that call fails.
    private func deliverOne(_ tx: UnsafePointer<mn_ledger_tx>, payer: Module?, ordered: [Module], context: BlockContext,
                            transactions: Int, block: BlockWrites, read: @escaping (StateKey) -> [UInt8]?)
        -> Delivered {
        let kind = tx.pointee.kind
        // A kind no module handles fails, with its fee paid: block space is never free. Modules are looked up in the
        // block's ordered list (a handful), not under the registry's lock and by hashed name; "test" is reserved
        // (BPI ran its kinds before this when the chain allows them, and "bpi/…" never reaches here).
        let name = Self.moduleName(ofKind: kind)
        let module = name.elementsEqual("test".utf8) ? nil : ordered.first { $0.name.utf8.elementsEqual(name) }
        if let payer, payer.takesOwnFeesInDeliver, let module, module.name == payer.name,
           let deliver = module.handlers.deliver {
            let call = LedgerCall(mode: .deliver, prefix: module.prefix, block: block, read: read)
            let status = call.run { state in deliver(module.handlers.user_data, state, tx) }
            if status == MN_OK { return .done(TransactionResult(status: 0, reason: "", events: call.events)) }
            call.undo()
            let feeEvents: [TransactionResult.Event]
            switch chargeFee(tx, payer: payer, context: context, transactions: transactions, block: block, read: read) {
            case .unpayable(let status, let reason): return .unpayable(status, reason: reason)
            case .paid(let events): feeEvents = events
            }
            return .done(TransactionResult(status: UInt32(bitPattern: status), reason: call.reasonOr(status),
                                           events: feeEvents))
        }
        var feeEvents: [TransactionResult.Event] = []
        if let payer {
            switch chargeFee(tx, payer: payer, context: context, transactions: transactions, block: block, read: read) {
            case .unpayable(let status, let reason): return .unpayable(status, reason: reason)
            case .paid(let events): feeEvents = events
            }
        }
        guard let module, let deliver = module.handlers.deliver else {
            return .done(TransactionResult(status: UInt32(MN_ERR_NOT_FOUND),
                                           reason: "no module handles kind '\(kind.string)'", events: feeEvents))
        }
        let call = LedgerCall(mode: .deliver, prefix: module.prefix, block: block, read: read)
        let status = call.run { state in deliver(module.handlers.user_data, state, tx) }
        guard status == MN_OK else {
            call.undo()
            return .done(TransactionResult(status: UInt32(bitPattern: status), reason: call.reasonOr(status),
                                           events: feeEvents))
        }
        // A module that takes its own fees (BPI's fee module, for its kinds) puts the fee in its own events.
        return .done(TransactionResult(status: 0, reason: "",
                                       events: feeEvents.isEmpty ? call.events : feeEvents + call.events))
    }

    private enum Fee {
        case paid([TransactionResult.Event])
        /// Refused: nothing written, and a block cannot hold the transaction.
        case unpayable(mn_status, reason: String)
    }

    /// The fee module's `charge_fee` in a block.
    private func chargeFee(_ tx: UnsafePointer<mn_ledger_tx>, payer: Module, context: BlockContext, transactions: Int,
                           block: BlockWrites, read: @escaping (StateKey) -> [UInt8]?) -> Fee {
        guard let charge = payer.handlers.charge_fee else { return .paid([]) }
        let call = LedgerCall(mode: .deliver, prefix: payer.prefix, block: block, read: read)
        let status = call.run { state in
            Self.withBlock(context, transactions: transactions) { charge(payer.handlers.user_data, state, tx, $0) }
        }
        guard status == MN_OK else {
            call.undo()
            return .unpayable(status, reason: call.reasonOr(status))
        }
        return .paid(call.events)
    }

    /// The module part of a kind's bytes ("bpci" of "bpci/transfer").
    private static func moduleName(ofKind kind: mn_bytes) -> UnsafeBufferPointer<UInt8> {
        let bytes = UnsafeBufferPointer(start: kind.ptr, count: kind.ptr == nil ? 0 : max(kind.len, 0))
        return UnsafeBufferPointer(rebasing: bytes[..<(bytes.firstIndex(of: 0x2F) ?? bytes.endIndex)])
    }

    private func feeModule() -> Module? { modules.withLock { $0.values.first { $0.handlers.charge_fee != nil } } }

    /// Block 1: every module's `init_chain` with its genesis section, in name order.
    private func initChain(_ modules: [Module], _ context: BlockContext, _ block: BlockWrites) -> BlockProblem? {
        for module in modules {
            guard let initChain = module.handlers.init_chain else { continue }
            let call = LedgerCall(mode: .block, prefix: module.prefix, block: block, read: readCommittedState)
            let section = genesisSections[module.name] ?? "{}"
            let status = call.run { state in
                section.withMNBytes { initChain(module.handlers.user_data, state, $0) }
            }
            guard status == MN_OK else {
                return BlockProblem(stringLiteral:
                    "module \(module.name) refused its genesis section at init_chain: \(call.reasonOr(status))")
            }
        }
        return nil
    }

    private typealias BlockHook = (@convention(c) (UnsafeMutableRawPointer?, OpaquePointer?,
                                                   UnsafePointer<mn_ledger_block>?) -> mn_status)?

    /// Runs one block hook (begin_block or end_block) of every module that has it, merging each one's writes; the
    /// first refusal rejects the block.
    private func runBlockHooks(_ modules: [Module], _ hook: KeyPath<mn_ledger_module, BlockHook>, _ label: String,
                               _ context: BlockContext, _ transactions: Int, _ block: BlockWrites) -> BlockProblem? {
        for module in modules {
            guard let run = module.handlers[keyPath: hook] else { continue }
            let call = LedgerCall(mode: .block, prefix: module.prefix, block: block, read: readCommittedState)
            let status = call.run { state in
                Self.withBlock(context, transactions: transactions) { run(module.handlers.user_data, state, $0) }
            }
            guard status == MN_OK else {
                return BlockProblem(stringLiteral:
                    "module \(module.name) refused the block at \(label): \(call.reasonOr(status))")
            }
        }
        return nil
    }

    /// A read-only query over committed state: the module's answer, or why there is none.
    func query(module name: String, path: String, request: [UInt8]) -> Result<[UInt8], BlockProblem> {
        guard let module = module(Substring(name)) else {
            return .failure(BlockProblem(stringLiteral: "no module '\(name)' is registered"))
        }
        guard let query = module.handlers.query else {
            return .failure(BlockProblem(stringLiteral: "module \(name) answers no queries"))
        }
        let call = LedgerCall(mode: .query, prefix: module.prefix, read: readCommittedState)
        let status = call.run { state in
            path.withMNBytes { path in request.withMNBytes { request in
                query(module.handlers.user_data, state, path, request)
            } }
        }
        guard status == MN_OK else { return .failure(BlockProblem(stringLiteral: call.reasonOr(status))) }
        return .success(call.answer ?? [])
    }

    /// The handlers' view of `transaction`: its sender, kind and payload where they lie in its bytes.
    private static func withTx<R>(_ transaction: EncodedTransaction, id: [UInt8],
                                  _ body: (UnsafePointer<mn_ledger_tx>) -> R) -> R {
        id.withMNBytes { id in
            transaction.withFields { sender, kind, payload in
                var tx = mn_ledger_tx(struct_size: UInt32(MemoryLayout<mn_ledger_tx>.size), id: id,
                                      sender: mn_bytes(sender), nonce: transaction.nonce, fee: transaction.fee,
                                      kind: mn_bytes(kind), payload: mn_bytes(payload))
                return withUnsafePointer(to: &tx) { body($0) }
            }
        }
    }

    private static func withBlock<R>(_ context: BlockContext, transactions: Int,
                                     _ body: (UnsafePointer<mn_ledger_block>) -> R) -> R {
        context.proposer.withMNBytes { proposer in
            var block = mn_ledger_block(struct_size: UInt32(MemoryLayout<mn_ledger_block>.size),
                                        height: context.height, timestamp_ms: context.timestampMs, proposer: proposer,
                                        transaction_count: UInt64(transactions))
            return withUnsafePointer(to: &block) { body($0) }
        }
    }

    // MARK: - The C table

    fileprivate static func instance(_ ledger: UnsafePointer<mn_ledger_api>?) -> LedgerService? {
        guard let ledger else { return nil }
        let back = UnsafeRawPointer(ledger).load(fromByteOffset: MemoryLayout<mn_ledger_api>.stride,
                                                 as: UnsafeRawPointer.self)
        return Unmanaged<LedgerService>.fromOpaque(back).takeUnretainedValue()
    }

    private static let api = mn_ledger_api(
        struct_size: UInt32(MemoryLayout<mn_ledger_api>.size),
        register_module: { ledger, module in
            guard let service = LedgerService.instance(ledger), let module else { return MN_ERR_INVALID_ARGUMENT }
            return service.register(module)
        },
        state_get: { state, key, out in
            guard let call = LedgerCall.from(state), let out else { return MN_ERR_INVALID_ARGUMENT }
            if let problem = LedgerCall.problem(key, max: MN_LEDGER_KEY_LEN_MAX) { return problem }
            guard let value = call.get(key) else {
                out.pointee = mn_buf(ptr: nil, len: 0)
                return MN_ERR_NOT_FOUND
            }
            let buffer = value.isEmpty ? nil : malloc(value.count)?.assumingMemoryBound(to: UInt8.self)
            if let buffer { value.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: value.count) } }
            out.pointee = mn_buf(ptr: buffer, len: buffer == nil ? 0 : value.count)
            return MN_OK
        },
        state_put: { state, key, value in
            guard let call = LedgerCall.from(state) else { return MN_ERR_INVALID_ARGUMENT }
            if let problem = LedgerCall.problem(key, max: MN_LEDGER_KEY_LEN_MAX)
                ?? LedgerCall.problem(value, max: MN_LEDGER_VALUE_LEN_MAX) {
                return problem
            }
            return call.put(key, value.array, valueBytes: value.len)
        },
        state_delete: { state, key in
            guard let call = LedgerCall.from(state) else { return MN_ERR_INVALID_ARGUMENT }
            if let problem = LedgerCall.problem(key, max: MN_LEDGER_KEY_LEN_MAX) { return problem }
            return call.put(key, nil, valueBytes: 0)
        },
        reject: { state, reason in
            LedgerCall.from(state)?.reason = String(reason.string.utf8.prefix(Int(MN_LEDGER_REASON_LEN_MAX))) ?? ""
        },
        emit_event: { state, type, data in
            guard let call = LedgerCall.from(state) else { return MN_ERR_INVALID_ARGUMENT }
            return call.emit(type.string, data.array, dataBytes: data.len)
        },
        answer: { state, response in LedgerCall.from(state)?.answer = response.array },
        buf_free: { buffer in free(buffer.ptr) },
        state_read: { state, key, out, capacity, length in
            guard let call = LedgerCall.from(state), let length, out != nil || capacity == 0 else {
                return MN_ERR_INVALID_ARGUMENT
            }
            length.pointee = 0
            if let problem = LedgerCall.problem(key, max: MN_LEDGER_KEY_LEN_MAX) { return problem }
            guard let value = call.get(key) else { return MN_ERR_NOT_FOUND }
            length.pointee = value.count
            // size_t arrives as Int: a capacity past Int.max (SIZE_MAX, say) is room enough for any value.
            guard capacity < 0 || value.count <= capacity else { return MN_ERR_TOO_LARGE }
            if let out, !value.isEmpty {
                value.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: value.count) }
            }
            return MN_OK
        })
}

/// A block's module writes so far (full keys; nil deletes), shared by its handler calls.
final class BlockWrites {
    private(set) var writes: [StateKey: [UInt8]?] = [:]
    /// What `writes` would store, kept as they change: a proposer keeps the transactions whose writes fit a block.
    private(set) var size = WritesSize.zero

    func reserveCapacity(_ count: Int) { writes.reserveCapacity(count) }

    /// Sets `key` to `value` (.some(nil): a delete; nil: out of the set again, as an undo leaves it) and returns what
    /// it held before, in the same terms.
    @discardableResult
    func set(_ key: StateKey, _ value: [UInt8]??) -> [UInt8]?? {
        let old = if let value { writes.updateValue(value, forKey: key) } else { writes.removeValue(forKey: key) }
        size.change(key, from: old, to: value)
        return old
    }
}

/// A ledger state key ("<module>/<key>"): hashed once, when made, since handlers look each up several times (in
/// the call's writes, the block's, and the committed cache).
typealias StateKey = BytesKey

/// One handler call's view of the ledger: reads see the block's writes so far (this call's among them), then
/// committed state. A call that may write (deliver, block hooks) writes straight into the block's set and keeps what
/// each key held before, so that BPI can `undo` the call when its handler fails; before, each call gathered its writes
/// in a map of its own that was merged into the block's after it, a map and a merge per call.
final class LedgerCall {
    enum Mode { case check, deliver, block, query }

    let mode: Mode
    let prefix: [UInt8]
    /// The block's writes, for a call that may write (nil: check and query see committed state only).
    let block: BlockWrites?
    let read: (StateKey) -> [UInt8]?
    /// What each key this call wrote held in the block's set before (nil: absent), oldest first.
    private var previous: [(key: StateKey, value: [UInt8]??)] = []
    /// The bytes of the keys and values this call wrote, as written (against MN_LEDGER_CALL_WRITE_BYTES_MAX).
    private var writtenBytes = 0
    var events: [TransactionResult.Event] = []
    var reason = ""
    var answer: [UInt8]?

    init(mode: Mode, prefix: [UInt8], block: BlockWrites? = nil, read: @escaping (StateKey) -> [UInt8]?) {
        precondition((block != nil) == (mode == .deliver || mode == .block), "only deliver and block calls write")
        self.mode = mode
        self.prefix = prefix
        self.block = block
        self.read = read
    }

    static func from(_ state: OpaquePointer?) -> LedgerCall? {
        state.map { Unmanaged<LedgerCall>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
    }

    func run(_ body: (OpaquePointer) -> mn_status) -> mn_status {
        withExtendedLifetime(self) { body(OpaquePointer(Unmanaged.passUnretained(self).toOpaque())) }
    }

    func reasonOr(_ status: mn_status) -> String { reason.isEmpty ? "status \(status)" : reason }

    /// What is wrong with bytes a module passed, if anything: longer than `max` (a size_t past Int.max arrives
    /// negative) or a length with no pointer. Checked before the bytes are read.
    static func problem(_ bytes: mn_bytes, max: UInt32) -> mn_status? {
        if bytes.len < 0 || bytes.len > Int(max) { return MN_ERR_TOO_LARGE }
        if bytes.ptr == nil && bytes.len > 0 { return MN_ERR_INVALID_ARGUMENT }
        return nil
    }

    /// "<module>/" + key: made in place for a key short enough to be held inline, in one allocation otherwise.
    func fullKey(_ key: mn_bytes) -> StateKey {
        StateKey(prefix, UnsafeRawBufferPointer(start: key.ptr, count: key.ptr == nil ? 0 : key.len))
    }

    func get(_ key: mn_bytes) -> [UInt8]? {
        let full = fullKey(key)
        if let block, let written = block.writes[full] { return written }
        return read(full)
    }

    func put(_ key: mn_bytes, _ value: [UInt8]?, valueBytes: Int) -> mn_status {
        guard let block else { return MN_ERR_DENIED }
        guard key.len <= Int(MN_LEDGER_KEY_LEN_MAX), valueBytes <= Int(MN_LEDGER_VALUE_LEN_MAX) else {
            return MN_ERR_TOO_LARGE
        }
        // A transaction's call writes a bounded amount, so that any transaction fits a block's writes bound
        // (BlockRules.writesMax) and a sender's queue is never stuck behind one that cannot.
        if mode == .deliver {
            guard previous.count < Int(MN_LEDGER_CALL_WRITES_MAX),
                  writtenBytes + key.len + valueBytes <= Int(MN_LEDGER_CALL_WRITE_BYTES_MAX) else { return MN_ERR_LIMIT }
            writtenBytes += key.len + valueBytes
        }
        let full = fullKey(key)
        previous.append((full, block.set(full, value)))
        return MN_OK
    }

    /// Puts back what this call's writes replaced in the block's set, newest first: the handler failed.
    func undo() {
        guard let block else { return }
        for (key, value) in previous.reversed() { block.set(key, value) }
        previous.removeAll()
    }

    func emit(_ type: String, _ data: [UInt8], dataBytes: Int) -> mn_status {
        guard mode == .deliver else { return MN_ERR_DENIED }
        // A dotted type is namespaced: a module emits only "<its name>.…", so no module can forge another's events.
        if let dot = type.utf8.firstIndex(of: 0x2E), !prefix.dropLast().elementsEqual(type.utf8[..<dot]) {
            return MN_ERR_DENIED
        }
        guard events.count < Int(MN_LEDGER_EVENTS_PER_TX_MAX) else { return MN_ERR_LIMIT }
        guard dataBytes <= Int(MN_LEDGER_EVENT_LEN_MAX), type.utf8.count <= 64 else { return MN_ERR_TOO_LARGE }
        events.append(TransactionResult.Event(type: type, data: data))
        return MN_OK
    }
}
