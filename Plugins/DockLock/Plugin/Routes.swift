import DockLockCore
import DockLockRuntime
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodeWire

/// Running and recently ended containers, for `ps`, `logs`, `kill` and `rm`. Ended ones beyond `endedMax` are
/// forgotten oldest first (their receipts stay in kv).
final class ContainerTable: @unchecked Sendable {
    struct Entry {
        var id: String
        var plan: RunPlan
        var detached: Bool
        var outcome: RunOutcome?
    }

    static let endedMax = 1000
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var endedOrder: [String] = []

    func started(id: String, plan: RunPlan, detached: Bool) {
        var kept = plan
        kept.stdin = []  // up to 16 MiB each: the table keeps only what `ps` shows
        lock.withLock { entries[id] = Entry(id: id, plan: kept, detached: detached) }
    }

    func ended(id: String, outcome: RunOutcome) {
        var kept = outcome
        kept.plan.stdin = []
        kept.exit.stdout.captured = []  // the caller got the output; the table keeps sizes and hashes
        kept.exit.stderr.captured = []
        lock.withLock {
            entries[id]?.outcome = kept
            endedOrder.append(id)
            while endedOrder.count > Self.endedMax { entries[endedOrder.removeFirst()] = nil }
        }
    }

    func remove(_ id: String) {
        lock.withLock {
            entries[id] = nil
            endedOrder.removeAll { $0 == id }
        }
    }

    func get(_ id: String) -> Entry? { lock.withLock { entries[id] } }
    var all: [Entry] { lock.withLock { Array(entries.values) } }
}

extension DockLock {
    static let runDeferTimeoutMs: UInt32 = 3_600_000

    func registerRoutes() throws {
        let http = context.http
        try http.deferrableRoute("POST", "/run") { [unowned self] request in
            let run: RunRequest
            do { run = try JSONDecoder().decode(RunRequest.self, from: Data(request.body)) } catch {
                return .now(Self.error(.invalid, "the body is not a run request: \(error)"))
            }
            if run.isDetached {
                do {
                    let id = try start(run) { _ in }
                    return .now(Self.json(["id": id, "detached": true], status: 201))
                } catch { return .now(Self.error(error)) }
            }
            // The run's own timeout plus a minute to report, within the deferral maximum (no overflow: RunPlan
            // refuses over-long timeouts later, and this must not trap first).
            let requested = run.timeoutMs ?? 0
            let timeout = requested == 0 || requested >= UInt64(Self.runDeferTimeoutMs) - 60_000
                ? Self.runDeferTimeoutMs : UInt32(requested + 60_000)
            let responder = try request.deferResponse(timeoutMs: timeout)
            do {
                _ = try start(run) { outcome in
                    responder.respond(Self.json(outcome.document(includeOutput: true)))
                }
            } catch {
                responder.respond(Self.error(error))
            }
            return .later(responder)
        }
        try registerVerifyRoute()
        try http.route("GET", "/containers") { [unowned self] _ in
            struct List: Encodable { var containers: [RunOutcomeDocument] }
            return Self.json(List(containers: containers.all.sorted { $0.id < $1.id }.map(Self.describe)))
        }
        try http.route("*", "/containers/*") { [unowned self] request in
            let rest = request.path.dropFirst("/containers/".count).split(separator: "/").map(String.init)
            guard let id = rest.first, let entry = containers.get(id) else {
                return Self.error(.notFound, "no container \(rest.first ?? "") on this node (see GET /containers)")
            }
            switch (request.method, rest.dropFirst().first) {
            case ("GET", nil): return Self.json(Self.describe(entry))
            case ("GET", "logs"):
                let directory = "\(stateDirectory)/containers/\(id)"
                guard entry.detached else {
                    return Self.error(.notFound, "container \(id) ran attached: its output went to the caller")
                }
                // Read from byte offsets, at most logChunkBytesMax per stream per call: `logs --follow` polls with
                // the offsets it got back, so output streams while the container runs.
                var answer: [String: Any] = ["id": id, "running": entry.outcome == nil]
                for stream in ["stdout", "stderr"] {
                    var from: UInt64 = 0
                    if let text = request.queryItem("\(stream)From") {
                        guard let value = UInt64(text) else { return Self.error(.invalid, "\(stream)From must be a byte offset") }
                        from = value
                    }
                    let chunk = Self.readChunk("\(directory)/\(stream)", from: from, bytesMax: Self.logChunkBytesMax)
                    answer[stream] = Data(chunk).base64EncodedString()
                    answer["\(stream)Next"] = from + UInt64(chunk.count)
                    // The log file stops at ContainerSpec.logBytesMax; the receipt still hashes the whole stream.
                    answer["\(stream)Truncated"] = FileManager.default.fileExists(atPath: "\(directory)/\(stream).truncated")
                }
                return Self.json(answer)
            case ("POST", "kill"):
                var signal = SIGKILL
                if let text = request.queryItem("signal") {
                    guard let value = Int32(text), (1...64).contains(value) else {
                        return Self.error(.invalid, "signal '\(text)' is not a number 1...64")
                    }
                    signal = value
                }
                do { try runtime.kill(id, signal: signal) } catch { return Self.error(error) }
                return Self.json(["id": id, "signal": signal])
            case ("DELETE", nil):
                guard entry.outcome != nil else {
                    return Self.error(.invalid, "container \(id) is running; kill it first")
                }
                containers.remove(id)
                try? FileManager.default.removeItem(atPath: "\(stateDirectory)/containers/\(id)")
                return Self.json(["id": id, "removed": true])
            default:
                return Self.error(.notFound, "no \(request.method) \(request.path) (containers answer GET, GET …/logs, "
                    + "POST …/kill, DELETE)")
            }
        }
        try http.route("GET", "/receipts") { [unowned self] request in
            var after: UInt64?
            if let text = request.queryItem("after") {
                guard let value = UInt64(text) else { return Self.error(.invalid, "after must be a sequence number") }
                after = value
            }
            var limit = 100
            if let text = request.queryItem("limit") {
                guard let value = Int(text), (1...ReceiptStore.listLimitMax).contains(value) else {
                    return Self.error(.invalid, "limit must be 1...\(ReceiptStore.listLimitMax)")
                }
                limit = value
            }
            let receipts = try ReceiptStore.list(after: after, limit: limit, kv: context.kv)
            return .bytes(try Self.receiptJSON(receipts), contentType: "application/json")
        }
        try http.route("GET", "/receipts/*") { [unowned self] request in
            let reference = String(request.path.dropFirst("/receipts/".count))
            guard let receipt = try ReceiptStore.find(reference, kv: context.kv) else {
                return Self.error(.notFound, "no receipt '\(reference)' (give a sequence number, a receipt hash or a "
                    + "container id)")
            }
            guard let anchor else { return .bytes(try Self.receiptJSON(receipt), contentType: "application/json") }
            return .bytes(try Self.receiptJSON(ReceiptWithLedger(receipt: receipt, ledger: anchor.view(of: receipt))),
                          contentType: "application/json")
        }
        try http.route("GET", "/node") { [unowned self] _ in
            Self.json(["publicKey": Hex.encode(nodeKey), "cgroups": runtime.cgroups.layout.rawValue,
                       "seccompProfile": SeccompProfile.dockerDefault.name,
                       "seccompProfileHash": Hex.encode(SeccompProfile.dockerDefault.hash),
                       "nextReceipt": receiptHead.nextSequence, "running": runtime.running.count,
                       "ledger": ledgerSummary])
        }
    }

    /// A receipt's fields and, beside them, "ledger": `metanode receipt verify` ignores keys it does not know, so
    /// the answer still verifies as a receipt file.
    struct ReceiptWithLedger: Encodable {
        var receipt: SignedReceipt
        var ledger: ReceiptAnchor.View
        enum CodingKeys: String, CodingKey { case ledger }

        func encode(to encoder: any Encoder) throws {
            try receipt.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(ledger, forKey: .ledger)
        }
    }

    static let logChunkBytesMax = 1 << 20

    /// Up to `bytesMax` bytes of `path` from `from` (none when it is shorter or missing).
    static func readChunk(_ path: String, from: UInt64, bytesMax: Int) -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: from)) != nil, let data = try? handle.read(upToCount: bytesMax) else { return [] }
        return Array(data)
    }

    static func receiptJSON(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return Array(try encoder.encode(value))
    }

    static func describe(_ entry: ContainerTable.Entry) -> RunOutcomeDocument {
        var document = entry.outcome?.document(includeOutput: false)
            ?? RunOutcomeDocument(id: entry.id, image: entry.plan.imageDigest, command: entry.plan.arguments)
        document.detached = entry.detached
        document.state = entry.outcome == nil ? "running" : "exited"
        return document
    }

    static func json(_ value: some Encodable, status: UInt16 = 200) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(value) else {
            return .text("could not encode the answer as JSON\n", status: 500)
        }
        return .bytes(Array(data), contentType: "application/json", status: status)
    }

    static func json(_ object: [String: Any], status: UInt16 = 200) -> HTTPResponse {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return .text("could not encode the answer as JSON\n", status: 500)
        }
        return .bytes(Array(data), contentType: "application/json", status: status)
    }

    static func error(_ code: DockLockError.Code, _ message: String) -> HTTPResponse {
        error(DockLockError(code, message))
    }

    static func error(_ error: any Error) -> HTTPResponse {
        guard let error = error as? DockLockError else { return json(["error": "\(error)"], status: 500) }
        let status: UInt16 = switch error.code {
        case .notFound: 404
        case .invalid, .limit, .integrity: 400
        case .exists: 409
        case .unsupported: 501
        case .system: 500
        }
        return json(["error": error.message, "code": error.code.rawValue], status: status)
    }
}
