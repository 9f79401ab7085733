import BPICore
import MetanodeWire
import Testing

/// Checking a proposed block against what this node already admitted.
@Suite("Block rules")
struct BlockRulesTests {
    static let proposer = Ed25519Signer(seed: WireCrypto.domainHash("proposer", []))
    static let alice = Ed25519Signer(seed: WireCrypto.domainHash("alice", []))

    /// Every transaction accepted with no writes: these tests are about signatures, not modules.
    static func execute(_ context: BlockContext, _ transactions: [EncodedTransaction], _ ids: [[UInt8]])
        -> Result<Execution, BlockProblem> {
        .success(Execution(results: transactions.map { _ in .accepted }, writes: [:]))
    }

    static func setUp() throws -> (BlockRules, ValidatorSet, Mempool, Block) {
        let validators = try ValidatorSet(keys: [proposer.publicKey])
        let rules = BlockRules(genesis: Genesis(chainID: "dev", genesisTimeMs: 1_000, validators: validators))
        var pool = Mempool(chainID: "dev")
        for nonce in 0..<3 as Range<UInt64> {
            let encoded = try Transaction.signed(chainID: "dev", signer: alice, nonce: nonce, fee: 10, kind: "test/op",
                                                 payload: [UInt8(nonce)]).encoded
            guard case .success = pool.add(encoded, nextNonce: 0) else { throw WireError(.invalidValue, "admit") }
        }
        let chosen = pool.select(countMax: 10, bytesMax: 1 << 20) { _ in 0 }
        let block = try #require(rules.build(
            parent: rules.genesisParent, transactions: chosen.map(\.transaction),
            proposer: proposer.publicKey, nowMs: 2_000, state: StateTree(), validators: validators, execute: execute))
        return (rules, validators, pool, block)
    }

    static func check(_ rules: BlockRules, _ validators: ValidatorSet, _ block: Block, admittedBy pool: Mempool?)
        -> Result<BlockRules.Effects, BlockProblem> {
        rules.check(block, parent: rules.genesisParent, nowMs: 2_000, state: StateTree(), validators: validators,
                    nextNonce: { _ in 0 },
                    admitted: { encoded in pool?.entry(encoded: encoded).map { ($0.transaction, $0.id) } },
                    execute: execute)
    }

    @Test("a block of admitted transactions checks the same with and without what the mempool knows")
    func admittedTransactionsAreTakenAsAdmitted() throws {
        let (rules, validators, pool, block) = try Self.setUp()
        var known = try Self.check(rules, validators, block, admittedBy: pool).get()
        var fresh = try Self.check(rules, validators, block, admittedBy: nil).get()
        #expect(known.transactionIDs.count == 3)
        #expect(known.transactionIDs == fresh.transactionIDs && known.state.root == fresh.state.root)
    }

    /// The id leaves the signature out, so a known id alone must not vouch for a signature: a node syncing the block
    /// later, with nothing admitted, would verify it and refuse the block the others finalized.
    @Test("a proposer pairing an admitted transaction's body with a bad signature is refused")
    func knownBodyWithABadSignatureIsRefused() throws {
        let (rules, validators, pool, block) = try Self.setUp()
        var forged = block
        forged.transactions[1][forged.transactions[1].count - 1] ^= 1
        #expect(Transaction.id(ofEncoded: forged.transactions[1]) == Transaction.id(ofEncoded: block.transactions[1]))
        #expect(forged.header == block.header, "the header commits to ids, which leave the signature out")
        for admitted in [pool, nil] as [Mempool?] {
            guard case .failure(let problem) = Self.check(rules, validators, forged, admittedBy: admitted) else {
                Issue.record("the forged block was accepted")
                continue
            }
            #expect("\(problem)" == "transaction 1: bad signature")
        }
    }

    /// The node's memo of checked blocks, found by header hash: the hash leaves signatures out, so a forged block under
    /// an honest header must get its own check, in either order.
    @Test("a checked block's result counts only for a block equal in every byte, in either order")
    func checkedBlocksMatchWholeBlocks() throws {
        let (rules, validators, pool, block) = try Self.setUp()
        var forged = block
        forged.transactions[1][forged.transactions[1].count - 1] ^= 1
        #expect(forged.hash == block.hash, "the two blocks share a header")
        let honestResult = Self.check(rules, validators, block, admittedBy: pool)
        let forgedResult = Self.check(rules, validators, forged, admittedBy: pool)
        guard case .success = honestResult, case .failure = forgedResult else {
            Issue.record("the honest block must pass and the forged one fail")
            return
        }

        // Honest first: the forged block must not inherit its success.
        var checked = CheckedBlocks()
        checked.record(block, honestResult)
        #expect(checked.result(for: forged) == nil)
        guard case .success(let effects)? = checked.result(for: block) else {
            Issue.record("the honest block's own success was not found")
            return
        }
        #expect(effects.transactionIDs.count == 3)

        // Forged first: its failure must not stand for the honest block, which would stall the height.
        checked.removeAll()
        checked.record(forged, forgedResult)
        #expect(checked.result(for: block) == nil)
        guard case .failure(let problem)? = checked.result(for: forged) else {
            Issue.record("the forged block's own failure was not found")
            return
        }
        #expect("\(problem)" == "transaction 1: bad signature")
        // The honest block's check replaces the forged one's under the shared header.
        checked.record(block, honestResult)
        #expect(checked.count == 1)
        #expect(checked.result(for: forged) == nil)
        #expect(checked.result(for: block) != nil)
    }

    @Test("checked blocks stay bounded by entriesMax, and a block's own entry survives its recording")
    func checkedBlocksAreBounded() throws {
        let (_, _, _, block) = try Self.setUp()
        var checked = CheckedBlocks()
        var blocks: [Block] = []
        for step in 0..<UInt64(CheckedBlocks.entriesMax + 5) {
            var other = block
            other.header.timestampMs += step  // another header, so another hash
            blocks.append(other)
            checked.record(other, .failure("refused"))
            #expect(checked.count <= CheckedBlocks.entriesMax)
            #expect(checked.result(for: other) != nil, "the entry just recorded is kept")
        }
        // Full again, then a block under a header already there replaces its entry and drops nothing else.
        checked.removeAll()
        for other in blocks.prefix(CheckedBlocks.entriesMax) { checked.record(other, .failure("refused")) }
        #expect(checked.count == CheckedBlocks.entriesMax)
        var forged = blocks[0]
        forged.transactions[0][forged.transactions[0].count - 1] ^= 1
        checked.record(forged, .failure("bad signature"))
        #expect(checked.count == CheckedBlocks.entriesMax)
        #expect(checked.result(for: blocks[1]) != nil && checked.result(for: forged) != nil)
    }

    /// A timestamp ahead of this node's clock may pass a later check: remembering the refusal would keep the node
    /// from the block for the rest of the height.
    @Test("a refusal by this node's clock is not remembered")
    func clockRefusalsAreNotRemembered() throws {
        let (rules, validators, pool, _) = try Self.setUp()
        let chosen = pool.select(countMax: 10, bytesMax: 1 << 20) { _ in 0 }
        let timestampMs: UInt64 = 10_000
        let block = try #require(rules.build(
            parent: rules.genesisParent, transactions: chosen.map(\.transaction),
            proposer: Self.proposer.publicKey, nowMs: timestampMs, state: StateTree(), validators: validators,
            execute: Self.execute))
        func check(atMs nowMs: UInt64) -> Result<BlockRules.Effects, BlockProblem> {
            rules.check(block, parent: rules.genesisParent, nowMs: nowMs, state: StateTree(), validators: validators,
                        nextNonce: { _ in 0 },
                        admitted: { encoded in pool.entry(encoded: encoded).map { ($0.transaction, $0.id) } },
                        execute: Self.execute)
        }
        let early = check(atMs: block.header.timestampMs - BlockRules.clockDriftMaxMs - 1)
        guard case .failure(let problem) = early else {
            Issue.record("a block from beyond the clock drift was accepted")
            return
        }
        #expect(problem.dependsOnClock && problem.description.contains("ms ahead"))
        var checked = CheckedBlocks()
        checked.record(block, early)
        #expect(checked.result(for: block) == nil)
        guard case .success = check(atMs: block.header.timestampMs) else {
            Issue.record("the same block failed once the clock caught up")
            return
        }
        let other: BlockProblem = "transaction 1: bad signature"
        #expect(!other.dependsOnClock)
    }
}

/// A block's results bounded so that a validator can always store the block.
@Suite("Block results bound")
struct BlockResultsBoundTests {
    /// Each transaction's result carries an event whose data is its payload's first byte times 100 bytes: results
    /// of a known size, as a module that emits large events would make.
    static func execute(_ context: BlockContext, _ transactions: [EncodedTransaction], _ ids: [[UInt8]])
        -> Result<Execution, BlockProblem> {
        .success(Execution(results: transactions.map { transaction in
            TransactionResult(status: 0, reason: "", events: [.init(
                type: "big", data: [UInt8](repeating: 7, count: Int(transaction.payload[0]) * 100))])
        }, writes: [:]))
    }

    static func transactions(_ sizes: [UInt8]) throws -> (transactions: [EncodedTransaction], encoded: [[UInt8]]) {
        let transactions = try sizes.enumerated().map { nonce, size in
            try EncodedTransaction(Transaction.signed(chainID: "dev", signer: BlockRulesTests.alice,
                                                      nonce: UInt64(nonce), fee: 10, kind: "test/op", payload: [size]))
        }
        return (transactions, transactions.map(\.encoded))
    }

    @Test("a proposer keeps the transactions whose results fit, in order; a validator refuses a block whose results pass the bound, and accepts it under a larger one")
    func resultsPastTheBound() throws {
        let validators = try ValidatorSet(keys: [BlockRulesTests.proposer.publicKey])
        let genesis = Genesis(chainID: "dev", genesisTimeMs: 1_000, validators: validators)
        // Each result is its event's data plus 4 + 2 + 2 + 2 + 3 ("big") + 4 = 17 bytes of framing.
        let bounded = BlockRules(genesis: genesis, resultsBytesMax: 1_000 + 17 + 2_000 + 17 + 100)
        let unbounded = BlockRules(genesis: genesis)
        let (transactions, encoded) = try Self.transactions([10, 20, 30, 1])
        func build(_ rules: BlockRules) throws -> (block: Block, effects: BlockRules.Effects) {
            try #require(rules.buildWithEffects(
                parent: rules.genesisParent, transactions: transactions,
                proposer: BlockRulesTests.proposer.publicKey, nowMs: 2_000, state: StateTree(), validators: validators,
                execute: Self.execute))
        }
        func check(_ rules: BlockRules, _ block: Block) -> Result<BlockRules.Effects, BlockProblem> {
            rules.check(block, parent: rules.genesisParent, nowMs: 2_000, state: StateTree(), validators: validators,
                        nextNonce: { _ in 0 }, execute: Self.execute)
        }
        let kept = try build(bounded)
        #expect(kept.block.transactions == Array(encoded.prefix(2)), "the third would pass the bound, so it and the fourth wait")
        #expect(kept.effects.encodedResults.map(\.count) == [1_017, 2_017])
        #expect(throws: Never.self) { try check(bounded, kept.block).get() }

        let full = try build(unbounded)
        #expect(full.block.transactions == encoded)
        guard case .failure(let problem) = check(bounded, full.block) else {
            Issue.record("a block past the bound was accepted")
            return
        }
        #expect("\(problem)" == "its transactions' results take 6168 bytes; at most 3134")
        #expect(throws: Never.self) { try check(unbounded, full.block).get() }
    }
}

/// A block's module state writes bounded so that a validator can always store the block at a checkpoint.
@Suite("Block writes bound")
struct BlockWritesBoundTests {
    /// Each transaction writes one key of its own ("k" and its nonce) holding its payload's first byte times 100
    /// bytes, and every transaction rewrites one shared key, as a fee collector's balance is: the shared key counts
    /// once however many write it.
    /// With `genesisBytes`, a genesis key of that size comes first (init_chain's); with `endBlockBytes`, an end_block
    /// key after the last transaction. `runs` counts the executions.
    static func execute(measured: Bool, genesisBytes: Int = 0, endBlockBytes: Int = 0, runs: Runs = Runs())
        -> BlockExecutor {
        { _, transactions, _ in
            runs.count += 1
            var writes: [BytesKey: [UInt8]?] = [:]
            if genesisBytes > 0 { writes[BytesKey(Array("genesis".utf8))] = .some([UInt8](repeating: 3, count: genesisBytes)) }
            let genesis = WritesSize(of: writes)
            var after: [WritesSize] = []
            for transaction in transactions {
                writes[BytesKey(Array("k".utf8) + [UInt8(transaction.nonce)])] =
                    .some([UInt8](repeating: 1, count: Int(transaction.payload[0]) * 100))
                writes[BytesKey(Array("shared".utf8))] = .some([UInt8(transaction.nonce)])
                after.append(WritesSize(of: writes))
            }
            if endBlockBytes > 0 { writes[BytesKey(Array("end".utf8))] = .some([UInt8](repeating: 2, count: endBlockBytes)) }
            return .success(Execution(results: transactions.map { _ in .accepted }, writes: writes,
                                      writesAfterEach: measured ? after : [], genesisWrites: genesis))
        }
    }

    final class Runs: @unchecked Sendable { var count = 0 }

    static func build(_ rules: BlockRules, _ transactions: [EncodedTransaction], ids: [[UInt8]]? = nil,
                      _ execute: @escaping BlockExecutor) throws -> (block: Block, effects: BlockRules.Effects) {
        let validators = try ValidatorSet(keys: [BlockRulesTests.proposer.publicKey])
        return try #require(rules.buildWithEffects(
            parent: rules.genesisParent, transactions: transactions, ids: ids,
            proposer: BlockRulesTests.proposer.publicKey, nowMs: 2_000, state: StateTree(), validators: validators,
            execute: execute))
    }

    static func rules(bytes: Int) throws -> BlockRules {
        let validators = try ValidatorSet(keys: [BlockRulesTests.proposer.publicKey])
        return BlockRules(genesis: Genesis(chainID: "dev", genesisTimeMs: 1_000, validators: validators),
                          writesMax: WritesSize(keys: 100, bytes: bytes))
    }

    @Test("a block past the bound by end_block's writes keeps the transactions that fit with them, in one rebuild; an unmeasuring executor's block halves until it fits")
    func writesAfterTheLastTransactionAndUnmeasured() throws {
        // Ten transactions of 1,002 bytes each (plus "shared", 7): with end_block's 3,003 bytes, three fit in 6,100.
        let (transactions, encoded) = try BlockResultsBoundTests.transactions(Array(repeating: 10, count: 10))
        let rules = try Self.rules(bytes: 6_100)
        let runs = Runs()
        let kept = try Self.build(rules, transactions, Self.execute(measured: true, endBlockBytes: 3_000, runs: runs))
        #expect(kept.block.transactions == Array(encoded.prefix(3)))
        #expect(runs.count == 2, "found from the first execution's measures, not one transaction fewer each time")
        // Given the ids (as a proposer takes them from its mempool), the rebuild keeps the ids of what it keeps.
        let ids = encoded.map { Transaction.id(ofEncoded: $0)! }
        let withIDs = try Self.build(rules, transactions, ids: ids,
                                     Self.execute(measured: true, endBlockBytes: 3_000, runs: Runs()))
        #expect(withIDs.block == kept.block && withIDs.effects.transactionIDs == Array(ids.prefix(3)))
        // Not measured: ten, five, two.
        let halved = Runs()
        let unmeasured = try Self.build(rules, transactions, Self.execute(measured: false, endBlockBytes: 3_000, runs: halved))
        #expect(unmeasured.block.transactions == Array(encoded.prefix(2)) && halved.count == 3)
    }

    @Test("a first block's genesis state does not count against the bound; what its transactions write does")
    func genesisStateIsNotCounted() throws {
        let (transactions, encoded) = try BlockResultsBoundTests.transactions([10, 10, 10])
        let rules = try Self.rules(bytes: 2_100)
        let validators = try ValidatorSet(keys: [BlockRulesTests.proposer.publicKey])
        let execute = Self.execute(measured: true, genesisBytes: 50_000)
        let block = try Self.build(rules, transactions, execute).block
        #expect(block.transactions == Array(encoded.prefix(2)), "two of 1,002 bytes and 'shared' fit beside 50,007 bytes of genesis")
        #expect(throws: Never.self) {
            try rules.check(block, parent: rules.genesisParent, nowMs: 2_000, state: StateTree(), validators: validators,
                            nextNonce: { _ in 0 }, execute: execute).get()
        }
    }

    @Test("a proposer keeps the transactions whose writes fit, in order; a validator refuses a block whose writes pass the bound, and accepts it under a larger one")
    func writesPastTheBound() throws {
        let validators = try ValidatorSet(keys: [BlockRulesTests.proposer.publicKey])
        let genesis = Genesis(chainID: "dev", genesisTimeMs: 1_000, validators: validators)
        // Two transactions write "k\0" (1,002 bytes), "k\1" (2,002) and "shared" (7): 3,011 bytes. A third adds 3,002.
        let bounded = BlockRules(genesis: genesis, writesMax: WritesSize(keys: 100, bytes: 3_011 + 1_000))
        let fewKeys = BlockRules(genesis: genesis, writesMax: WritesSize(keys: 3, bytes: 1 << 20))
        let unbounded = BlockRules(genesis: genesis)
        let (transactions, encoded) = try BlockResultsBoundTests.transactions([10, 20, 30, 1])
        func build(_ rules: BlockRules, measured: Bool) throws -> (block: Block, effects: BlockRules.Effects) {
            try #require(rules.buildWithEffects(
                parent: rules.genesisParent, transactions: transactions,
                proposer: BlockRulesTests.proposer.publicKey, nowMs: 2_000, state: StateTree(), validators: validators,
                execute: Self.execute(measured: measured)))
        }
        func check(_ rules: BlockRules, _ block: Block) -> Result<BlockRules.Effects, BlockProblem> {
            rules.check(block, parent: rules.genesisParent, nowMs: 2_000, state: StateTree(), validators: validators,
                        nextNonce: { _ in 0 }, execute: Self.execute(measured: true))
        }
        let kept = try build(bounded, measured: true)
        #expect(kept.block.transactions == Array(encoded.prefix(2)), "the third would pass the bound, so it and the fourth wait")
        #expect(WritesSize(of: kept.effects.writes) == WritesSize(keys: 3, bytes: 3_011))
        #expect(throws: Never.self) { try check(bounded, kept.block).get() }
        // The key count binds as the bytes do.
        #expect(try build(fewKeys, measured: true).block.transactions == Array(encoded.prefix(2)))
        // An executor that does not measure each transaction's writes: the proposer halves the block until they fit.
        #expect(try build(bounded, measured: false).block.transactions == Array(encoded.prefix(2)))

        let full = try build(unbounded, measured: true)
        #expect(full.block.transactions == encoded)
        guard case .failure(let problem) = check(bounded, full.block) else {
            Issue.record("a block past the bound was accepted")
            return
        }
        #expect("\(problem)" == "its state writes take 5 keys of 6115 bytes; at most 100 keys of 4011 bytes")
        #expect(throws: Never.self) { try check(unbounded, full.block).get() }
    }

    @Test("a write set's size follows each change: a new key adds it and its value, a rewrite the difference, a delete its key alone, an undo takes it out")
    func sizeFollowsChanges() {
        let key = BytesKey(Array("abc".utf8))
        var size = WritesSize.zero
        size.change(key, from: nil, to: .some([1, 2, 3, 4]))
        #expect(size == WritesSize(keys: 1, bytes: 7))
        size.change(key, from: .some([1, 2, 3, 4]), to: .some([1]))
        #expect(size == WritesSize(keys: 1, bytes: 4))
        size.change(key, from: .some([1]), to: .some(nil))
        #expect(size == WritesSize(keys: 1, bytes: 3))
        size.change(key, from: .some(nil), to: nil)
        #expect(size == .zero)
        #expect(WritesSize(of: [key: [9, 9], BytesKey([0]): nil]) == WritesSize(keys: 2, bytes: 6))
    }
}
