import HeapModule
import MetanodeWire

/// Why the mempool refused a transaction. The description is what the submitter sees.
public enum MempoolRejection: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case wrongChain(expected: String, got: String)
    case badSignature
    case duplicate
    case nonceUsed(nonce: UInt64, next: UInt64)
    case nonceTooFarAhead(nonce: UInt64, next: UInt64, gapMax: UInt64)
    case replacementUnderpriced(fee: UInt64, needed: UInt64)
    case senderFull(limit: Int)
    case full
    /// No registered module handles the transaction's kind.
    case unknownKind(String)
    /// The module's check refused it.
    case refused(module: String, reason: String)

    public var description: String {
        switch self {
        case .malformed(let why): "malformed transaction: \(why)"
        case .wrongChain(let expected, let got): "wrong chain: this is '\(expected)', the transaction is for '\(got)'"
        case .badSignature: "bad signature"
        case .duplicate: "already in the mempool"
        case .nonceUsed(let nonce, let next): "nonce \(nonce) already used, next is \(next)"
        case .nonceTooFarAhead(let nonce, let next, let gapMax):
            "nonce \(nonce) is too far ahead: next is \(next), at most \(gapMax) ahead may wait"
        case .replacementUnderpriced(let fee, let needed):
            "replacement fee \(fee) is too low: replacing needs at least \(needed)"
        case .senderFull(let limit): "sender has \(limit) transactions waiting, the most allowed"
        case .full: "mempool full"
        case .unknownKind(let kind): "no module handles kind '\(kind)'"
        case .refused(let module, let reason): "\(module) refused it: \(reason)"
        }
    }
}

public struct MempoolLimits: Sendable, Hashable {
    public var transactionsMax: Int
    public var bytesMax: Int
    public var perSenderMax: Int
    /// How far past the sender's next nonce a transaction may be and still wait for the gap to fill.
    public var nonceGapMax: UInt64
    /// A replacement (same sender and nonce) must raise the fee by this many per mille.
    public var replacementBumpPerMille: UInt64

    public init(transactionsMax: Int = 50_000, bytesMax: Int = 64 << 20, perSenderMax: Int = 256,
                nonceGapMax: UInt64 = 64, replacementBumpPerMille: UInt64 = 100) {
        self.transactionsMax = transactionsMax
        self.bytesMax = bytesMax
        self.perSenderMax = perSenderMax
        self.nonceGapMax = nonceGapMax
        self.replacementBumpPerMille = replacementBumpPerMille
    }
}

/// Pending transactions, as a value: admission checks (signature verified once, here), per-sender nonce order, fee
/// priority, bounded count and bytes with eviction of the cheapest, and selection of a block's transactions.
///
/// Eviction when full: the new transaction must pay more than the cheapest evictable one, which is the last
/// (highest-nonce) transaction of some sender, so no sender is left with a gap. Ties on fee go by id, so two nodes
/// with the same pool make the same choices.
public struct Mempool: Sendable {
    /// Held by reference, and immutable: the pool keeps each entry in two tables and hands it to block building and
    /// checks, and a struct of nine references was nine retains and releases at every copy.
    public final class Entry: Sendable, Hashable {
        /// The transaction as the bytes it came in: blocks and gossip carry them, and execution reads its fields
        /// where they lie.
        public let transaction: EncodedTransaction
        public let id: [UInt8]
        /// The sender and the id as dictionary keys, hashed once at admission: the pool looks an entry up by both
        /// when it inserts, selects, prunes and removes it.
        let senderKey: BytesKey
        let idKey: BytesKey

        public var encoded: [UInt8] { transaction.encoded }

        /// Entries are equal when their bytes are (the bytes decide every other field).
        public static func == (a: Entry, b: Entry) -> Bool { a === b || a.encoded.hasSameBytes(as: b.encoded) }

        public func hash(into hasher: inout Hasher) { hasher.combine(idKey) }

        init(transaction: EncodedTransaction, id: [UInt8], senderKey: BytesKey) {
            self.transaction = transaction
            self.id = id
            self.senderKey = senderKey
            idKey = BytesKey(id)
        }
    }

    public let chainID: String
    public let limits: MempoolLimits
    public private(set) var count = 0
    public private(set) var bytes = 0
    private var bySender: [BytesKey: [UInt64: Entry]] = [:]
    private var byID: [BytesKey: Entry] = [:]
    /// Each sender's highest nonce waiting here.
    private var lastNonce: [BytesKey: UInt64] = [:]
    /// The candidates for eviction, lowest priority first, kept only while the pool is near full (nil otherwise):
    /// built from the senders' last transactions the first time a full pool needs one, dropped again once the pool
    /// is back under half its limits. While kept, every sender's last transaction goes in when it becomes the last;
    /// one that is no longer its sender's last, or gone, is dropped when it reaches the top, and the heap is rebuilt
    /// from the senders when such leftovers outnumber them. A full pool then finds the cheapest last transaction in
    /// log n, where a scan of every sender took n for each transaction offered to it; a pool with room pays nothing
    /// for it (a push per admitted transaction, comparing cold entries, and the removed ones held until a rebuild).
    private var evictable: Heap<Prioritized>?

    /// An entry ordered by block priority, for the heaps of eviction and `select`.
    private struct Prioritized: Comparable {
        let entry: Entry
        static func < (a: Prioritized, b: Prioritized) -> Bool { Mempool.lowerPriority(a.entry, b.entry) }
        static func == (a: Prioritized, b: Prioritized) -> Bool { a.entry === b.entry }
    }

    public init(chainID: String, limits: MempoolLimits = MempoolLimits()) {
        self.chainID = chainID
        self.limits = limits
    }

    public func contains(id: [UInt8]) -> Bool { byID[BytesKey(id)] != nil }

    /// The waiting transaction with this id.
    public func entry(id: [UInt8]) -> Entry? { byID[BytesKey(id)] }

    /// The waiting transaction encoded exactly as `encoded` (same body and same signature), without decoding it.
    /// Found by the sender and nonce read from the bytes: the pool holds one transaction for each, and a lookup by
    /// them costs less than the BLAKE2b of the whole body a lookup by id needs (every validator looks up every
    /// transaction of every block).
    public func entry(encoded: [UInt8]) -> Entry? {
        guard let fields = Transaction.fields(ofEncoded: encoded),
              let entry = bySender[fields.sender]?[fields.nonce],
              entry.encoded.hasSameBytes(as: encoded) else {
            return nil
        }
        return entry
    }

    public func pending(sender: [UInt8]) -> [Entry] {
        (bySender[BytesKey(sender)] ?? [:]).values.sorted { $0.transaction.nonce < $1.transaction.nonce }
    }

    /// What `precheck` found for one transaction of a batch, for `add`: its id (nil: too short to have one), and
    /// whether its signature verified (nil: not checked, because `add` would refuse it first). `add` takes it only
    /// for the bytes it was found for.
    public struct Prechecked: Sendable {
        let encoded: [UInt8]
        public let id: [UInt8]?
        public let signatureValid: Bool?
    }

    /// The signature checks of a batch about to be offered to `add`, one after another. Verification is most of
    /// admission's time, and run back to back it keeps libsodium's code and tables in cache rather than taking turns
    /// with the pool's own work between transactions. Only transactions `add` would verify are, as the pool stands
    /// before the batch: not one `add` refuses before its signature (`checkBeforeSignature`, from the fields read
    /// out of the bytes), nor one seen earlier in the batch. Resending known transactions, or ones for another chain
    /// or nonce, costs a hash each, not a verification.
    public func precheck(_ batch: [[UInt8]], nextNonceOf: (_ sender: BytesKey) -> UInt64) -> [Prechecked] {
        var seen = Set<BytesKey>()
        return batch.map { encoded in
            guard let id = Transaction.id(ofEncoded: encoded) else {
                return Prechecked(encoded: encoded, id: nil, signatureValid: nil)
            }
            let idKey = BytesKey(id)
            guard let fields = Transaction.fields(ofEncoded: encoded), seen.insert(idKey).inserted else {
                return Prechecked(encoded: encoded, id: id, signatureValid: nil)
            }
            let senderKey = fields.sender
            let screened = checkBeforeSignature(
                chainID: fields.chainID.elementsEqual(chainID.utf8) ? chainID : String(decoding: fields.chainID, as: UTF8.self),
                idKey: idKey, senderKey: senderKey, nonce: fields.nonce, fee: fields.fee,
                nextNonce: nextNonceOf(senderKey))
            guard case .success = screened else { return Prechecked(encoded: encoded, id: id, signatureValid: nil) }
            return Prechecked(encoded: encoded, id: id, signatureValid: Transaction.hasValidSignature(encoded: encoded))
        }
    }

    /// The checks `add` makes before a transaction's signature, those that cost nothing, in its order: why it
    /// refuses one with these fields, or the waiting transaction it would replace (nil: none).
    private func checkBeforeSignature(chainID transactionChainID: String, idKey: BytesKey, senderKey: BytesKey,
                                      nonce: UInt64, fee: UInt64, nextNonce: UInt64) -> Result<Entry?, MempoolRejection> {
        guard transactionChainID == chainID else {
            return .failure(.wrongChain(expected: chainID, got: transactionChainID))
        }
        guard byID[idKey] == nil else { return .failure(.duplicate) }
        guard nonce >= nextNonce else { return .failure(.nonceUsed(nonce: nonce, next: nextNonce)) }
        guard nonce - nextNonce <= limits.nonceGapMax else {
            return .failure(.nonceTooFarAhead(nonce: nonce, next: nextNonce, gapMax: limits.nonceGapMax))
        }
        let pending = bySender[senderKey]
        if let replaced = pending?[nonce] {
            let old = replaced.transaction.fee
            let (bump, overflow) = old.multipliedReportingOverflow(by: limits.replacementBumpPerMille)
            let needed = overflow ? UInt64.max : old + max(bump / 1000, 1)
            guard fee >= needed else { return .failure(.replacementUnderpriced(fee: fee, needed: needed)) }
            return .success(replaced)
        }
        guard (pending?.count ?? 0) < limits.perSenderMax else { return .failure(.senderFull(limit: limits.perSenderMax)) }
        return .success(nil)
    }

    /// Admits `encoded` if it decodes, is for this chain, is signed by its sender and fits. `nextNonce` is the
    /// sender's next nonce in the ledger. Returns the entry, and the ids it replaced or evicted.
    /// `admissible` is asked last, after the signature check (the ledger's modules' own checks).
    public mutating func add(_ encoded: [UInt8], nextNonce: UInt64,
                             admissible: (EncodedTransaction, [UInt8]) -> MempoolRejection? = { _, _ in nil })
        -> Result<(entry: Entry, removed: [[UInt8]]), MempoolRejection> {
        add(encoded, nextNonceOf: { _ in nextNonce }, admissible: admissible)
    }

    /// As `add(_:nextNonce:admissible:)`, with the sender's next committed nonce looked up once the transaction is
    /// decoded (so the caller need not decode it first).
    /// `prechecked` is what `precheck` found for these bytes, if the caller ran it.
    public mutating func add(_ encoded: [UInt8], nextNonceOf: (_ sender: BytesKey) -> UInt64,
                             prechecked: Prechecked? = nil,
                             admissible: (EncodedTransaction, [UInt8]) -> MempoolRejection? = { _, _ in nil })
        -> Result<(entry: Entry, removed: [[UInt8]]), MempoolRejection> {
        let transaction: EncodedTransaction
        do { transaction = try EncodedTransaction(encoded) } catch { return .failure(.malformed(error.message)) }
        let senderKey = transaction.senderKey
        // Only an answer found for these very bytes: the id leaves the signature out.
        let prechecked = prechecked.flatMap { $0.encoded.hasSameBytes(as: encoded) ? $0 : nil }
        let id = prechecked?.id ?? transaction.id
        let entry = Entry(transaction: transaction, id: id, senderKey: senderKey)
        let replaced: Entry?
        switch checkBeforeSignature(chainID: transaction.isFor(chainID: chainID) ? chainID : transaction.chainID,
                                    idKey: entry.idKey, senderKey: senderKey,
                                    nonce: transaction.nonce, fee: transaction.fee, nextNonce: nextNonceOf(senderKey)) {
        case .failure(let refusal): return .failure(refusal)
        case .success(let found): replaced = found
        }
        // The signature is checked last: it is the expensive check, and everything above is free.
        guard prechecked?.signatureValid ?? Transaction.hasValidSignature(encoded: encoded) else {
            return .failure(.badSignature)
        }
        if let refusal = admissible(transaction, id) { return .failure(refusal) }

        var removed: [[UInt8]] = []
        if let replaced {
            remove(replaced)
            removed.append(replaced.id)
        }
        while count + 1 > limits.transactionsMax || bytes + encoded.count > limits.bytesMax {
            guard let cheapest = cheapestEvictable(excluding: senderKey), cheapest.transaction.fee < transaction.fee
            else {
                if let replaced { insert(replaced) }  // put back what this call took out
                return .failure(.full)
            }
            remove(cheapest)
            removed.append(cheapest.id)
        }
        insert(entry)
        return .success((entry, removed))
    }

    /// Up to `countMax` transactions and `bytesMax` bytes for a block: highest fee first, each sender's in nonce
    /// order from its next nonce with no gaps. Deterministic for a given pool and nonces: the order is total (ties on
    /// fee go by id, and ids are unique here).
    ///
    /// The candidates are each sender's next transaction, in a heap: taking one puts that sender's following one in.
    /// A block of k from a pool of n senders costs k log n, where taking the best by a scan of the candidates cost k n
    /// (a pool of 50,000 one-transaction senders and a block of 5,000 made 250 million comparisons).
    public func select(countMax: Int, bytesMax: Int, nextNonce: (BytesKey) -> UInt64) -> [Entry] {
        var heads: [Prioritized] = []
        for (sender, entries) in bySender {
            if let head = entries[nextNonce(sender)] { heads.append(Prioritized(entry: head)) }
        }
        var candidates = Heap(heads)
        var selected: [Entry] = []
        var size = 0
        while selected.count < countMax, let best = candidates.popMax() {
            let entry = best.entry
            guard size + entry.encoded.count <= bytesMax else { continue }
            selected.append(entry)
            size += entry.encoded.count
            if let next = bySender[entry.senderKey]?[entry.transaction.nonce + 1] {
                candidates.insert(Prioritized(entry: next))
            }
        }
        return selected
    }

    /// Drops what a finalized block made stale: every transaction whose nonce is below its sender's new next nonce.
    public mutating func prune(senders: some Sequence<BytesKey>, nextNonce: (BytesKey) -> UInt64) {
        for sender in senders {
            // The sender is looked up once for all its stale entries, and its table changed in place.
            guard let position = bySender.index(forKey: sender) else { continue }
            let next = nextNonce(sender)
            // The stale entries are the nonces the block just used, just below `next`: walked down from there with
            // no list made. One the pool lacked (the block brought it) leaves a gap, and what lies below it is
            // gathered after.
            var nonce = next
            while nonce > 0, let entry = bySender.values[position].removeValue(forKey: nonce - 1) {
                forget(entry)
                nonce -= 1
            }
            if bySender.values[position].keys.contains(where: { $0 < next }) {  // the list only for a gap
                for stale in bySender.values[position].keys.filter({ $0 < next }) {
                    forget(bySender.values[position].removeValue(forKey: stale)!)
                }
            }
            // Only nonces below `next` went, so the last (the highest) went only if they all did.
            if bySender.values[position].isEmpty {
                bySender.remove(at: position)
                lastNonce[sender] = nil
            }
            dropEvictionCandidatesIfRoomy()
        }
    }

    public mutating func remove(id: [UInt8], sender: [UInt8], nonce: UInt64) {
        guard let entry = bySender[BytesKey(sender)]?[nonce], entry.id == id else { return }
        remove(entry)
    }

    private static func lowerPriority(_ a: Entry, _ b: Entry) -> Bool {
        a.transaction.fee != b.transaction.fee ? a.transaction.fee < b.transaction.fee
            : b.id.lexicographicallyPrecedes(a.id)
    }

    /// The lowest-priority last transaction of any sender but `excluded` (evicting a sender's last leaves no gap).
    private mutating func cheapestEvictable(excluding excluded: BytesKey) -> Entry? {
        var heap = evictable ?? evictionCandidates()
        evictable = nil  // mutated in place below, not copied
        defer { evictable = heap }
        var setAside: [Prioritized] = []
        defer { for candidate in setAside { heap.insert(candidate) } }
        while let top = heap.min {
            guard isLast(top.entry) else {
                _ = heap.removeMin()
                continue
            }
            if top.entry.senderKey == excluded {
                setAside.append(heap.removeMin())
                continue
            }
            return top.entry
        }
        return nil
    }

    private func isLast(_ entry: Entry) -> Bool {
        lastNonce[entry.senderKey] == entry.transaction.nonce
            && bySender[entry.senderKey]?[entry.transaction.nonce] === entry
    }

    private mutating func insert(_ entry: Entry) {
        let sender = entry.senderKey, nonce = entry.transaction.nonce
        bySender[sender, default: [:]][nonce] = entry
        byID[entry.idKey] = entry
        if nonce >= lastNonce[sender] ?? 0 {
            lastNonce[sender] = nonce
            if evictable != nil {
                evictable!.insert(Prioritized(entry: entry))
                // Leftovers (no longer last, or gone) past the senders' count: rebuild from the senders' lasts.
                if evictable!.count > 2 * lastNonce.count + 64 { evictable = evictionCandidates() }
            }
        }
        count += 1
        bytes += entry.encoded.count
    }

    private mutating func remove(_ entry: Entry) {
        let sender = entry.senderKey, nonce = entry.transaction.nonce
        if let position = bySender.index(forKey: sender) {
            bySender.values[position].removeValue(forKey: nonce)
            if bySender.values[position].isEmpty {
                bySender.remove(at: position)
                lastNonce[sender] = nil
            } else if lastNonce[sender] == nonce {
                // The sender's next highest becomes its last, and a candidate.
                let newLast = bySender.values[position].keys.max()!
                lastNonce[sender] = newLast
                evictable?.insert(Prioritized(entry: bySender.values[position][newLast]!))
            }
        }
        forget(entry)
        dropEvictionCandidatesIfRoomy()
    }

    /// Takes a removed entry out of the id table and the totals (its sender's table and last nonce are the
    /// caller's).
    private mutating func forget(_ entry: Entry) {
        byID[entry.idKey] = nil
        count -= 1
        bytes -= entry.encoded.count
    }

    private mutating func dropEvictionCandidatesIfRoomy() {
        if evictable != nil, count * 2 < limits.transactionsMax, bytes * 2 < limits.bytesMax { evictable = nil }
    }

    /// Every sender's last transaction, as candidates for eviction.
    private func evictionCandidates() -> Heap<Prioritized> {
        Heap(lastNonce.compactMap { sender, nonce in bySender[sender]?[nonce].map(Prioritized.init(entry:)) })
    }

    /// Whether the pool keeps its eviction candidates now (tests: only from the first eviction until it is back
    /// under half its limits).
    var keepsEvictionCandidates: Bool { evictable != nil }
}
