import BPICore
import Benchmark
import MetanodeWire

// BPI's mempool: choosing a block's transactions (`Mempool.select`). A sample is one block chosen from a full pool.
// "heap" is the product's selection; "scan" is the one it replaced (each pick a scan of every sender's next
// transaction), run here over the same pool for the ratio.

/// A pool of `senders` senders with `perSender` transactions each, all at the same fee (ties go by id), as many users
/// each sending one or a few transfers would fill it.
struct PoolFixture: @unchecked Sendable {
    let pool: Mempool
    /// By sender, by nonce: what the scan walks.
    let pending: [BytesKey: [UInt64: Mempool.Entry]]

    init(senders: Int, perSender: Int, transactionsMax: Int? = nil) {
        var pool = Mempool(chainID: "bench",
                           limits: MempoolLimits(transactionsMax: transactionsMax ?? senders * perSender + 1))
        var pending: [BytesKey: [UInt64: Mempool.Entry]] = [:]
        for index in 0..<senders {
            let signer = Ed25519Signer(seed: WireCrypto.domainHash("pool sender", [UInt8(truncatingIfNeeded: index),
                                                                                   UInt8(truncatingIfNeeded: index >> 8),
                                                                                   UInt8(truncatingIfNeeded: index >> 16)]))
            for nonce in 0..<UInt64(perSender) {
                let encoded = try! Transaction.signed(chainID: "bench", signer: signer, nonce: nonce, fee: 10,
                                                      kind: "test/op", payload: [1]).encoded
                guard case .success(let (entry, _)) = pool.add(encoded, nextNonce: 0) else {
                    preconditionFailure("the pool refused a transaction")
                }
                pending[BytesKey(signer.publicKey), default: [:]][nonce] = entry
            }
        }
        self.pool = pool
        self.pending = pending
    }

    func scan(countMax: Int) -> Int {
        func lowerPriority(_ a: Mempool.Entry, _ b: Mempool.Entry) -> Bool {
            a.transaction.fee != b.transaction.fee ? a.transaction.fee < b.transaction.fee
                : b.id.lexicographicallyPrecedes(a.id)
        }
        var heads = pending.compactMap { $0.value[0] }
        var selected = 0
        while selected < countMax, let best = heads.indices.max(by: { lowerPriority(heads[$0], heads[$1]) }) {
            let entry = heads.remove(at: best)
            selected += 1
            if let next = pending[BytesKey(entry.transaction.sender)]?[entry.transaction.nonce + 1] { heads.append(next) }
        }
        return selected
    }
}

extension PoolFixture {
    /// The eviction candidate as the pool found it before it kept a heap: every sender's last transaction, scanned.
    func cheapestLastByScan() -> Mempool.Entry? {
        var cheapest: Mempool.Entry?
        for entries in pending.values {
            guard let last = entries.values.max(by: { $0.transaction.nonce < $1.transaction.nonce }) else { continue }
            if let best = cheapest, !(last.transaction.fee != best.transaction.fee
                ? last.transaction.fee < best.transaction.fee : best.id.lexicographicallyPrecedes(last.id)) {
                continue
            }
            cheapest = last
        }
        return cheapest
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal], timeUnits: .microseconds, warmupIterations: 1,
        maxDuration: .seconds(10), maxIterations: 30)

    // A block of 5,000 (the default blockTransactionsMax) from 50,000 one-transaction senders (the default pool
    // size), and from 1,000 senders with 50 each (the chain bench's shape).
    for (senders, perSender) in [(50_000, 1), (1_000, 50)] {
        nonisolated(unsafe) var fixture: PoolFixture?
        let label = "\(senders) senders × \(perSender)"
        Benchmark("mempool select 5,000 of \(label), heap") { benchmark in
            let pool = fixture?.pool ?? { fixture = PoolFixture(senders: senders, perSender: perSender); return fixture!.pool }()
            benchmark.startMeasurement()
            let chosen = pool.select(countMax: 5_000, bytesMax: 64 << 20) { _ in 0 }
            benchmark.stopMeasurement()
            precondition(chosen.count == 5_000)
        }
        Benchmark("mempool select 5,000 of \(label), scan (before)") { benchmark in
            if fixture == nil { fixture = PoolFixture(senders: senders, perSender: perSender) }
            let pool = fixture!
            benchmark.startMeasurement()
            let chosen = pool.scan(countMax: 5_000)
            benchmark.stopMeasurement()
            precondition(chosen == 5_000)
        }
    }

    // A full pool of 50,000 one-transaction senders offered a transaction that pays less than all of them: refused
    // (so the pool stays full for the next sample). The pool's admission, signature check included, against the
    // scan for the eviction candidate alone that each such offer used to make.
    /// The pool held in place, so an offer's changes to it (the candidates it looks past) are not a copy of it.
    final class PoolBox: @unchecked Sendable {
        var pool: Mempool
        init(_ pool: Mempool) { self.pool = pool }
    }
    nonisolated(unsafe) var full: PoolFixture?
    nonisolated(unsafe) var box: PoolBox?
    let cheap = try! Transaction.signed(chainID: "bench", signer: Ed25519Signer(seed: WireCrypto.domainHash("cheap", [])),
                                        nonce: 0, fee: 5, kind: "test/op", payload: [1]).encoded
    Benchmark("mempool full of 50000 senders: offer that is refused, heap") { benchmark in
        if full == nil { full = PoolFixture(senders: 50_000, perSender: 1, transactionsMax: 50_000) }
        if box == nil {
            box = PoolBox(full!.pool)
            _ = box!.pool.add(cheap, nextNonce: 0)  // its first offer makes the pool's tables its own
        }
        let pool = box!
        benchmark.startMeasurement()
        let result = pool.pool.add(cheap, nextNonce: 0)
        benchmark.stopMeasurement()
        guard case .failure(.full) = result else { preconditionFailure("the full pool took it: \(result)") }
    }
    Benchmark("mempool full of 50000 senders: eviction candidate by scan (before)") { benchmark in
        if full == nil { full = PoolFixture(senders: 50_000, perSender: 1, transactionsMax: 50_000) }
        let fixture = full!
        benchmark.startMeasurement()
        let cheapest = fixture.cheapestLastByScan()
        benchmark.stopMeasurement()
        precondition(cheapest != nil)
    }
}
