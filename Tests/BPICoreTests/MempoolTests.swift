@testable import BPICore
import MetanodePluginTesting
import MetanodeWire
import Testing

@Suite("Mempool")
struct MempoolTests {
    static let alice = Ed25519Signer(seed: WireCrypto.domainHash("alice", []))
    static let bob = Ed25519Signer(seed: WireCrypto.domainHash("bob", []))
    static let carol = Ed25519Signer(seed: WireCrypto.domainHash("carol", []))

    static func tx(_ signer: Ed25519Signer, nonce: UInt64, fee: UInt64 = 10, chain: String = "dev",
                   payload: [UInt8] = [1]) -> [UInt8] {
        try! Transaction.signed(chainID: chain, signer: signer, nonce: nonce, fee: fee, kind: "test/op",
                                payload: payload).encoded
    }

    static func rejection(_ result: Result<(entry: Mempool.Entry, removed: [[UInt8]]), MempoolRejection>)
        -> String? {
        if case .failure(let rejection) = result { return rejection.description }
        return nil
    }

    @Test("each refusal says why: bad signature, used nonce, far nonce, wrong chain, duplicate, malformed")
    func rejections() {
        var pool = Mempool(chainID: "dev", limits: MempoolLimits(nonceGapMax: 4))
        var forged = Self.tx(Self.alice, nonce: 9)
        forged[forged.count - 1] ^= 1
        #expect(Self.rejection(pool.add(forged, nextNonce: 9)) == "bad signature")
        #expect(Self.rejection(pool.add(Self.tx(Self.alice, nonce: 7), nextNonce: 9))
            == "nonce 7 already used, next is 9")
        #expect(Self.rejection(pool.add(Self.tx(Self.alice, nonce: 14), nextNonce: 9))
            == "nonce 14 is too far ahead: next is 9, at most 4 ahead may wait")
        #expect(Self.rejection(pool.add(Self.tx(Self.alice, nonce: 9, chain: "other"), nextNonce: 9))
            == "wrong chain: this is 'dev', the transaction is for 'other'")
        #expect(Self.rejection(pool.add(Self.tx(Self.alice, nonce: 9), nextNonce: 9)) == nil)
        #expect(Self.rejection(pool.add(Self.tx(Self.alice, nonce: 9), nextNonce: 9)) == "already in the mempool")
        #expect(Self.rejection(pool.add([1, 2, 3], nextNonce: 0))?.hasPrefix("malformed transaction: ") == true)
        #expect(pool.count == 1)
    }

    @Test("entry(encoded:) finds a waiting transaction by its exact bytes only: not another signature of its body, not the one a replacement took the place of, not bytes the pool never held")
    func entryByExactBytes() throws {
        var pool = Mempool(chainID: "dev")
        let first = Self.tx(Self.alice, nonce: 0, fee: 10)
        let entry = try pool.add(first, nextNonce: 0).get().entry
        #expect(pool.entry(encoded: first) === entry)
        var resigned = first
        resigned[resigned.count - 1] ^= 1  // same body, so the same id; other signature bytes
        #expect(Transaction.id(ofEncoded: resigned) == entry.id)
        #expect(pool.entry(encoded: resigned) == nil)
        let replacement = Self.tx(Self.alice, nonce: 0, fee: 20)
        _ = try pool.add(replacement, nextNonce: 0).get()
        #expect(pool.entry(encoded: first) == nil)
        #expect(pool.entry(encoded: replacement)?.encoded == replacement)
        #expect(pool.entry(encoded: Self.tx(Self.alice, nonce: 1)) == nil)
        #expect(pool.entry(encoded: Self.tx(Self.bob, nonce: 0)) == nil)
        #expect(pool.entry(encoded: [1, 2, 3]) == nil && pool.entry(encoded: []) == nil)
    }

    @Test("a batch's precheck verifies the signatures add would, and only those: not one add refuses first (waiting, used or far nonce, other chain, underpriced replacement, full sender) nor one seen earlier in the batch; add takes its answers and refuses as it would alone")
    func precheckedBatch() throws {
        var pool = Mempool(chainID: "dev", limits: MempoolLimits(perSenderMax: 2, nonceGapMax: 4))
        let waiting = Self.tx(Self.alice, nonce: 0, fee: 100)
        _ = try pool.add(waiting, nextNonce: 0).get()
        _ = try pool.add(Self.tx(Self.carol, nonce: 2), nextNonce: 2).get()
        _ = try pool.add(Self.tx(Self.carol, nonce: 3), nextNonce: 2).get()
        var forged = Self.tx(Self.bob, nonce: 3)
        forged[forged.count - 1] ^= 1
        let fresh = Self.tx(Self.alice, nonce: 1)
        let batch = [
            waiting, fresh, forged,
            Self.tx(Self.carol, nonce: 1),  // used: carol's next is 2
            Self.tx(Self.bob, nonce: 9),  // too far ahead
            Self.tx(Self.bob, nonce: 4, chain: "other"),
            Self.tx(Self.alice, nonce: 0, fee: 105, payload: [2]),  // a replacement paying too little more
            Self.tx(Self.carol, nonce: 4),  // carol already has two waiting
            fresh,  // seen earlier in the batch
            [1, 2, 3],
        ]
        let nextNonce: (BytesKey) -> UInt64 = { $0 == BytesKey(Self.carol.publicKey) ? 2 : 0 }
        let prechecked = pool.precheck(batch, nextNonceOf: nextNonce)
        #expect(prechecked.map(\.signatureValid) == [nil, true, false, nil, nil, nil, nil, nil, nil, nil])
        #expect(prechecked.map(\.id) == batch.map(Transaction.id(ofEncoded:)))
        var alone = pool
        for (encoded, answer) in zip(batch, prechecked) {
            let batched = pool.add(encoded, nextNonceOf: nextNonce, prechecked: answer)
            #expect(Self.rejection(batched) == Self.rejection(alone.add(encoded, nextNonceOf: nextNonce)))
        }
        #expect(pool.count == 4 && alone.count == 4)
        // An answer counts only for the bytes it was found for. A body with a broken signature has the same id as
        // the genuine one; its answer is not taken for the genuine bytes, and the genuine bytes' is not taken for it.
        let genuine = Self.tx(Self.bob, nonce: 0)
        var broken = genuine
        broken[broken.count - 1] ^= 1
        let answers = pool.precheck([broken, genuine], nextNonceOf: { _ in 0 })
        #expect(answers.map(\.signatureValid) == [false, nil], "the genuine bytes' id was seen in the batch")
        let genuineAnswer = try #require(pool.precheck([genuine], nextNonceOf: { _ in 0 }).first)
        #expect(Self.rejection(pool.add(broken, nextNonceOf: { _ in 0 }, prechecked: genuineAnswer)) == "bad signature")
        #expect(Self.rejection(pool.add(genuine, nextNonceOf: { _ in 0 }, prechecked: answers[0])) == nil)
    }

    @Test("a replacement must raise the fee by 10%; it then takes the old one's place")
    func replacement() throws {
        var pool = Mempool(chainID: "dev")
        let first = try pool.add(Self.tx(Self.alice, nonce: 0, fee: 100), nextNonce: 0).get()
        #expect(Self.rejection(pool.add(Self.tx(Self.alice, nonce: 0, fee: 109, payload: [2]), nextNonce: 0))
            == "replacement fee 109 is too low: replacing needs at least 110")
        let second = try pool.add(Self.tx(Self.alice, nonce: 0, fee: 110, payload: [2]), nextNonce: 0).get()
        #expect(second.removed == [first.entry.id])
        #expect(pool.count == 1 && pool.pending(sender: Self.alice.publicKey).map(\.id) == [second.entry.id])
    }

    @Test("selection takes the highest fee first but keeps each sender's nonce order and stops at a gap")
    func selection() throws {
        var pool = Mempool(chainID: "dev")
        _ = try pool.add(Self.tx(Self.alice, nonce: 0, fee: 1), nextNonce: 0).get()
        _ = try pool.add(Self.tx(Self.alice, nonce: 1, fee: 50), nextNonce: 0).get()
        _ = try pool.add(Self.tx(Self.bob, nonce: 0, fee: 20), nextNonce: 0).get()
        _ = try pool.add(Self.tx(Self.carol, nonce: 1, fee: 99), nextNonce: 0).get()  // waits for carol's nonce 0
        let chosen = pool.select(countMax: 10, bytesMax: 1 << 20) { _ in 0 }
        let order = chosen.map { ($0.transaction.sender == Self.alice.publicKey ? "a" : "b") + "\($0.transaction.nonce)" }
        #expect(order == ["b0", "a0", "a1"])
        #expect(pool.select(countMax: 1, bytesMax: 1 << 20) { _ in 0 }.count == 1)
    }

    @Test("when full, a higher fee evicts the cheapest sender's last transaction; a lower fee is refused")
    func eviction() throws {
        var pool = Mempool(chainID: "dev", limits: MempoolLimits(transactionsMax: 2))
        _ = try pool.add(Self.tx(Self.alice, nonce: 0, fee: 5), nextNonce: 0).get()
        let cheap = try pool.add(Self.tx(Self.bob, nonce: 0, fee: 3), nextNonce: 0).get()
        #expect(Self.rejection(pool.add(Self.tx(Self.carol, nonce: 0, fee: 3), nextNonce: 0)) == "mempool full")
        let rich = try pool.add(Self.tx(Self.carol, nonce: 0, fee: 4), nextNonce: 0).get()
        #expect(rich.removed == [cheap.entry.id])
        #expect(pool.count == 2 && !pool.contains(id: cheap.entry.id))
    }

    @Test("the eviction candidates are kept from the first time a full pool needs one until it is under half its limits, and evict the same after a pause")
    func evictionCandidatesKeptOnlyNearFull() throws {
        var pool = Mempool(chainID: "dev", limits: MempoolLimits(transactionsMax: 4))
        for (signer, fee) in [(Self.alice, UInt64(5)), (Self.bob, 3), (Self.carol, 7)] {
            _ = try pool.add(Self.tx(signer, nonce: 0, fee: fee), nextNonce: 0).get()
        }
        #expect(!pool.keepsEvictionCandidates)
        _ = try pool.add(Self.tx(Self.alice, nonce: 1, fee: 6), nextNonce: 0).get()
        #expect(!pool.keepsEvictionCandidates, "full, but nothing offered yet")
        let dave = Ed25519Signer(seed: WireCrypto.domainHash("dave", []))
        let first = try pool.add(Self.tx(dave, nonce: 0, fee: 4), nextNonce: 0).get()
        #expect(first.removed.count == 1 && pool.keepsEvictionCandidates)  // bob's, the cheapest last
        // Below half the limit, the candidates go; the next full pool builds them again and picks the same way.
        pool.prune(senders: [BytesKey(Self.alice.publicKey), BytesKey(Self.carol.publicKey)]) { _ in 2 }
        #expect(pool.count == 1 && !pool.keepsEvictionCandidates)
        for (signer, fee) in [(Self.alice, UInt64(9)), (Self.bob, 8), (Self.carol, 10)] {
            _ = try pool.add(Self.tx(signer, nonce: signer.publicKey == Self.bob.publicKey ? 0 : 2, fee: fee),
                             nextNonce: signer.publicKey == Self.bob.publicKey ? 0 : 2).get()
        }
        let second = try pool.add(Self.tx(dave, nonce: 1, fee: 20), nextNonce: 0).get()
        #expect(second.removed.count == 1 && pool.keepsEvictionCandidates)
        #expect(!pool.contains(id: try #require(second.removed.first)) && pool.count == 4)
        #expect(Self.rejection(pool.add(Self.tx(Self.bob, nonce: 1, fee: 1), nextNonce: 0)) == "mempool full")
    }

    @Test("one large transaction evicting several: the candidates dropped halfway (the pool under half its bytes) are built again and the eviction goes on in fee order")
    func evictionAcrossTheDrop() throws {
        let signers = (0..<7).map { Ed25519Signer(seed: WireCrypto.domainHash("drop sender", [UInt8($0)])) }
        let small = (0..<6).map { Self.tx(signers[$0], nonce: 0, fee: UInt64($0 + 1)) }  // 132 bytes each
        var pool = Mempool(chainID: "dev", limits: MempoolLimits(transactionsMax: 100, bytesMax: 900))
        for encoded in small { _ = try pool.add(encoded, nextNonce: 0).get() }
        let large = Self.tx(signers[6], nonce: 0, fee: 10, payload: [UInt8](repeating: 7, count: 600))
        // 792 + 731 bytes: five must go; after the third the pool holds 396 of 900 bytes and drops its candidates.
        let admitted = try pool.add(large, nextNonce: 0).get()
        #expect(admitted.removed == small.prefix(5).map { Transaction.id(ofEncoded: $0)! })
        #expect(pool.count == 2 && pool.bytes == small[5].count + large.count)
        #expect(!pool.keepsEvictionCandidates,
                "dropped once the evictions took the pool under half; built again when next needed")
    }

    @Test("pruning after a block drops every transaction below the senders' new next nonces")
    func pruning() throws {
        var pool = Mempool(chainID: "dev")
        for nonce in 0..<3 as Range<UInt64> { _ = try pool.add(Self.tx(Self.alice, nonce: nonce), nextNonce: 0).get() }
        pool.prune(senders: [BytesKey(Self.alice.publicKey)]) { _ in 2 }
        #expect(pool.pending(sender: Self.alice.publicKey).map(\.transaction.nonce) == [2])
        #expect(pool.count == 1)
    }

    @Test("pruning drops what lies below a nonce the pool never had (a block brought it), and all of a sender's")
    func pruningAcrossGaps() throws {
        var pool = Mempool(chainID: "dev")
        for nonce: UInt64 in [0, 1, 3, 4, 6] { _ = try pool.add(Self.tx(Self.alice, nonce: nonce), nextNonce: 0).get() }
        for nonce: UInt64 in [0, 1] { _ = try pool.add(Self.tx(Self.bob, nonce: nonce), nextNonce: 0).get() }
        let bytesBefore = pool.bytes
        // A block used alice's 0 to 4 (2 from elsewhere) and both of bob's.
        pool.prune(senders: [BytesKey(Self.alice.publicKey), BytesKey(Self.bob.publicKey)]) { sender in
            sender == BytesKey(Self.alice.publicKey) ? 5 : 2
        }
        #expect(pool.pending(sender: Self.alice.publicKey).map(\.transaction.nonce) == [6])
        #expect(pool.pending(sender: Self.bob.publicKey).isEmpty)
        #expect(pool.count == 1 && pool.bytes == bytesBefore / 7)
        // Nothing below the next nonce is left: a selection from nonce 0 finds nothing to start from.
        #expect(pool.select(countMax: 10, bytesMax: 1 << 20) { _ in 0 }.isEmpty)
    }
}

@Suite("Proof of History")
struct ProofOfHistoryTests {
    @Test("count is (ticks+1) per entry; the hash depends on every entry, their order and the ticks")
    func chain() {
        let seed = ProofOfHistory.genesisSeed(chainID: "dev")
        let a = [UInt8](repeating: 1, count: 32), b = [UInt8](repeating: 2, count: 32)
        let run = ProofOfHistory.run(from: seed, entries: [a, b], ticksPerEntry: 3)
        #expect(run.count == 8)
        #expect(ProofOfHistory.run(from: seed, entries: [b, a], ticksPerEntry: 3).hash != run.hash)
        #expect(ProofOfHistory.run(from: seed, entries: [a, b], ticksPerEntry: 2).hash != run.hash)
        var manual = seed
        for entry in [a, b] {
            for _ in 0..<3 { manual = WireCrypto.blake2b256(manual) }
            manual = WireCrypto.blake2b256(manual, entry)
        }
        #expect(manual == run.hash)
        let empty = ProofOfHistory.run(from: seed, entries: [], ticksPerEntry: 3)
        #expect(empty.count == 0 && empty.hash == seed)
        // Seeds of any length (the chain starts from 32 bytes; the rule does not say so), any entry count, no ticks.
        for seedBytes in [0, 5, 32, 40] {
            for entries in [[], [a], [a, b, a]] {
                for ticks: UInt32 in [0, 2] {
                    var manual = [UInt8](repeating: 9, count: seedBytes)
                    for entry in entries {
                        for _ in 0..<ticks { manual = WireCrypto.blake2b256(manual) }
                        manual = WireCrypto.blake2b256(manual, entry)
                    }
                    let run = ProofOfHistory.run(from: [UInt8](repeating: 9, count: seedBytes), entries: entries,
                                                 ticksPerEntry: ticks)
                    #expect(run.hash == manual && run.count == UInt64(entries.count) * UInt64(ticks + 1),
                            "seed of \(seedBytes) bytes, \(entries.count) entries, \(ticks) ticks")
                }
            }
        }
    }
}

/// Block selection against the plain algorithm it replaced: scan every sender's next transaction for the best, take
/// it, put the sender's following one in.
@Suite("Mempool selection")
struct MempoolSelectionTests {
    static func reference(_ pool: Mempool, senders: [Ed25519Signer], nextNonce: [BytesKey: UInt64], countMax: Int,
                          bytesMax: Int) -> [[UInt8]] {
        func lowerPriority(_ a: Mempool.Entry, _ b: Mempool.Entry) -> Bool {
            a.transaction.fee != b.transaction.fee ? a.transaction.fee < b.transaction.fee
                : b.id.lexicographicallyPrecedes(a.id)
        }
        var pending: [BytesKey: [UInt64: Mempool.Entry]] = [:]
        for signer in senders {
            for entry in pool.pending(sender: signer.publicKey) {
                pending[BytesKey(signer.publicKey), default: [:]][entry.transaction.nonce] = entry
            }
        }
        var heads = pending.compactMap { sender, entries in entries[nextNonce[sender] ?? 0] }
        var selected: [[UInt8]] = []
        var size = 0
        while selected.count < countMax, let best = heads.indices.max(by: { lowerPriority(heads[$0], heads[$1]) }) {
            let entry = heads.remove(at: best)
            guard size + entry.encoded.count <= bytesMax else { continue }
            selected.append(entry.encoded)
            size += entry.encoded.count
            if let next = pending[BytesKey(entry.transaction.sender)]?[entry.transaction.nonce + 1] { heads.append(next) }
        }
        return selected
    }

    @Test("the heap picks what the scan picked, in the same order: equal fees, gaps in nonces, senders ahead of their next nonce, byte and count limits", arguments: 0..<12)
    func sameAsTheScan(seed: UInt64) throws {
        var random = SimulationRandom(seed: 9_000 + seed)
        let senders = (0..<40).map { Ed25519Signer(seed: WireCrypto.domainHash("selection sender", [UInt8($0)])) }
        var pool = Mempool(chainID: "dev")
        var nextNonce: [BytesKey: UInt64] = [:]
        for signer in senders {
            let next = random.below(3)
            nextNonce[BytesKey(signer.publicKey)] = next
            for nonce in next..<(next + random.below(6)) where !random.chance(perMille: 150) {  // some gaps
                let fee = 10 + random.below(4)  // few fees, so most ties go by id
                let payload = [UInt8](repeating: 1, count: 1 + Int(random.below(200)))
                let encoded = MempoolTests.tx(signer, nonce: nonce, fee: fee, payload: payload)
                guard case .success = pool.add(encoded, nextNonce: next) else {
                    Issue.record("admission refused a valid transaction")
                    return
                }
            }
        }
        for (countMax, bytesMax) in [(1_000, 1 << 20), (25, 1 << 20), (1_000, 6_000), (7, 2_500)] {
            let chosen = pool.select(countMax: countMax, bytesMax: bytesMax) { nextNonce[$0] ?? 0 }.map(\.encoded)
            let expected = Self.reference(pool, senders: senders, nextNonce: nextNonce, countMax: countMax,
                                          bytesMax: bytesMax)
            #expect(chosen == expected, "seed \(seed), \(countMax) transactions, \(bytesMax) bytes")
            #expect(!chosen.isEmpty)
        }
    }
}

/// Eviction from a full pool against a model that finds the cheapest sender's last transaction by a scan, as the
/// pool did before it kept them in a heap.
@Suite("Mempool eviction")
struct MempoolEvictionTests {
    /// The pool's rule: a new transaction evicts the lowest-priority last transaction of another sender while that
    /// pays less than it, or is refused as full.
    struct Model {
        var pending: [[UInt8]: [UInt64: (fee: UInt64, id: [UInt8])]] = [:]
        let capacity: Int
        var count: Int { pending.values.reduce(0) { $0 + $1.count } }

        /// Ids evicted, or nil if refused as full.
        mutating func add(sender: [UInt8], nonce: UInt64, fee: UInt64, id: [UInt8]) -> [[UInt8]]? {
            var removed: [[UInt8]] = []
            var saved = self
            while count + 1 > capacity {
                var cheapest: (sender: [UInt8], nonce: UInt64, fee: UInt64, id: [UInt8])?
                for (owner, entries) in pending where owner != sender {
                    guard let last = entries.keys.max(), let entry = entries[last] else { continue }
                    if let best = cheapest,
                       !(entry.fee != best.fee ? entry.fee < best.fee : best.id.lexicographicallyPrecedes(entry.id)) {
                        continue
                    }
                    cheapest = (owner, last, entry.fee, entry.id)
                }
                guard let victim = cheapest, victim.fee < fee else {
                    self = saved
                    return nil
                }
                pending[victim.sender]?[victim.nonce] = nil
                if pending[victim.sender]?.isEmpty == true { pending[victim.sender] = nil }
                removed.append(victim.id)
            }
            saved = self
            pending[sender, default: [:]][nonce] = (fee, id)
            return removed
        }

        mutating func prune(sender: [UInt8], below next: UInt64) {
            pending[sender] = pending[sender]?.filter { $0.key >= next }
            if pending[sender]?.isEmpty == true { pending[sender] = nil }
        }
    }

    @Test("admissions into a full pool evict what the scan would, in the same order, and refuse what it would; pruning in between", arguments: 0..<8)
    func sameAsTheScan(seed: UInt64) throws {
        var random = SimulationRandom(seed: 7_100 + seed)
        let senders = (0..<10).map { Ed25519Signer(seed: WireCrypto.domainHash("eviction sender", [UInt8($0)])) }
        let capacity = 24
        var pool = Mempool(chainID: "dev", limits: MempoolLimits(transactionsMax: capacity, nonceGapMax: 1_000))
        var model = Model(capacity: capacity)
        var nextNonce = [UInt64](repeating: 0, count: senders.count)  // the ledger's
        var nextToSend = [UInt64](repeating: 0, count: senders.count)
        for step in 0..<300 {
            let index = Int(random.below(UInt64(senders.count)))
            let signer = senders[index]
            if random.chance(perMille: 80) {
                // A block took this sender's first few.
                nextNonce[index] = min(nextToSend[index], nextNonce[index] + random.below(4))
                pool.prune(senders: [BytesKey(signer.publicKey)]) { _ in nextNonce[index] }
                model.prune(sender: signer.publicKey, below: nextNonce[index])
                continue
            }
            let nonce = max(nextToSend[index], nextNonce[index])
            let fee = 1 + random.below(6)
            let encoded = MempoolTests.tx(signer, nonce: nonce, fee: fee, payload: [UInt8(truncatingIfNeeded: step)])
            let id = try #require(Transaction.id(ofEncoded: encoded))
            let expected = model.add(sender: signer.publicKey, nonce: nonce, fee: fee, id: id)
            switch pool.add(encoded, nextNonce: nextNonce[index]) {
            case .success(let (_, removed)):
                #expect(removed == expected, "seed \(seed) step \(step)")
                nextToSend[index] = nonce + 1
            case .failure(let rejection):
                #expect(rejection == .full && expected == nil, "seed \(seed) step \(step): \(rejection)")
            }
            #expect(pool.count == model.count, "seed \(seed) step \(step)")
        }
    }
}
