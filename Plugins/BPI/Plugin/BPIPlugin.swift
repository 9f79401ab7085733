// BPI: Metanode's ledger plugin. Orders transactions with QBFT (Plugins/BPI/Core), stores finalized blocks in its
// kv namespace, syncs blocks from peers, and serves its chain over HTTP under /v1/plugins/bpi/.
//
//   net protocols   consensus (QBFT messages), tx (transaction gossip), sync (status and finalized blocks)
//   GET  /status               chain id, height, round, validators, mempool
//   GET  /nonce/<sender hex>   the sender's next nonce: after its finalized transactions and those waiting here
//   GET  /blocks/latest | /blocks/<height>     a finalized block, as JSON (?format=raw for its wire bytes)
//   GET  /tx/<id>              where a finalized transaction is, with its Merkle inclusion proof
//   GET  /state/<hex key>      a ledger state value (or its absence) with a proof against the tip's state root
//   bus  bpi.stream.blocks     one JSON line per finalized block (the node serves it at GET /v1/streams/bpi/blocks)
//   bus  bpi.stream.events     the same events in binary (MetanodeWire's BlockEvents), for modules' indexes
//   bus  bpi.blocks.events     request: u64 height; reply: the stored blocks' BlockEvents from that height on (at
//                              most `eventsReplyBlocksMax`; none past the tip), so a module's index can catch up on
//                              blocks it missed
//   bus  bpi.tx.submit | bpi.tx.status | bpi.tx.nonce | bpi.query    requests for plugins that submit transactions
//                              of their own (MetanodeWire's LedgerRequests; BusAPI.swift): what POST /tx,
//                              GET /tx/<id>, GET /nonce/<sender> and GET /query/… answer over HTTP
//   POST /tx                   a transaction's wire bytes (or {"tx": "<hex>"}); 202 with its id, or 400 saying why
//   POST /txs                  a TransactionBatch (u32 count, then u32-length-prefixed transactions); 200 with how
//                              many were accepted and why each refused one was
import BPICore
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodeWire

public final class BPI: Plugin {
    public static let name = "bpi"
    public static let version = "0.1.0"
    static let statusIntervalMs: UInt64 = 250
    static let syncBatchMax = 32

    /// The chain a node with no genesis file runs: itself as the only validator (the embedded default).
    public static let devChainID = "metanode-dev"

    struct Config: Decodable {
        /// Without one, the node runs a single-validator dev chain (`devChainID`) with its own key.
        var genesisFile: String?
        var roundTimeoutBaseMs: UInt64?
        /// With nothing to order, a block is still made this often (0: never).
        var heartbeatMs: UInt64?
        /// Blocks between state checkpoints (`ChainStore`; 1: every block). A restart applies the blocks' state
        /// changes since the last one.
        var stateCheckpointBlocks: Int?
        /// How long gossiped transactions wait to be admitted, together with those that arrive meanwhile (0: after
        /// the work already queued). A proposal admits what waits at once.
        var gossipAdmissionWindowMs: UInt64?
    }

    static let defaultStateCheckpointBlocks = 32
    static let defaultGossipAdmissionWindowMs: UInt64 = 5
    static let gossipAdmissionWindowMsMax: UInt64 = 1_000
    /// A restart applies up to this many blocks' changes, and a checkpoint deletes as many d values.
    static let stateCheckpointBlocksMax = 1_024

    let context: PluginContext
    let genesis: Genesis
    let rules: BlockRules
    let store: ChainStore
    /// The validators of the height consensus is working on, and this node's index among them.
    var validators: ValidatorSet
    var me: Int? { validators.index(of: myKey) }
    let myKey: [UInt8]
    let heartbeatMs: UInt64
    let gossipAdmissionWindowMs: UInt64
    /// The service modules register with; its table is exported as "bpi.ledger".
    let ledger = LedgerService()
    /// How the consensus core reaches this plugin to check blocks.
    let validator = BlockValidatorLink()
    var core: QBFTCore
    var mempool: Mempool
    var parent: BlockRules.Parent
    /// The ledger state after the tip, loaded from kv at start.
    var state: StateTree
    /// Every sender's next nonce after the tip (kv holds them too; this copy spares a read per transaction).
    var nonces: [BytesKey: UInt64]
    var walCount = 0
    /// Blocks checked at this height: a proposal is checked once, and its effects are committed as found.
    var checkedBlocks = CheckedBlocks()
    var heartbeat: TimerHandle?
    /// Equivocations seen and not yet in a finalized block, by state key (bounded).
    var pendingEvidence: [[UInt8]: Evidence] = [:]
    static let pendingEvidenceMax = 256
    let heightGauge: Gauge
    let roundGauge: Gauge
    let blocksCommitted: Counter
    let transactionsCommitted: Counter
    let mempoolGauge: Gauge
    let rejected: Counter
    let equivocations: Counter
    /// Transactions of checked blocks that this node had not admitted: their signatures were checked with the block.
    let unadmittedInBlocks: Counter

    public init(context: PluginContext) throws {
        self.context = context
        let config = try context.decodeConfig(Config.self)
        myKey = try context.signer.publicKey()
        if let path = config.genesisFile {
            let bytes: [UInt8]
            do {
                bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw PluginError(PluginStatus.invalidArgument, "cannot read the genesis file \(path): "
                    + "\(error.localizedDescription)")
            }
            genesis = try Genesis.parse(bytes, source: path)
        } else {
            genesis = Genesis(chainID: Self.devChainID, genesisTimeMs: 0, validators: try ValidatorSet(keys: [myKey]))
            context.log.info("no genesisFile in the config: running a single-validator dev chain with this node's key")
        }
        rules = BlockRules(genesis: genesis)
        let checkpointBlocks = config.stateCheckpointBlocks ?? Self.defaultStateCheckpointBlocks
        guard (1...Self.stateCheckpointBlocksMax).contains(checkpointBlocks) else {
            throw PluginError(PluginStatus.invalidArgument,
                              "stateCheckpointBlocks is \(checkpointBlocks); it must be 1 to \(Self.stateCheckpointBlocksMax)")
        }
        store = ChainStore(kv: context.kv, checkpointBlocks: checkpointBlocks)
        heartbeatMs = config.heartbeatMs ?? 0
        gossipAdmissionWindowMs = config.gossipAdmissionWindowMs ?? Self.defaultGossipAdmissionWindowMs
        guard gossipAdmissionWindowMs <= Self.gossipAdmissionWindowMsMax else {
            throw PluginError(PluginStatus.invalidArgument, "gossipAdmissionWindowMs is \(gossipAdmissionWindowMs); "
                + "it must be 0 to \(Self.gossipAdmissionWindowMsMax)")
        }
        mempool = Mempool(chainID: genesis.chainID)
        let tip = try store.tipHeight()
        (state, nonces) = try store.loadState()
        if let first = store.blocksWithoutResults.first {
            context.log.warn("\(store.blocksWithoutResults.count) block(s) from height \(first) on have no stored "
                + "transaction results (stored by an earlier version, or lost): their transactions are found by id, "
                + "without results")
        }
        if tip == 0 {
            parent = rules.genesisParent
        } else {
            guard let block = try store.block(at: tip) else {
                throw PluginError(PluginStatus.internal, "the chain's tip is height \(tip) but that block is missing")
            }
            parent = BlockRules.Parent(header: block.block.header)
            // The stored state must be the state the tip's header commits to; a node that went on from another
            // would refuse every block its peers make.
            let headerRoot = block.block.header.stateRoot
            guard state.root == headerRoot else {
                let stored = Hex.encode(state.root).prefix(16), expected = Hex.encode(headerRoot).prefix(16)
                throw PluginError(PluginStatus.internal, "the stored ledger state does not match block \(tip)'s state "
                    + "root (\(stored)… stored, \(expected)… in the header): the data directory is damaged; start "
                    + "from an empty one to sync the chain from peers")
            }
        }
        validators = try store.validators(at: tip + 1) ?? genesis.validators
        let records = try store.walRecords(height: tip + 1)
        walCount = records.count
        // The environment validates blocks through this plugin, which does not exist yet: it is attached below.
        let environment = HostEnvironment(signer: context.signer, validator: validator)
        core = QBFTCore(config: QBFTConfig(roundTimeoutBaseMs: config.roundTimeoutBaseMs ?? 200),
                        environment: environment, me: validators.index(of: myKey), height: tip + 1,
                        parentHash: parent.hash, validators: validators, replaying: records)
        heightGauge = try context.metrics.gauge("height", help: "Height of the last finalized block")
        roundGauge = try context.metrics.gauge("round", help: "QBFT round at the current height")
        blocksCommitted = try context.metrics.counter("blocks_total", help: "Blocks finalized")
        transactionsCommitted = try context.metrics.counter("transactions_total", help: "Transactions finalized")
        mempoolGauge = try context.metrics.gauge("mempool_transactions", help: "Transactions waiting")
        rejected = try context.metrics.counter("transactions_rejected_total", help: "Transactions the mempool refused")
        equivocations = try context.metrics.counter("equivocations_total", help: "Conflicting signed messages seen")
        unadmittedInBlocks = try context.metrics.counter(
            "block_transactions_unadmitted_total",
            help: "Transactions of checked blocks this node had not admitted (their signatures checked with the block)")
        heightGauge.set(Double(tip))
        validator.plugin = self

        ledger.readStored = { [store] key in try store.moduleState(key) }
        ledger.genesisSections = genesis.modules
        ledger.testTransactions = genesis.parameters.testTransactions
        ledger.systemCheck = { [unowned self] transaction in systemCheck(transaction) }
        ledger.systemDeliver = { [unowned self] transaction, context, writes in
            systemDeliver(transaction, context: context, writes: writes)
        }
        try context.services.export("bpi.ledger", major: MN_LEDGER_VERSION_MAJOR, minor: MN_LEDGER_VERSION_MINOR,
                                    table: UnsafeRawPointer(ledger.table), size: MemoryLayout<mn_ledger_api>.size)
        try context.net.register("consensus") { [unowned self] peer, bytes in receiveConsensus(bytes, from: peer) }
        try context.net.register("tx") { [unowned self] peer, bytes in
            guard let batch = try? TransactionBatch.decode(bytes) else {
                context.log.debug("undecodable transaction batch from \(peer.short)")
                return
            }
            gossiped += batch
            gossipedBytes += bytes.count
            if gossiped.count >= Self.gossipedTransactionsMax || gossipedBytes >= Self.gossipedBytesMax {
                return admitGossiped()
            }
            guard !gossipedAdmissionQueued else { return }
            gossipedAdmissionQueued = true
            do {
                _ = try context.timers.schedule(afterMs: gossipAdmissionWindowMs) { [unowned self] in admitGossiped() }
            } catch {
                admitGossiped()
            }
        }
        _ = try context.bus.subscribe("bpi.blocks.events")
        for topic in Self.requestTopics { _ = try context.bus.subscribe(topic) }
        try context.net.register("sync") { [unowned self] peer, bytes in receiveSync(bytes, from: peer) }
        try context.net.watchPeers { [unowned self] peer, up in if up { sendStatus(to: peer) } }
        try routes()
        context.log.info("chain \(genesis.chainID) at height \(tip); "
            + (me.map { "validator \($0) of \(validators.count)" } ?? "not a validator"))
    }

    public func start() throws {
        try context.timers.schedule(afterMs: Self.statusIntervalMs, everyMs: Self.statusIntervalMs) { [unowned self] in
            broadcastStatus()
        }
        awaitGenesisModules(waitedMs: 0)
    }

    static let genesisModulesWarnEveryMs: UInt64 = 5_000

    /// No block runs until the modules the genesis names have registered (they start after BPI). Block 1 sets up
    /// their state (`init_chain`), so it is made at once.
    private func awaitGenesisModules(waitedMs: UInt64) {
        let missing = ledger.missingGenesisModules()
        guard missing.isEmpty else {
            if waitedMs > 0 && waitedMs % Self.genesisModulesWarnEveryMs == 0 {
                context.log.warn("waiting \(waitedMs / 1000) s for the module plugin(s) \(missing) the genesis names: "
                    + "install and enable them (`metanode plugin list`)")
            }
            _ = try? context.timers.schedule(afterMs: 50) { [unowned self] in awaitGenesisModules(waitedMs: waitedMs + 50) }
            return
        }
        if core.height == 1 && !genesis.modules.isEmpty { handle(.activate) } else { scheduleWork() }
    }

    // MARK: - Consensus wiring

    func handle(_ event: QBFTEvent) {
        // Until every module the genesis names has registered, this node could not execute blocks as the others
        // do: it takes no part in consensus (modules register milliseconds after BPI starts).
        guard modulesReady else { return }
        run(core.handle(event))
    }

    private var modulesReadyLatch = false
    var modulesReady: Bool {
        if !modulesReadyLatch { modulesReadyLatch = ledger.missingGenesisModules().isEmpty }
        return modulesReadyLatch
    }

    func run(_ actions: [QBFTAction]) {
        var decided: FinalizedBlock?
        for (position, action) in actions.enumerated() {
            switch action {
            case .buildBlock(let height, let round):
                guard height == core.height, let block = buildBlock() else { continue }
                context.log.debug("proposing height \(height) round \(round): \(block.transactions.count) tx")
                run(core.handle(.blockBuilt(block)))
            case .persist:
                // Records in a row go to the WAL together, at the first of them: one write (and fsync) for all.
                if position > 0, case .persist = actions[position - 1] { continue }
                let records = actions[position...].prefix { if case .persist = $0 { true } else { false } }
                    .compactMap { if case .persist(let record) = $0 { record } else { nil } }
                do {
                    try store.appendWAL(height: core.height, seq: walCount, records)
                    walCount += records.count
                } catch {
                    // Without the WAL records the node must not send what follows; stop consensus here.
                    context.log.error("consensus WAL write failed, not sending: \(error)")
                    return
                }
            case .broadcast(let envelope):
                _ = try? context.net.broadcast(envelope.encoded, on: "consensus")
            case .scheduleTimer(let height, let round, let afterMs):
                _ = try? context.timers.schedule(afterMs: afterMs) { [unowned self] in
                    handle(.timerExpired(height: height, round: round))
                }
                roundGauge.set(Double(round))
            case .decide(let finalized):
                decided = finalized
            case .equivocation(let first, let second):
                equivocations.increment()
                context.log.warn("validator \(first.signer) signed two \(first.payload.kind) messages at height "
                    + "\(first.payload.height) round \(first.payload.round); it goes on chain as evidence")
                let evidence = Evidence(first, second)
                if pendingEvidence.count < Self.pendingEvidenceMax,
                   evidence.problem(validators: validators, plugin: Self.name) == nil,
                   (try? store.moduleState(evidence.stateKey)) ?? nil == nil {
                    pendingEvidence[evidence.stateKey] = evidence
                }
            }
        }
        if let decided { commit(decided) }
    }

    /// The next block from the mempool; without transactions if a module's end_block refuses them (nil if it
    /// refuses even that: the round then times out and another proposer tries).
    private func buildBlock() -> Block? {
        let limits = genesis.parameters
        var chosen = mempool.select(countMax: limits.blockTransactionsMax, bytesMax: limits.blockBytesMax) {
            [nonces] sender in nonces[sender] ?? 0
        }
        let nowMs = context.unixTimeMs
        let evidence = pendingEvidence.keys.sorted { $0.lexicographicallyPrecedes($1) }.prefix(Evidence.perBlockMax)
            .map { pendingEvidence[$0]! }
        for _ in 0..<2 {
            if let (block, effects) = rules.buildWithEffects(
                parent: parent, transactions: chosen.map(\.transaction), ids: chosen.map(\.id), proposer: myKey,
                nowMs: nowMs, state: state, validators: validators, evidence: evidence, execute: ledger.execute) {
                // Its own proposal comes back for checking: it was just executed, with these effects.
                checkedBlocks.record(block, .success(effects))
                return block
            }
            // Transactions whose fee their sender can no longer pay leave the mempool, and the rest go ahead.
            let unpayable = Set(ledger.unpayable)
            guard !unpayable.isEmpty else { break }
            var firstDropped: [[UInt8]: UInt64] = [:]
            for index in unpayable {
                let transaction = chosen[index].transaction
                mempool.remove(id: chosen[index].id, sender: transaction.sender, nonce: transaction.nonce)
                firstDropped[transaction.sender] = min(firstDropped[transaction.sender] ?? .max, transaction.nonce)
            }
            context.log.info("dropped \(unpayable.count) transaction(s) whose senders cannot pay their fees")
            // A sender's later nonces cannot follow a dropped one in this block (they wait for a new one).
            chosen = chosen.filter { entry in
                firstDropped[entry.transaction.sender].map { entry.transaction.nonce < $0 } ?? true
            }
        }
        context.log.warn("a module refused a block of \(chosen.count) transactions; proposing an empty one")
        return rules.build(parent: parent, transactions: [], proposer: myKey, nowMs: nowMs, state: state,
                           validators: validators, execute: ledger.execute)
    }

    /// A `finalized` block is past the clock rule: a quorum of validators accepted its timestamp, and this node must
    /// commit it however far behind its own clock is.
    private func check(_ block: Block, finalized: Bool = false) -> Result<BlockRules.Effects, BlockProblem> {
        if let known = checkedBlocks.result(for: block) { return known }
        let nowMs = finalized ? max(context.unixTimeMs, block.header.timestampMs) : context.unixTimeMs
        var unadmitted: UInt64 = 0
        defer { if unadmitted > 0 { unadmittedInBlocks.add(unadmitted) } }
        let result = rules.check(block, parent: parent, nowMs: nowMs, state: state, validators: validators,
                                 nextNonce: { [nonces] sender in nonces[sender] ?? 0 },
                                 admitted: { [mempool] encoded in
                                     guard let entry = mempool.entry(encoded: encoded) else {
                                         unadmitted += 1
                                         return nil
                                     }
                                     return (entry.transaction, entry.id)
                                 },
                                 isRecorded: { [store] key in ((try? store.moduleState(key)) ?? nil) != nil },
                                 execute: ledger.execute)
        checkedBlocks.record(block, result)
        if case .failure(let problem) = result {
            context.log.warn("refused block \(Hex.encode(block.hash).prefix(12)) at height \(block.header.height): "
                + "\(problem)")
        }
        return result
    }

    fileprivate func problem(with block: Block) -> String? {
        if case .failure(let problem) = check(block) { return problem.description }
        return nil
    }

    /// Stores a decided or synced block, then moves consensus to the next height.
    private func commit(_ finalized: FinalizedBlock) {
        let block = finalized.block
        guard case .success(let effects) = check(block, finalized: true) else { return }
        do {
            try store.commit(finalized, effects: effects, walCount: walCount)
        } catch {
            context.log.error("could not store block \(block.header.height): \(error)")
            return
        }
        walCount = 0
        ledger.committed(writes: effects.writes)
        for piece in block.evidence { pendingEvidence[piece.stateKey] = nil }
        parent = BlockRules.Parent(header: block.header)
        state = effects.state
        checkedBlocks.removeAll()
        for (sender, nonce) in effects.nextNonces { nonces[sender] = nonce }
        mempool.prune(senders: effects.nextNonces.keys) { [nonces] sender in nonces[sender] ?? 0 }
        blocksCommitted.increment()
        transactionsCommitted.add(UInt64(effects.transactionIDs.count))
        heightGauge.set(Double(block.header.height))
        mempoolGauge.set(Double(mempool.count))
        context.log.debug("finalized height \(block.header.height) round \(finalized.certificate.round): "
            + "\(block.transactions.count) tx")
        publishBlock(finalized, effects: effects)
        if let changed = effects.writes[BytesKey(ValidatorSetChange.stateKey)], let encoded = changed,
           let next = try? ValidatorSet.decode(encoded) {
            context.log.info("validator set changes at height \(block.header.height + 1): \(next.count) validators; "
                + (next.index(of: myKey).map { "this node is validator \($0)" } ?? "this node is not one"))
            validators = next
        }
        run(core.advance(to: block.header.height + 1, parentHash: block.hash, validators: validators, me: me))
        scheduleWork()
    }

    /// Starts the height now if transactions wait, else after the heartbeat (if any).
    private func scheduleWork() {
        if let heartbeat { try? context.timers.cancel(heartbeat) }
        heartbeat = nil
        if mempool.count > 0 {
            handle(.activate)
        } else if heartbeatMs > 0 {
            let height = core.height
            heartbeat = try? context.timers.schedule(afterMs: heartbeatMs) { [unowned self] in
                if core.height == height { handle(.activate) }
            }
        }
    }

    private func receiveConsensus(_ bytes: [UInt8], from peer: PeerID) {
        guard let envelope = try? ConsensusEnvelope.decode(bytes) else {
            context.log.debug("undecodable consensus message from \(peer.short)")
            return
        }
        // A proposal's transactions are most likely among the gossip waiting for admission: admitted first, each
        // signature is checked once, where the block's check would check it and admission again after.
        if case .proposal = envelope, !gossiped.isEmpty { admitGossiped() }
        handle(.received(envelope))
    }

    // MARK: - Event stream

    /// One line of JSON per finalized block on bus topic "bpi.stream.blocks", which the node serves as server-sent
    /// events at GET /v1/streams/bpi/blocks: height, hash, round, transaction count and every module event.
    struct BlockEvent: Encodable {
        struct Event: Encodable {
            var transaction: String
            var type: String
            var data: String
        }

        var height: UInt64
        var hash: String
        var round: UInt32
        var timestampMs: UInt64
        var transactions: Int
        var failed: Int
        var events: [Event]
    }

    private func publishBlock(_ finalized: FinalizedBlock, effects: BlockRules.Effects) {
        let events = Self.blockEvents(finalized, ids: effects.transactionIDs, results: effects.results)
        for part in BlockEvents.parts(height: events.height, events: events.events) {
            _ = try? context.bus.publish("bpi.stream.events", part.encoded)
        }
        // Rendering every event in hex and JSON costs as much as indexing them; only for someone following it.
        guard context.bus.hasListeners("bpi.stream.blocks"),
              let json = Self.blockEventJSON(finalized, ids: effects.transactionIDs, results: effects.results) else {
            return
        }
        _ = try? context.bus.publish("bpi.stream.blocks", json)
    }

    static func blockEvents(_ finalized: FinalizedBlock, ids: [[UInt8]], results: [TransactionResult]) -> BlockEvents {
        var events: [BlockEvents.Event] = []
        events.reserveCapacity(results.reduce(0) { $0 + $1.events.count })
        for (id, result) in zip(ids, results) {
            for event in result.events { events.append(.init(transaction: id, type: event.type, data: event.data)) }
        }
        return BlockEvents(height: finalized.block.header.height, events: events)
    }

    static func blockEventJSON(_ finalized: FinalizedBlock, ids: [[UInt8]], results: [TransactionResult]) -> [UInt8]? {
        var events: [BlockEvent.Event] = []
        for (id, result) in zip(ids, results) {
            for event in result.events {
                events.append(.init(transaction: Hex.encode(id), type: event.type, data: Hex.encode(event.data)))
            }
        }
        let header = finalized.block.header
        let event = BlockEvent(height: header.height, hash: Hex.encode(header.hash), round: finalized.certificate.round,
                               timestampMs: header.timestampMs, transactions: finalized.block.transactions.count,
                               failed: results.filter { $0.status != 0 }.count, events: events)
        return (try? JSONEncoder().encode(event)).map(Array.init)
    }

    static let eventsReplyBlocksMax = 16
    /// A replay's parts add up to at most this (a bus message is at most 4 MiB; a part at most 1 MiB).
    static let eventsReplyBytesMax = 3 << 20

    /// Answers "bpi.blocks.events" (u64 height, optionally u32 first event): the stored blocks' events from there
    /// on, in parts, at most `eventsReplyBlocksMax` blocks and `eventsReplyBytesMax` bytes.
    public func receive(_ message: BusMessage) {
        guard message.isRequest else { return }
        guard message.topic == "bpi.blocks.events" else { return answerRequest(message) }
        var parts: [BlockEvents] = []
        var request = WireReader(message.payload, context: "bpi.blocks.events")
        if let from = try? request.u64("height") {
            var height = max(from, 1)
            var first = message.payload.count == 12 ? Int((try? request.u32("first event")) ?? 0) : 0
            var bytes = 0, blocks = 0
            replay: while blocks < Self.eventsReplyBlocksMax, height <= parent.height,
                          let finalized = try? store.block(at: height) {
                let ids: [[UInt8]], results: [TransactionResult]
                let stored: [(id: [UInt8], result: TransactionResult)]?
                do { stored = try store.blockResults(at: height) } catch {
                    context.log.error("cannot replay the events of block \(height): \(error)")
                    break replay
                }
                if let stored {
                    (ids, results) = (stored.map(\.id), stored.map(\.result))
                } else {  // a block an earlier version stored
                    ids = finalized.block.transactions.compactMap { try? Transaction.decode($0).id }
                    results = ids.map { id in
                        ((try? store.finalTransaction(id)) ?? nil)?.result
                            ?? TransactionResult(status: 0, reason: "", events: [])
                    }
                }
                let events = Self.blockEvents(finalized, ids: ids, results: results).events
                for part in BlockEvents.parts(height: height, events: events, from: min(first, events.count)) {
                    let size = part.encoded.count
                    if !parts.isEmpty && bytes + size > Self.eventsReplyBytesMax { break replay }
                    parts.append(part)
                    bytes += size
                }
                height += 1
                first = 0
                blocks += 1
            }
        }
        _ = try? context.bus.reply(to: message, BlockEvents.encodeReplay(parts))
    }

    // MARK: - BPI's own transactions

    /// Admission of "bpi/…" kinds.
    private func systemCheck(_ transaction: Transaction) -> MempoolRejection? {
        guard transaction.kind == ValidatorSetChange.kind else { return .unknownKind(transaction.kind) }
        do throws(WireError) {
            let change = try ValidatorSetChange.decode(transaction.payload)
            if let problem = change.problem(chainID: genesis.chainID, current: validators, plugin: Self.name) {
                return .refused(module: Self.name, reason: problem)
            }
            return nil
        } catch {
            return .refused(module: Self.name, reason: error.message)
        }
    }

    /// Execution of "bpi/…" kinds: a validator set change approved by a quorum of the block's validators takes
    /// effect from the next height.
    private func systemDeliver(_ transaction: Transaction, context: BlockContext, writes: [StateKey: [UInt8]?])
        -> (TransactionResult, [StateKey: [UInt8]?]) {
        func failed(_ reason: String) -> (TransactionResult, [StateKey: [UInt8]?]) {
            (TransactionResult(status: UInt32(MN_ERR_INVALID_ARGUMENT), reason: reason, events: []), [:])
        }
        guard transaction.kind == ValidatorSetChange.kind else {
            return (TransactionResult(status: UInt32(MN_ERR_NOT_FOUND),
                                      reason: "no module handles kind '\(transaction.kind)'", events: []), [:])
        }
        guard writes[StateKey(ValidatorSetChange.stateKey)] == nil else {
            return failed("this block already changes the validator set")
        }
        let change: ValidatorSetChange
        do throws(WireError) { change = try ValidatorSetChange.decode(transaction.payload) } catch {
            return failed(error.message)
        }
        if let problem = change.problem(chainID: genesis.chainID, current: validators, plugin: Self.name) {
            return failed(problem)
        }
        return (TransactionResult(status: 0, reason: "", events: [.init(type: "validators", data: change.newSet.hash)]),
                [StateKey(ValidatorSetChange.stateKey): .some(change.newSet.encoded)])
    }

    // MARK: - Transactions

    /// Transactions peers gossiped, waiting for admission: the batches that arrive within `gossipAdmissionWindowMs`
    /// of the first are admitted together by a timer, after the work already queued (consensus messages, blocks), in
    /// one run of signature checks; a proposal admits what waits before it is checked. Admitted one batch at a time
    /// between the consensus messages and blocks, a transfer took 4.5% more CPU and the chain 7% fewer transfers a
    /// second. The window (5 ms by default; 0 admits right after the queued work) leaves gossip waiting more often
    /// when a proposal arrives, which then admits it first: under full load rounds take longer and the chain makes
    /// a fifth fewer, larger blocks, each of which costs every node a fixed share besides its transactions, and 4%
    /// more transfers a second, for 5-8 ms more latency at half load (README, "Blocks' own cost").
    private var gossiped: [[UInt8]] = []
    private var gossipedBytes = 0
    private var gossipedAdmissionQueued = false
    /// Past either, what waits is admitted at once.
    static let gossipedTransactionsMax = 4_096
    static let gossipedBytesMax = 4 * gossipBytesMax

    private func admitGossiped() {
        gossipedAdmissionQueued = false
        guard !gossiped.isEmpty else { return }
        let batch = gossiped
        gossiped = []
        gossipedBytes = 0
        _ = admit(batch, gossip: false)
    }

    /// Gossip messages stay well under the transport's 4 MiB per message.
    static let gossipBytesMax = 1 << 20

    /// Admits transactions to the mempool, in order; gossips the accepted ones (if asked) and wakes consensus.
    func admit(_ batch: [[UInt8]], gossip: Bool) -> [Result<[UInt8], MempoolRejection>] {
        var results: [Result<[UInt8], MempoolRejection>] = []
        results.reserveCapacity(batch.count)
        var accepted: [[UInt8]] = []
        var acceptedBytes = 0
        let nextNonceOf = { [nonces] (sender: BytesKey) in nonces[sender] ?? 0 }
        let prechecked = mempool.precheck(batch, nextNonceOf: nextNonceOf)
        for (encoded, prechecked) in zip(batch, prechecked) {
            let result = admitOne(encoded, nextNonceOf: nextNonceOf, prechecked: prechecked)
            results.append(result)
            guard gossip, case .success = result else { continue }
            if acceptedBytes + encoded.count > Self.gossipBytesMax {
                _ = try? context.net.broadcast(TransactionBatch.encode(accepted), on: "tx")
                accepted = []
                acceptedBytes = 0
            }
            accepted.append(encoded)
            acceptedBytes += encoded.count + 4
        }
        if !accepted.isEmpty { _ = try? context.net.broadcast(TransactionBatch.encode(accepted), on: "tx") }
        mempoolGauge.set(Double(mempool.count))
        if !core.isActive, mempool.count > 0 { scheduleWork() }
        return results
    }

    private func admitOne(_ encoded: [UInt8], nextNonceOf: (BytesKey) -> UInt64, prechecked: Mempool.Prechecked)
        -> Result<[UInt8], MempoolRejection> {
        let admissible = { [ledger] (transaction: EncodedTransaction, id: [UInt8]) in
            ledger.check(transaction, id: id)
        }
        switch mempool.add(encoded, nextNonceOf: nextNonceOf, prechecked: prechecked, admissible: admissible) {
        case .failure(let rejection):
            rejected.increment()
            return .failure(rejection)
        case .success(let (entry, _)):
            return .success(entry.id)
        }
    }

    // MARK: - Block sync

    private func broadcastStatus() {
        _ = try? context.net.broadcast(statusMessage(), on: "sync")
    }

    private func sendStatus(to peer: PeerID) {
        _ = try? context.net.send(statusMessage(), to: peer, on: "sync")
    }

    /// `u8 1 | u64 next height`: what this node needs next.
    private func statusMessage() -> [UInt8] {
        var writer = WireWriter(capacity: 9)
        writer.u8(1)
        writer.u64(core.height)
        return writer.bytes
    }

    private func receiveSync(_ bytes: [UInt8], from peer: PeerID) {
        guard modulesReady else { return }  // see handle(_:)
        var reader = WireReader(bytes, context: "sync message")
        guard let tag = try? reader.u8("type") else { return }
        switch tag {
        case 1:
            guard let needed = try? reader.u64("height"), needed >= 1, needed < core.height else { return }
            var height = needed
            while height < core.height, height < needed + UInt64(Self.syncBatchMax),
                  let encoded = try? store.encodedBlock(at: height) {
                _ = try? context.net.send([2] + encoded, to: peer, on: "sync")
                height += 1
            }
        case 2:
            guard let finalized = try? FinalizedBlock.decode(Array(bytes.dropFirst())) else { return }
            let header = finalized.block.header
            guard header.height == core.height else { return }
            if let problem = finalized.certificate.problem(blockHash: finalized.block.hash,
                                                           validators: validators, plugin: Self.name) {
                context.log.warn("sync: \(peer.short) sent height \(header.height) with a bad certificate: \(problem)")
                return
            }
            commit(finalized)
        default:
            return
        }
    }
}

/// The plugin, for the consensus core's block checks (weak: the plugin owns the core).
final class BlockValidatorLink: @unchecked Sendable {  // set once in BPI.init; used on BPI's executor thread
    weak var plugin: BPI?
}

/// Signs through the host (which scopes the node key to "bpi") and validates through the plugin.
struct HostEnvironment: QBFTEnvironment, @unchecked Sendable {
    let plugin = BPI.name
    let signer: Signer
    let validator: BlockValidatorLink

    func sign(_ message: [UInt8]) -> [UInt8] {
        do { return try signer.sign(message) } catch {
            preconditionFailure("the host refused to sign a consensus message: \(error)")
        }
    }

    func problem(with block: Block, parentHash: [UInt8]) -> String? {
        guard let plugin = validator.plugin else { return "the ledger plugin is gone" }
        return plugin.problem(with: block)
    }
}
