import MetanodeWire

/// How a block is built and checked against its parent, shared by the proposer and every validator so both compute
/// the same roots. Pure: ledger state comes in as a nonce lookup.
public struct BlockRules: Sendable {
    public let genesis: Genesis
    /// How far ahead of a validator's clock a proposer's timestamp may be.
    public static let clockDriftMaxMs: UInt64 = 2_000

    /// The most a block's encoded transaction results may add up to. Modules decide a result's size (up to 64 events
    /// of 4 KiB each, and the fee's), so without a bound one block's results could outgrow the kv batch a validator
    /// stores the block in (64 MiB, with the block of at most 3 MiB, its state changes and a checkpoint), and no
    /// validator could ever store it. A proposer keeps the transactions whose results fit; a validator refuses a
    /// block past it.
    public var resultsBytesMax: Int

    public static let defaultResultsBytesMax = 16 << 20

    /// The most a block's module state writes (evidence records among them) may add up to. A value may take 1 MiB and
    /// a transaction could write many, so without a bound one block's writes could outgrow the kv batch that stores
    /// them at a state checkpoint, and no validator could ever store the block. That batch holds at most
    /// MN_KV_BATCH_BYTES_MAX (64 MiB) and MN_KV_BATCH_OPS_MAX (100,000 entries):
    /// - the block, 3 MiB at most;
    /// - its results, 16 MiB, with its transaction ids beside them (0.7 MiB for 20,000);
    /// - what waited for the checkpoint: under 24 MiB of state changes, and 20,000 entries with the index keys among
    ///   them (0.9 MiB more);
    /// - a nonce key and an index key per transaction: 20,000 of each at most, 1.7 MiB;
    /// - these writes, 16 MiB and 32,768 keys;
    /// about 62.4 MiB and 92,900 entries in all. A proposer keeps the transactions whose writes fit; a validator
    /// refuses a block past it. A first block's genesis state (`Execution.genesisWrites`) is not counted: the genesis
    /// file (4 MiB) bounds it.
    public var writesMax: WritesSize

    public static let defaultWritesMax = WritesSize(keys: 32_768, bytes: 16 << 20)

    /// The state key hashes of the blocks built and checked with these rules, remembered.
    public let keyDigests: StateKeyDigests

    public init(genesis: Genesis, resultsBytesMax: Int = Self.defaultResultsBytesMax,
                writesMax: WritesSize = Self.defaultWritesMax, keyDigests: StateKeyDigests = StateKeyDigests()) {
        precondition(resultsBytesMax > 0, "resultsBytesMax must be positive")
        precondition(writesMax.keys > 0 && writesMax.bytes > 0, "writesMax must be positive")
        self.genesis = genesis
        self.resultsBytesMax = resultsBytesMax
        self.writesMax = writesMax
        self.keyDigests = keyDigests
    }

    /// How many of `encodedResults`, from the first, fit in `resultsBytesMax` together.
    func resultsFitting(_ encodedResults: [[UInt8]]) -> Int {
        var bytes = 0
        for (index, result) in encodedResults.enumerated() {
            bytes += result.count
            if bytes > resultsBytesMax { return index }
        }
        return encodedResults.count
    }

    /// The bound on an execution's writes: `writesMax` beyond the genesis state a first block writes.
    func writesLimit(_ execution: Execution) -> WritesSize { writesMax + execution.genesisWrites }

    /// How many of its transactions a proposer keeps when its block's writes, `total`, pass the bound: those whose
    /// writes so far, with what came after the last of them (end_block's writes, evidence), fit, by the executor's
    /// measure after each; half when it gave none. Always fewer than all, so that building again ends.
    func transactionsKept(_ execution: Execution, total: WritesSize) -> Int {
        let count = execution.results.count, after = execution.writesAfterEach
        guard count > 0, after.count == count else { return count / 2 }
        let limit = writesLimit(execution), rest = total - after[count - 1]
        let fitting = after.firstIndex { !($0 + rest).fits(limit) } ?? count
        return min(fitting, count - 1)
    }

    /// The plugin name consensus signatures are scoped to.
    public static let plugin = "bpi"

    /// What the parent of a height contributes: its hash, timestamp and PoH hash (the genesis for height 1).
    public struct Parent: Sendable, Hashable {
        public var height: UInt64
        public var hash: [UInt8]
        public var timestampMs: UInt64
        public var pohHash: [UInt8]

        public init(height: UInt64, hash: [UInt8], timestampMs: UInt64, pohHash: [UInt8]) {
            self.height = height
            self.hash = hash
            self.timestampMs = timestampMs
            self.pohHash = pohHash
        }

        public init(header: BlockHeader) {
            self.init(height: header.height, hash: header.hash, timestampMs: header.timestampMs,
                      pohHash: header.pohHash)
        }
    }

    public var genesisParent: Parent {
        Parent(height: 0, hash: genesis.hash, timestampMs: genesis.genesisTimeMs,
               pohHash: ProofOfHistory.genesisSeed(chainID: genesis.chainID))
    }

    /// The block's effect on ledger state: each sender's next nonce after it, and the state tree with it applied.
    public struct Effects: Sendable {
        /// By sender public key.
        public var nextNonces: [BytesKey: UInt64] = [:]
        public var transactionIDs: [[UInt8]] = []
        public var results: [TransactionResult] = []
        /// Each result's encoding, in order: the leaves of the results root, and what the chain store keeps.
        public var encodedResults: [[UInt8]] = []
        /// Module state writes (full keys; nil deletes), stored with the block.
        public var writes: [BytesKey: [UInt8]?] = [:]
        public var state = StateTree()
    }

    /// The state key of a sender's next nonce; its value is the nonce as a big-endian u64.
    public static func nonceKey(_ sender: [UInt8]) -> [UInt8] { Array("bpi/nonce/".utf8) + sender }

    public static func nonceValue(_ nonce: UInt64) -> [UInt8] {
        var writer = WireWriter(capacity: 8)
        writer.u64(nonce)
        return writer.bytes
    }

    /// `state` with `nextNonces` and `writes` applied: `state.set(all:)` with each sender's nonce key and value, then
    /// each write, the key hashes taken from `keyDigests`.
    func applying(_ nextNonces: [BytesKey: UInt64], _ writes: [BytesKey: [UInt8]?], to state: StateTree)
        -> StateTree {
        var state = state
        // A dictionary's keys and values go in the same order.
        let keyHashes = keyDigests.keyHashes(nonceKeysOf: nextNonces.keys, keys: writes.keys)
        var changes: [(keyHash: Digest256, valueHash: Digest256?)] = []
        changes.reserveCapacity(keyHashes.count)
        var next = keyHashes.makeIterator()
        for nonce in nextNonces.values {
            changes.append((next.next()!, withUnsafeBytes(of: nonce.bigEndian) { WireCrypto.digest($0) }))
        }
        for value in writes.values { changes.append((next.next()!, value.map(StateTree.valueDigest))) }
        state.set(allHashed: changes)
        return state
    }

    /// The header a proposer puts on `transactions` (already in execution order, nonces checked by the mempool).
    /// Returns nil if a module refused the block at end_block (the proposer then proposes without transactions).
    public func build(parent: Parent, transactions: [EncodedTransaction], proposer: [UInt8],
                      nowMs: UInt64, state: StateTree, validators: ValidatorSet, evidence: [Evidence] = [],
                      execute: BlockExecutor) -> Block? {
        buildWithEffects(parent: parent, transactions: transactions, proposer: proposer, nowMs: nowMs,
                         state: state, validators: validators, evidence: evidence, execute: execute)?.block
    }

    /// `build`, with the effects `check` would find for the block: a proposer need not execute its block again.
    /// `ids` are the transactions' ids where the caller has them (the mempool made each at admission, from these
    /// bytes); nil makes them from the transactions' bytes.
    public func buildWithEffects(parent: Parent, transactions: [EncodedTransaction], ids: [[UInt8]]? = nil,
                                 proposer: [UInt8], nowMs: UInt64, state: StateTree, validators: ValidatorSet,
                                 evidence: [Evidence] = [], execute: BlockExecutor) -> (block: Block, effects: Effects)? {
        precondition(ids.map { $0.count == transactions.count } ?? true, "ids holds each transaction's id, in order")
        let ids = ids ?? transactions.map(\.id)
        var nextNonces: [BytesKey: UInt64] = [:]
        for transaction in transactions { nextNonces[transaction.senderKey] = transaction.nonce + 1 }
        let timestampMs = max(nowMs, parent.timestampMs)
        let context = BlockContext(height: parent.height + 1, timestampMs: timestampMs, proposer: proposer)
        guard case .success(var execution) = execute(context, transactions, ids) else { return nil }
        let evidence = Array(evidence.prefix(Evidence.perBlockMax))
        for piece in evidence { execution.writes[BytesKey(piece.stateKey)] = .some(piece.hash) }
        let encodedResults = execution.results.map(\.encoded)
        // Results or writes past their bound: the block takes the transactions before them. Executed again, those
        // give the same results and writes (each depends only on the state the ones before it left).
        var kept = resultsFitting(encodedResults)
        let writesSize = WritesSize(of: execution.writes)
        if !writesSize.fits(writesLimit(execution)) {
            guard !transactions.isEmpty else { return nil }  // end_block alone writes too much: no block can pass
            kept = min(kept, transactionsKept(execution, total: writesSize))
        }
        if kept < transactions.count {
            return buildWithEffects(parent: parent, transactions: Array(transactions.prefix(kept)),
                                    ids: Array(ids.prefix(kept)),
                                    proposer: proposer, nowMs: nowMs,
                                    state: state, validators: validators, evidence: evidence, execute: execute)
        }
        var after = applying(nextNonces, execution.writes, to: state)
        let poh = ProofOfHistory.run(from: parent.pohHash, entries: ids, ticksPerEntry: genesis.parameters.pohTicksPerEntry)
        let header = BlockHeader(
            chainID: genesis.chainID, height: parent.height + 1, parentHash: parent.hash,
            timestampMs: timestampMs, proposer: proposer,
            transactionsRoot: Block.transactionsRoot(ids: ids), stateRoot: after.root,
            resultsRoot: TransactionResult.resultsRoot(encoded: encodedResults), validatorSetHash: validators.hash,
            pohCount: poh.count, pohHash: poh.hash, evidenceRoot: Evidence.root(evidence))
        var effects = Effects()
        effects.nextNonces = nextNonces
        effects.transactionIDs = ids
        effects.results = execution.results
        effects.encodedResults = encodedResults
        effects.writes = execution.writes
        effects.state = after
        return (Block(header: header, transactions: transactions.map(\.encoded), evidence: evidence), effects)
    }

    /// Checks `block` against its parent and the ledger; returns its effects or why it is invalid. `admitted` gives
    /// the transactions this node already admitted with exactly those bytes (the mempool's): decoded, with their id,
    /// signature verified. Each is then taken as it is, so a signature is verified once per node. Matching the whole
    /// encoding matters: the id leaves the signature out, so a proposer could pair a known body with a signature that
    /// does not verify, and a node that syncs the block later, with nothing admitted, would refuse it.
    /// `validators` is the set in force at the block's height.
    public func check(_ block: Block, parent: Parent, nowMs: UInt64, state: StateTree, validators: ValidatorSet,
                      nextNonce: (_ sender: BytesKey) -> UInt64,
                      admitted: (_ encoded: [UInt8]) -> (transaction: EncodedTransaction, id: [UInt8])? = { _ in nil },
                      isRecorded: ([UInt8]) -> Bool = { _ in false }, execute: BlockExecutor)
        -> Result<Effects, BlockProblem> {
        let header = block.header
        guard header.chainID == genesis.chainID else { return .failure("chain id '\(header.chainID)'") }
        guard header.height == parent.height + 1 else {
            return .failure("height \(header.height) on a parent at \(parent.height)")
        }
        guard header.parentHash == parent.hash else { return .failure("parent hash differs") }
        guard header.timestampMs >= parent.timestampMs else {
            return .failure("timestamp \(header.timestampMs) is before the parent's \(parent.timestampMs)")
        }
        guard header.timestampMs <= nowMs + Self.clockDriftMaxMs else {
            return .failure(BlockProblem(dependingOnClock:
                "timestamp \(header.timestampMs) is more than \(Self.clockDriftMaxMs) ms ahead"))
        }
        guard header.validatorSetHash == validators.hash else { return .failure("validator set hash") }
        guard validators.index(of: header.proposer) != nil else { return .failure("proposer is no validator") }
        guard block.transactions.count <= genesis.parameters.blockTransactionsMax else {
            let max = genesis.parameters.blockTransactionsMax
            return .failure("\(block.transactions.count) transactions; at most \(max)")
        }
        var effects = Effects()
        var transactions: [EncodedTransaction] = []
        transactions.reserveCapacity(block.transactions.count)
        var bytes = 0
        for (index, encoded) in block.transactions.enumerated() {
            bytes += encoded.count
            guard bytes <= genesis.parameters.blockBytesMax else { return .failure("transactions exceed the byte limit") }
            let transaction: EncodedTransaction, id: [UInt8]
            if let known = admitted(encoded) {
                (transaction, id) = known
            } else {
                do { transaction = try EncodedTransaction(encoded) } catch {
                    return .failure("transaction \(index): \(error.message)")
                }
                id = transaction.id
                guard transaction.hasValidSignature else { return .failure("transaction \(index): bad signature") }
            }
            guard transaction.isFor(chainID: genesis.chainID) else { return .failure("transaction \(index): chain id") }
            let sender = transaction.senderKey
            let expected = effects.nextNonces[sender] ?? nextNonce(sender)
            guard transaction.nonce == expected else {
                return .failure("transaction \(index): nonce \(transaction.nonce), expected \(expected)")
            }
            effects.nextNonces[sender] = expected + 1
            effects.transactionIDs.append(id)
            transactions.append(transaction)
        }
        guard header.transactionsRoot == Block.transactionsRoot(ids: effects.transactionIDs) else {
            return .failure("transactions root")
        }
        let poh = ProofOfHistory.run(from: parent.pohHash, entries: effects.transactionIDs,
                                     ticksPerEntry: genesis.parameters.pohTicksPerEntry)
        guard header.pohCount == poh.count, header.pohHash == poh.hash else { return .failure("proof of history") }
        let context = BlockContext(height: header.height, timestampMs: header.timestampMs, proposer: header.proposer)
        var execution: Execution
        switch execute(context, transactions, effects.transactionIDs) {
        case .success(let done): execution = done
        case .failure(let problem): return .failure(problem)
        }
        guard header.evidenceRoot == Evidence.root(block.evidence) else { return .failure("evidence root") }
        for (index, piece) in block.evidence.enumerated() {
            if let problem = piece.problem(validators: validators, plugin: Self.plugin) {
                return .failure("evidence \(index): \(problem)")
            }
            let key = piece.stateKey
            guard execution.writes[BytesKey(key)] == nil, !isRecorded(key) else {
                return .failure("evidence \(index) is already recorded")
            }
            execution.writes[BytesKey(key)] = .some(piece.hash)
        }
        let writesSize = WritesSize(of: execution.writes)
        guard writesSize.fits(writesLimit(execution)) else {
            return .failure("its state writes take \(writesSize); at most \(writesLimit(execution))")
        }
        let encodedResults = execution.results.map(\.encoded)
        guard resultsFitting(encodedResults) == encodedResults.count else {
            let bytes = encodedResults.reduce(0) { $0 + $1.count }
            return .failure("its transactions' results take \(bytes) bytes; at most \(resultsBytesMax)")
        }
        guard header.resultsRoot == TransactionResult.resultsRoot(encoded: encodedResults) else {
            return .failure("results root")
        }
        effects.results = execution.results
        effects.encodedResults = encodedResults
        effects.writes = execution.writes
        effects.state = applying(effects.nextNonces, execution.writes, to: state)
        guard header.stateRoot == effects.state.root else { return .failure("state root") }
        return .success(effects)
    }

}

/// Why a block was refused.
public struct BlockProblem: Error, Equatable, Sendable, ExpressibleByStringLiteral, ExpressibleByStringInterpolation,
    CustomStringConvertible {
    public let description: String
    /// Whether the refusal came from this node's clock (a timestamp too far ahead of it), so that the same block may
    /// pass a later check: such a refusal is not remembered (`CheckedBlocks`).
    public private(set) var dependsOnClock = false

    public init(stringLiteral value: String) { description = value }
    public init(dependingOnClock description: String) {
        self.description = description
        dependsOnClock = true
    }
    public init(stringInterpolation: DefaultStringInterpolation) { description = String(stringInterpolation: stringInterpolation) }
}
