import BPCICore
import DockLockCore
import Foundation
import MetanodePluginKit
import MetanodeWire

#if canImport(Glibc)
import Glibc
#endif

/// Anchors this node's receipts in BPI's ledger: their hashes go, in sequence order, in `docklock/receipts`
/// transactions signed with the node's ledger key, one batch in flight at a time; once a batch is final, kv records
/// where each of its receipts is (`AnchorRecord`). Nothing is lost: a receipt stays pending until a finalized batch
/// holds it, across refusals (an unfunded account, a fee below the base fee), failed or dropped batches and restarts.
///
/// Everything runs on the plugin's executor: the tick timer, bus replies and the HTTP routes that read it.
///
/// kv (next to ReceiptStore's keys):
///   a/<sequence u64 BE>   AnchorRecord: where the ledger holds that receipt
///   ledger/next           u64: every receipt below it is anchored (those at or above may be, out of order, after
///                         a resolution)
///   ledger/flight         the batch in flight: u64 first | u16 count | bytes32 signed transaction
final class ReceiptAnchor: @unchecked Sendable {  // executor only
    static let tickMs: UInt64 = 100
    /// A batch goes out once this many receipts wait, or the oldest has waited `flushIntervalMs`.
    static let batchReceiptsMax = 256
    static let flushIntervalMs: UInt64 = 500
    /// After a refusal or a failure, the next attempt waits this long.
    static let retryAfterMs: UInt64 = 5_000
    /// The same problem is logged again at most this often.
    static let problemLogEveryMs: UInt64 = 60_000
    static let requestTimeoutMs: UInt32 = 5_000
    /// `<stateDirectory>/ledger.key`: the ledger key's 32-byte Ed25519 seed, mode 0600.
    static let keyFileName = "ledger.key"
    static let nextKey = Array("ledger/next".utf8)
    static let flightKey = Array("ledger/flight".utf8)

    static func anchorKey(_ sequence: UInt64) -> [UInt8] { Array("a/".utf8) + StoredU64.encode(sequence) }

    /// The batch in flight.
    struct Flight {
        var first: UInt64
        var count: Int
        var transaction: Transaction
        var encoded: [UInt8]
        var id: [UInt8] { transaction.id }
        var last: UInt64 { first + UInt64(count) - 1 }

        var stored: [UInt8] {
            var writer = WireWriter(capacity: 14 + encoded.count)
            writer.u64(first)
            writer.u16(UInt16(count))
            writer.bytes32(encoded)
            return writer.bytes
        }

        static func load(_ bytes: [UInt8]) throws -> Flight {
            var reader = WireReader(bytes, context: "kv ledger/flight")
            let first = try reader.u64("first")
            let count = Int(try reader.u16("count"))
            let encoded = try reader.bytes32("transaction", max: Transaction.encodedBytesMax)
            try reader.finish()
            return Flight(first: first, count: count, transaction: try Transaction.decode(encoded), encoded: encoded)
        }
    }

    let context: PluginContext
    let node: [UInt8]
    let signer: Ed25519Signer
    let authorization: [UInt8]
    /// The ledger account that pays the batches' fees (where BPCI charges them).
    let address: String
    /// The sequence the next receipt will get: receipts below it are issued.
    let issued: () -> UInt64
    private(set) var anchoredNext: UInt64
    private(set) var flight: Flight?
    private var busy = false
    private var retryAtMs: UInt64 = 0
    private var pendingSinceMs: UInt64?
    /// The last refusal or failure, until a batch is anchored.
    private(set) var problem: String?
    private var problemLogged: (text: String, atMs: UInt64)?
    let anchoredCounter: Counter
    let pendingGauge: Gauge

    /// Registers the ledger module with this node's BPI and returns the anchor (`start()` it from the plugin's
    /// `start`), or why there is none (logged too) when the node has no ledger.
    static func connect(context: PluginContext, node: [UInt8], stateDirectory: String,
                        issued: @escaping () -> UInt64) throws -> Result<ReceiptAnchor, NoLedger> {
        if let missing = try LedgerModule.register(context) {
            context.log.info("receipts are not anchored in a ledger: \(missing)")
            return .failure(NoLedger(reason: missing))
        }
        let random = try context.crypto.randomBytes(WireCrypto.seedBytes)
        let seed = try loadOrCreateKey(directory: stateDirectory, random: random)
        let anchor = try ReceiptAnchor(context: context, node: node, seed: seed, issued: issued)
        context.log.info("registered ledger module docklock; receipts anchored from sequence \(anchor.anchoredNext) by "
            + "ledger account \(anchor.address)")
        return .success(anchor)
    }

    /// Why this node anchors no receipts.
    struct NoLedger: Error {
        var reason: String
        var summary: [String: Any] { ["enabled": false, "reason": reason] }
    }

    /// Starts the tick. Without the 'timer' capability receipts stay pending (and the node says why); DockLock runs on.
    func start() {
        do {
            _ = try context.timers.schedule(afterMs: Self.tickMs, everyMs: Self.tickMs) { [weak self] in self?.tick() }
        } catch {
            report("receipts are not anchored: the tick timer cannot start (\(error.message)); grant docklock the "
                + "'timer' and 'bus' capabilities")
        }
    }

    init(context: PluginContext, node: [UInt8], seed: [UInt8], issued: @escaping () -> UInt64) throws {
        self.context = context
        self.node = node
        self.issued = issued
        signer = Ed25519Signer(seed: seed)
        authorization = try context.signer.sign(ReceiptBatch.authorizationMessage(ledgerKey: signer.publicKey))
        address = Address(publicKey: signer.publicKey).description
        anchoredNext = try context.kv.get(Self.nextKey).flatMap(StoredU64.decode) ?? 0
        if let stored = try context.kv.get(Self.flightKey) {
            do { flight = try Flight.load(stored) } catch {
                context.log.warn("forgetting the stored receipt batch in flight, which does not decode (\(error)); "
                    + "its receipts are sent again")
                try context.kv.delete(Self.flightKey)
            }
        }
        anchoredCounter = try context.metrics.counter("receipts_anchored_total",
                                                      help: "Receipts whose hashes a finalized ledger block holds")
        pendingGauge = try context.metrics.gauge("receipts_unanchored", help: "Receipts not yet in a finalized block")
    }

    // MARK: - The ledger key

    /// The ledger key's seed from `<directory>/ledger.key`, made at first start from `random` (32 bytes from the
    /// host): written to a temporary file (mode 0600) and linked into place, so a crash leaves no partial key and two
    /// starts cannot both make one.
    static func loadOrCreateKey(directory: String, random: [UInt8]) throws(DockLockError) -> [UInt8] {
        precondition(random.count == WireCrypto.seedBytes, "a ledger key seed is 32 bytes")
        let path = "\(directory)/\(keyFileName)"
        if let existing = FileManager.default.contents(atPath: path) {
            guard existing.count == WireCrypto.seedBytes else {
                throw DockLockError(.integrity, "\(path) is \(existing.count) bytes; a ledger key is a "
                    + "\(WireCrypto.seedBytes)-byte Ed25519 seed. Move it away to make a new key (funds stay with the "
                    + "old key's account)")
            }
            return Array(existing)
        }
        let seed = random
        let temporary = "\(path).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw DockLockError(.system, "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        defer { unlink(temporary) }
        let written = seed.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == seed.count, synced else {
            throw DockLockError(.system, "cannot write \(temporary): \(String(cString: strerror(errno)))")
        }
        if link(temporary, path) != 0 {
            guard errno == EEXIST, let raced = FileManager.default.contents(atPath: path),
                  raced.count == WireCrypto.seedBytes else {
                throw DockLockError(.system, "cannot create \(path): \(String(cString: strerror(errno)))")
            }
            return Array(raced)
        }
        return seed
    }

    // MARK: - Batching

    func tick() {
        guard !busy else { return }
        let head = issued()
        pendingGauge.set(Double(head > anchoredNext ? head - anchoredNext : 0))
        if let flight { return follow(flight) }
        guard head > anchoredNext else {
            pendingSinceMs = nil
            return
        }
        let now = context.unixTimeMs
        guard now >= retryAtMs else { return }
        let since = pendingSinceMs ?? now
        pendingSinceMs = since
        guard head - anchoredNext >= UInt64(Self.batchReceiptsMax) || now - since >= Self.flushIntervalMs else {
            return
        }
        send(upTo: head)
    }

    /// Builds the next batch from `anchoredNext` (up to the first receipt anchored already), signs it with the
    /// sender's next nonce and the ledger's fee, keeps it in kv, and submits it.
    private func send(upTo head: UInt64) {
        let first = anchoredNext
        var hashes: [[UInt8]] = []
        do {
            var sequence = first
            while sequence < head, hashes.count < Self.batchReceiptsMax,
                  try context.kv.get(Self.anchorKey(sequence)) == nil {
                guard let receipt = try ReceiptStore.load(sequence, kv: context.kv) else {
                    throw DockLockError(.notFound, "receipt \(sequence) is not in kv")
                }
                hashes.append(receipt.hash)
                sequence += 1
            }
        } catch {
            return failed("cannot read receipts from \(first) for the ledger: \(error)")
        }
        guard !hashes.isEmpty else { return advance() }
        let batch = ReceiptBatch(node: node, authorization: authorization, firstSequence: first, hashes: hashes)
        busy = true
        request(LedgerRequests.nonceTopic, signer.publicKey, "the ledger account's nonce") { [self] reply in
            let account: LedgerAccount
            do { account = try LedgerAccount.decode(reply) } catch { return failed("\(error)") }
            fee { [self] fee in
                let transaction: Transaction
                do {
                    transaction = try Transaction.signed(
                        chainID: account.chainID, signer: signer, nonce: account.nextNonce, fee: fee,
                        kind: ReceiptLedgerModule.receiptsKind, payload: batch.encoded)
                } catch { return failed("cannot sign the receipt batch: \(error)") }
                let flight = Flight(first: first, count: hashes.count, transaction: transaction,
                                    encoded: transaction.encoded)
                do { try context.kv.put(Self.flightKey, flight.stored) } catch {
                    return failed("cannot keep the receipt batch in kv: \(error)")
                }
                self.flight = flight
                submit(flight)
            }
        }
    }

    /// The fee a batch offers: BPCI's base fee and an eighth more as the proposer's tip (the base fee rises by at
    /// most an eighth a block), or 0 where no module charges fees.
    private func fee(_ then: @escaping (UInt64) -> Void) {
        let query = LedgerQuery(module: "bpci", path: "fees")
        request(LedgerRequests.queryTopic, query.encoded, "the ledger's base fee") { [self] reply in
            guard case .answer(let json) = try? LedgerQueryReply.decode(reply) else { return then(0) }
            struct Fees: Decodable {
                struct Amount: Decodable { var units: UInt64 }
                var baseFee: Amount
            }
            guard let base = (try? JSONDecoder().decode(Fees.self, from: Data(json)))?.baseFee.units else {
                return failed("BPCI's fees answer does not decode: "
                    + String(decoding: json.prefix(200), as: UTF8.self))
            }
            let (fee, overflow) = base.addingReportingOverflow(max(base / 8, 1))
            then(overflow ? base : fee)
        }
    }

    /// Submits the batch in flight (again, after a restart or when BPI has forgotten it: same bytes, same id).
    private func submit(_ flight: Flight) {
        request(LedgerRequests.submitTopic, flight.encoded, "submitting receipts \(flight.first)…\(flight.last)") {
            [self] reply in
            guard let answer = try? TxSubmitReply.decode(reply) else {
                return failed("BPI's submit reply does not decode")
            }
            if answer.accepted {
                busy = false
                return
            }
            refused(flight, reason: answer.reason, finalAt: nil)
        }
    }

    /// Asks where the batch in flight is: final (anchored, or failed), waiting, or unknown to BPI (submit it again).
    private func follow(_ flight: Flight) {
        busy = true
        request(LedgerRequests.statusTopic, flight.id, "the status of transaction \(Hex.encode(flight.id))") {
            [self] reply in
            guard let status = try? TxStatus.decode(reply) else { return failed("BPI's status reply does not decode") }
            switch status {
            case .final(let height, _, 0, _): anchored(flight, height: height)
            case .final(let height, _, _, let reason): refused(flight, reason: reason, finalAt: height)
            case .waiting: busy = false
            case .unknown: submit(flight)
            case .invalid(let reason): failed(reason)
            }
        }
    }

    private func anchored(_ flight: Flight, height: UInt64) {
        let record = AnchorRecord(height: height,
                                  batch: .init(transaction: flight.id, first: flight.first, count: flight.count))
        do {
            try context.kv.batch { batch in
                for offset in 0..<flight.count {
                    try batch.put(Self.anchorKey(flight.first + UInt64(offset)), record.encoded)
                }
                try batch.put(Self.nextKey, StoredU64.encode(flight.first + UInt64(flight.count)))
                try batch.delete(Self.flightKey)
            }
        } catch {
            return failed("cannot record receipts \(flight.first)…\(flight.last) as anchored: \(error)")
        }
        self.flight = nil
        anchoredNext = max(anchoredNext, flight.first + UInt64(flight.count))
        anchoredCounter.add(UInt64(flight.count))
        if problem != nil {
            context.log.info("receipts anchor again: \(flight.first)…\(flight.last) at height \(height)")
        }
        problem = nil
        problemLogged = nil
        busy = false
        context.log.debug("receipts \(flight.first)…\(flight.last) anchored at height \(height) in transaction "
            + "\(Hex.encode(flight.id))")
        if issued() >= anchoredNext + UInt64(Self.batchReceiptsMax) { tick() }
    }

    /// The batch was refused at admission, or failed in block `finalAt`: its receipts stay pending and go again in
    /// a new batch (new nonce, current fee) after `retryAfterMs`. DockLock's own refusal (a hash recorded already)
    /// is resolved first by asking the ledger which of them it holds.
    private func refused(_ flight: Flight, reason: String, finalAt: UInt64?) {
        do { try context.kv.delete(Self.flightKey) } catch {
            return failed("cannot forget the refused receipt batch: \(error)")
        }
        self.flight = nil
        let what = finalAt.map { "failed in block \($0)" } ?? "was refused"
        var text = "receipt batch \(flight.first)…\(flight.last) (transaction "
            + "\(Hex.encode(flight.id).prefix(16))…) \(what): \(reason)"
        if reason.contains("insufficient FLX") {
            text += ". The ledger account \(address) (key \(Hex.encode(signer.publicKey))) pays the fees: fund it "
                + "with FLX (`metanode wallet transfer <wallet> \(address) 10 FLX`)"
        } else if reason.contains("below the base fee") {
            text += ". The next batch offers the base fee of then"
        }
        report(text + "; the receipts stay pending and are sent again in \(Self.retryAfterMs / 1000) s")
        retryAtMs = context.unixTimeMs + Self.retryAfterMs
        guard reason.contains("already recorded") else {
            busy = false
            return
        }
        resolve(first: flight.first, hashes: (try? ReceiptBatch.decode(flight.transaction.payload).hashes) ?? [])
    }

    /// Asks the ledger which of these receipts it holds already and records those as anchored (without a batch: the
    /// transaction that recorded them is not known here), so the next batch starts after them.
    private func resolve(first: UInt64, hashes: [[UInt8]]) {
        guard !hashes.isEmpty else {
            busy = false
            return
        }
        let query = LedgerQuery(module: ReceiptLedgerModule.name, path: "receipts", data: hashes.flatMap { $0 })
        request(LedgerRequests.queryTopic, query.encoded, "which receipts the ledger holds") { [self] reply in
            guard case .answer(let answer) = try? LedgerQueryReply.decode(reply),
                  let records = try? ReceiptLedgerModule.decodeRecords(answer, count: hashes.count) else {
                return failed("the ledger did not say which receipts from \(first) it holds")
            }
            do {
                try context.kv.batch { batch in
                    for (offset, record) in records.enumerated() {
                        guard let record else { continue }
                        try batch.put(Self.anchorKey(first + UInt64(offset)),
                                      AnchorRecord(height: record.height, batch: nil).encoded)
                    }
                }
            } catch { return failed("cannot record the receipts the ledger holds: \(error)") }
            busy = false
            advance()
        }
    }

    /// Moves `anchoredNext` past receipts anchored already.
    private func advance() {
        let start = anchoredNext
        while anchoredNext < issued(), ((try? context.kv.get(Self.anchorKey(anchoredNext))) ?? nil) != nil {
            anchoredNext += 1
        }
        if anchoredNext != start { try? context.kv.put(Self.nextKey, StoredU64.encode(anchoredNext)) }
    }

    private func failed(_ text: String) {
        report("receipts are not anchored: \(text); trying again in \(Self.retryAfterMs / 1000) s")
        retryAtMs = context.unixTimeMs + Self.retryAfterMs
        busy = false
    }

    private func report(_ text: String) {
        problem = text
        let now = context.unixTimeMs
        if let logged = problemLogged, logged.text == text, now - logged.atMs < Self.problemLogEveryMs { return }
        problemLogged = (text, now)
        context.log.warn(text)
    }

    /// A bus request to BPI; `then` gets the reply. A failed request (BPI stopped, a timeout) is reported and
    /// retried later.
    private func request(_ topic: String, _ payload: [UInt8], _ what: String,
                         _ then: @escaping ([UInt8]) -> Void) {
        do {
            try context.bus.request(topic, payload, timeoutMs: Self.requestTimeoutMs) { [self] result in
                switch result {
                case .success(let reply): then(reply)
                case .failure(let error): failed("\(what): \(error.message)")
                }
            }
        } catch {
            failed("\(what): \(error.message)")
        }
    }

    // MARK: - Views

    /// Where the ledger holds a receipt: "ledger" in GET /receipts/<ref>.
    struct View: Encodable, Equatable {
        /// "anchored" (a finalized block holds it), "submitted" (its batch is in flight) or "pending".
        var status: String
        /// The ledger state key whose proof shows it: "docklock/r/" ‖ receipt hash, in hex.
        var stateKey: String
        var height: UInt64?
        var txId: String?
        var batchIndex: UInt64?
        var batchFirstSequence: UInt64?
        var batchCount: Int?
        /// Why it is not anchored yet, when something went wrong.
        var problem: String?
    }

    func view(of receipt: SignedReceipt) -> View {
        let sequence = receipt.receipt.sequence
        var view = View(status: "pending", stateKey: Hex.encode(ReceiptLedgerModule.stateKey(receipt.hash)))
        if let stored = (try? context.kv.get(Self.anchorKey(sequence))) ?? nil,
           let record = AnchorRecord.decode(stored) {
            view.status = "anchored"
            view.height = record.height
            if let batch = record.batch {
                view.txId = Hex.encode(batch.transaction)
                view.batchIndex = sequence - batch.first
                view.batchFirstSequence = batch.first
                view.batchCount = batch.count
            }
            return view
        }
        if let flight, (flight.first...flight.last).contains(sequence) {
            view.status = "submitted"
            view.txId = Hex.encode(flight.id)
        }
        view.problem = problem
        return view
    }

    /// The ledger account and how far anchoring has come, for GET /node.
    var summary: [String: Any] {
        let head = issued()
        var object: [String: Any] = [
            "enabled": true, "account": Hex.encode(signer.publicKey), "address": address,
            "anchoredBelow": anchoredNext, "pending": head > anchoredNext ? head - anchoredNext : 0,
        ]
        if let flight {
            object["inFlight"] = ["txId": Hex.encode(flight.id), "firstSequence": flight.first, "count": flight.count]
        }
        if let problem { object["problem"] = problem }
        return object
    }
}

/// Where the ledger holds one of this node's receipts (kv `a/<sequence>`):
///
///     u64 height | bool inBatch | [32] transaction id | u64 batch first sequence | u16 batch count   (if inBatch)
///
/// A receipt found recorded by asking the ledger (after a refusal) has no batch: only the height is known here.
struct AnchorRecord: Hashable {
    struct Batch: Hashable {
        var transaction: [UInt8]
        var first: UInt64
        var count: Int
    }

    var height: UInt64
    var batch: Batch?

    var encoded: [UInt8] {
        var writer = WireWriter(capacity: 51)
        writer.u64(height)
        writer.bool(batch != nil)
        if let batch {
            writer.fixed(batch.transaction, count: WireCrypto.hashBytes)
            writer.u64(batch.first)
            writer.u16(UInt16(batch.count))
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) -> AnchorRecord? {
        var reader = WireReader(bytes, context: "kv anchor record")
        guard let height = try? reader.u64("height"), let inBatch = try? reader.bool("inBatch") else { return nil }
        guard inBatch else { return (try? reader.finish()).map { AnchorRecord(height: height, batch: nil) } }
        guard let id = try? reader.fixed(32, "transaction"), let first = try? reader.u64("first"),
              let count = try? reader.u16("count"), (try? reader.finish()) != nil else { return nil }
        return AnchorRecord(height: height, batch: Batch(transaction: id, first: first, count: Int(count)))
    }
}
