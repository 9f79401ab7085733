import ArgumentParser
import BPCICore
import BPICore
import Foundation
import MetanodeCore
import MetanodeKernel
import MetanodeWire
import Synchronization

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure this machine: figures from real node processes.",
        subcommands: [ChainBench.self, DockLockBench.self])
}

/// Starts N validators as real `metanode node start` processes on loopback and drives them with pre-signed
/// transactions over HTTP: the most they finalize per second, submit→final latency at half that load, and the time
/// from killing the next proposer to the next finalized block.
struct ChainBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chain",
        abstract: "Throughput, latency and leader-crash recovery of N validators on this machine.",
        discussion: """
            Phases: (1) submit --transactions pre-signed transactions as fast as the nodes take them and time until \
            all are final; (2) for --seconds, submit at half the rate phase 1 reached and record each \
            transaction's submit→final latency; (3) kill -9 the next height's proposer and time the next block. \
            With --workload transfers (the default) the transactions are BPCI transfers of FLX between --senders \
            accounts the genesis funds, each paying a fee; with test-op they are BPI's `test/op` with a 16-byte \
            payload, which no module executes. The bench process shares the machine's cores with the nodes.

            Before the nodes start it measures the ceiling the run is held to: how many Ed25519 signatures libsodium \
            verifies per second on one core here (4,096 keys, each signing its own 120-byte message, verified in \
            turn), times the cores, over the validators, since each verifies every transaction once. The throughput \
            is reported as a share of it.
            """)

    enum Workload: String, ExpressibleByArgument, CaseIterable {
        case transfers
        case testOp = "test-op"
    }

    @Option(help: "transfers (BPCI, signed FLX transfers with fees) or test-op (ordering only).")
    var workload: Workload = .transfers

    @Option(help: "Validators to start.") var validators = 4
    @Option(help: "Transactions for the throughput phase.") var transactions = 40_000
    @Option(help: "Sending accounts.") var senders = 1_000
    @Option(help: "Transactions per HTTP request.") var batch = 500
    @Option(help: "Length of the latency phase.") var seconds = 10
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .customLong("keep"), help: "Keep the network's data directories and logs.") var keep = false
    @Option(name: .customLong("ceiling-seconds"),
            help: "How long to measure signature verification for the ceiling (0 skips it).")
    var ceilingSeconds = 2.0
    @Option(name: .customLong("bundled-plugins"), help: "Bundled plugins (default: next to this binary).")
    var bundledPlugins: String?

    static let chainID = "metanode-bench"

    func run() async throws {
        guard validators >= 1, transactions >= batch, senders >= 1, batch >= 1, seconds >= 1 else {
            throw ValidationError("need validators ≥ 1, transactions ≥ batch ≥ 1, senders ≥ 1, seconds ≥ 1")
        }
        guard (0...60).contains(ceilingSeconds) else {
            throw ValidationError("--ceiling-seconds is \(ceilingSeconds); it must be 0 to 60")
        }
        var template = Array("/tmp/metanode-bench-chain-XXXXXX".utf8CString)
        let root = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
        let signers = Self.signers(senders)
        // On an idle machine, before anything else runs: the VM's speed drifts by more than 10% between runs.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let perCore = ceilingSeconds > 0 ? Self.verificationsPerCoreSecond(seconds: ceilingSeconds) : 0
        let ceiling = perCore * Double(cores) / Double(validators)
        if !json && ceilingSeconds > 0 {
            print(String(format: "ceiling: libsodium verifies %.0f Ed25519 signatures/s on one core here; %d "
                + "validators on %d cores, each verifying every transaction once, allow %.0f tx/s", perCore,
                validators, cores, ceiling))
        }
        let funded = workload == .transfers ? signers.map { Address(publicKey: $0.publicKey) } : []
        let network = try BenchNetwork(root: root + "/net", validators: validators, bundledPlugins: bundledPlugins,
                                       fundedAccounts: funded, log: { if !json { print($0) } })
        defer {
            network.stopAll()
            if !keep { try? FileManager.default.removeItem(atPath: root) } else if !json { print("kept \(root)") }
        }
        try network.waitConnected()

        let latencyBudget = max(transactions, 1)
        let signed = Self.presign(signers, count: transactions + 3 * latencyBudget + 1_000, workload: workload)
        if !json { print("pre-signed \(signed.count) \(workload.rawValue) transactions from \(senders) senders") }
        let observer = FinalityObserver(network: network, ids: signed.map(\.id))
        observer.start()
        defer { observer.stop() }

        // Phase 1: as fast as they take them.
        let cpuBefore = network.cpuSeconds()
        let started = ContinuousClock.now
        var cursor = 0
        var requestIndex = 0
        while cursor < transactions {
            let end = min(cursor + batch, transactions)
            try network.submit(node: requestIndex % validators, signed[cursor..<end].map(\.encoded))
            observer.submitted(range: cursor..<end, at: .now)
            cursor = end
            requestIndex += 1
        }
        let submittedAll = ContinuousClock.now
        try observer.waitFinal(range: 0..<transactions, timeoutSeconds: 120)
        let finishedAll = ContinuousClock.now
        let cpuUsed = network.cpuSeconds() - cpuBefore
        let throughputSeconds = Self.seconds(finishedAll - started)
        let throughput = Double(transactions) / throughputSeconds
        let blocks = observer.blocksFinalized
        if !json {
            print(String(format: "throughput: %d transactions final in %.2f s = %.0f tx/s (submitted in %.2f s), "
                + "%d blocks (%.1f blocks/s), %.1f µs CPU per transaction across the nodes", transactions,
                throughputSeconds, throughput, Self.seconds(submittedAll - started), blocks,
                Double(blocks) / throughputSeconds, cpuUsed / Double(transactions) * 1e6))
            if ceiling > 0 { print(String(format: "  = %.0f%% of the ceiling", throughput / ceiling * 100)) }
        }

        // Phase 2: latency at half the load phase 1 reached.
        let rate = max(throughput / 2, 1)
        let tickMs = 20.0
        let perTick = max(Int((rate * tickMs / 1000).rounded()), 1)
        let latencyStart = cursor
        let phaseStart = ContinuousClock.now
        var tick = 0
        while ContinuousClock.now - phaseStart < .seconds(seconds), cursor + perTick <= signed.count - 1_000 {
            let due = phaseStart + .milliseconds(Int(Double(tick) * tickMs))
            if ContinuousClock.now < due { try await Task.sleep(until: due, clock: .continuous) }
            let end = cursor + perTick
            try network.submit(node: tick % validators, signed[cursor..<end].map(\.encoded))
            observer.submitted(range: cursor..<end, at: .now)
            cursor = end
            tick += 1
        }
        try observer.waitFinal(range: latencyStart..<cursor, timeoutSeconds: 60)
        let latencies = observer.latenciesMs(range: latencyStart..<cursor).sorted()
        let p50 = Self.percentile(latencies, 0.50), p99 = Self.percentile(latencies, 0.99)
        let offered = Double(cursor - latencyStart) / Self.seconds(ContinuousClock.now - phaseStart)
        if !json {
            print(String(format: "latency at %.0f tx/s offered (half of phase 1): p50 %.1f ms, p99 %.1f ms, max %.1f ms "
                + "over %d transactions", offered, p50, p99, latencies.last ?? 0, latencies.count))
        }

        // Phase 3: kill -9 the next height's proposer, then submit to another node and time the next block.
        let height = try network.height(0)
        let proposer = Int((height + 1) % UInt64(validators))
        var recoveryMs = 0.0
        if validators >= 4 {
            network.kill9(proposer)
            let killed = ContinuousClock.now
            let target = (proposer + 1) % validators
            try network.submit(node: target, signed[cursor..<cursor + 10].map(\.encoded))
            observer.submitted(range: cursor..<cursor + 10, at: killed)
            try observer.waitFinal(range: cursor..<cursor + 10, timeoutSeconds: 30)
            recoveryMs = Self.seconds(observer.finalTime(cursor)! - killed) * 1000
            if !json {
                print(String(format: "leader crash: validator %d (proposer of height %d) killed -9; next block final "
                    + "%.0f ms later", proposer, height + 1, recoveryMs))
            }
        }
        if json {
            let result: JSONValue = .object([
                "workload": .string(workload.rawValue),
                "validators": .int(Int64(validators)), "transactions": .int(Int64(transactions)),
                "throughputTxPerSecond": .double(throughput.rounded()),
                "blocksPerSecond": .double((Double(blocks) / throughputSeconds * 10).rounded() / 10),
                "cpuMicrosecondsPerTransaction": .double((cpuUsed / Double(transactions) * 1e6).rounded()),
                "latencyOfferedTxPerSecond": .double(offered.rounded()), "latencyP50Ms": .double(p50),
                "latencyP99Ms": .double(p99), "leaderCrashToNextBlockMs": .double(recoveryMs.rounded()),
                "verificationsPerCoreSecond": ceiling > 0 ? .double(perCore.rounded()) : .null,
                "cores": .int(Int64(cores)), "ceilingTxPerSecond": ceiling > 0 ? .double(ceiling.rounded()) : .null,
                "shareOfCeiling": ceiling > 0 ? .double((throughput / ceiling * 1000).rounded() / 1000) : .null,
            ])
            print(result.serialized(pretty: true))
        }
    }

    struct Signed: Sendable {
        var encoded: [UInt8]
        var id: [UInt8]
    }

    static func signers(_ count: Int) -> [Ed25519Signer] {
        (0..<count).map { index in
            Ed25519Signer(seed: WireCrypto.domainHash("bench-sender", [UInt8(truncatingIfNeeded: index),
                                                                       UInt8(truncatingIfNeeded: index >> 8),
                                                                       UInt8(truncatingIfNeeded: index >> 16)]))
        }
    }

    /// What each transfer offers in fees (0.01 FLX): far above the base fee even after many full blocks raise it
    /// by 1/8 each; the genesis gives every sender `fundsPerSender` FLX.
    static let transferFee: UInt64 = 10_000_000
    static let fundsPerSender = "1000"

    /// Transactions in submission order: round robin over senders, so each sender's nonces arrive in order. A
    /// transfer pays 1 nano-FLX to the next sender.
    static func presign(_ signers: [Ed25519Signer], count: Int, workload: Workload) -> [Signed] {
        let addresses = signers.map { Address(publicKey: $0.publicKey) }
        var nonces = [UInt64](repeating: 0, count: signers.count)
        var out: [Signed] = []
        out.reserveCapacity(count)
        for index in 0..<count {
            let sender = index % signers.count
            let kind: String, payload: [UInt8], fee: UInt64
            switch workload {
            case .transfers:
                let message = BankMessage.transfer(Payment(to: addresses[(sender + 1) % addresses.count],
                                                           denomination: .flx, amount: 1))
                (kind, payload, fee) = (message.kind, message.payload, transferFee)
            case .testOp:
                (kind, payload, fee) = ("test/op", Array("bench \(index)".utf8.prefix(16)), 1)
            }
            let transaction = try! Transaction.signed(chainID: chainID, signer: signers[sender], nonce: nonces[sender],
                                                      fee: fee, kind: kind, payload: payload)
            nonces[sender] += 1
            out.append(Signed(encoded: transaction.encoded, id: transaction.id))
        }
        return out
    }

    /// Ed25519 verifications per second on one core, measured as the shared ed25519-ceiling.c benchmark does: 4,096
    /// keys, each with its own 120-byte message (a transfer's envelope is about that), verified in turn with
    /// libsodium's `crypto_sign_verify_detached` for `seconds`.
    static func verificationsPerCoreSecond(seconds: Double) -> Double {
        let count = 4_096, messageBytes = 120
        var keys: [[UInt8]] = [], messages: [[UInt8]] = [], signatures: [[UInt8]] = []
        for index in 0..<count {
            let seed = WireCrypto.domainHash("bench-ceiling", [UInt8(truncatingIfNeeded: index),
                                                               UInt8(truncatingIfNeeded: index >> 8)])
            let signer = Ed25519Signer(seed: seed)
            let message = (0..<messageBytes).map { seed[$0 % seed.count] &+ UInt8(truncatingIfNeeded: $0) }
            keys.append(signer.publicKey)
            messages.append(message)
            signatures.append(signer.sign(message))
        }
        let started = ContinuousClock.now
        var verified = 0
        var elapsed = 0.0
        repeat {
            for index in 0..<count {
                guard WireCrypto.verify(signature: signatures[index], publicKey: keys[index],
                                        message: messages[index]) else {
                    preconditionFailure("libsodium refused a signature it made")
                }
            }
            verified += count
            elapsed = Self.seconds(ContinuousClock.now - started)
        } while elapsed < seconds
        return Double(verified) / elapsed
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }
}

/// N node processes made with `chain genesis`.
final class BenchNetwork: @unchecked Sendable {
    let directories: [DataDirectory]
    var processes: [Process?]
    var addresses: [String]

    init(root: String, validators: Int, bundledPlugins: String?, fundedAccounts: [Address], log: (String) -> Void)
        throws {
        let base = 20_000 + Int(getpid() % 20_000)
        (directories, _) = try ChainCommand.makeNetwork(
            root: root, count: validators, chainID: ChainBench.chainID, basePort: base, httpBasePort: base + 1_000,
            bundledPlugins: bundledPlugins ?? NodeSetup.defaultBundledPluginsDirectory(),
            fundedAccounts: fundedAccounts, perAccount: ChainBench.fundsPerSender, testTransactions: true)
        processes = []
        addresses = []
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        for data in directories {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["node", "start", "--data-dir", data.root]
            let logPath = data.root + "/node.log"
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)  // FileHandle below reports a failure
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            processes.append(process)
        }
        for data in directories {
            let deadline = Date().addingTimeInterval(30)
            while data.runningNodeAddress() == nil, Date() < deadline, !Self.exited(processes[addresses.count]) {
                usleep(10_000)
            }
            guard let address = data.runningNodeAddress() else {
                // The others must not outlive the bench: nothing would stop them once this throws.
                stopAll()
                let logPath = data.root + "/node.log"
                let why = Self.lastError(inLog: logPath).map { ": \($0)" } ?? ""
                throw MetanodeError(.internal, "node \(data.root) did not start\(why) (its log: \(logPath))")
            }
            addresses.append(address)
        }
        log("started \(validators) validators under \(root)")
    }

    private static func exited(_ process: Process?) -> Bool { process.map { !$0.isRunning } ?? true }

    /// The last line of a node's log that reports an error, if any: what to show when the node did not start.
    static func lastError(inLog path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return text.split(separator: "\n").last { $0.hasPrefix("error:") || $0.contains(" error ") }
            .map { String($0.hasPrefix("error: ") ? $0.dropFirst("error: ".count) : $0) }
    }

    func waitConnected() throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let counts = try addresses.map { address -> Int in
                let peers = try JSONValue.parse(try LoopbackHTTPClient.request("GET", address, "/v1/net/peers").body)
                return (peers.arrayValue ?? []).filter { $0["state"]?.stringValue == "connected" }.count
            }
            if counts.allSatisfy({ $0 == addresses.count - 1 }) { return }
            usleep(20_000)
        }
        throw MetanodeError(.timeout, "the validators did not all connect within 20 s")
    }

    func submit(node: Int, _ transactions: [[UInt8]]) throws {
        var index = node
        while processes[index] == nil { index = (index + 1) % processes.count }
        let response = try LoopbackHTTPClient.request("POST", addresses[index], "/v1/plugins/bpi/txs",
                                                      body: TransactionBatch.encode(transactions),
                                                      contentType: "application/octet-stream")
        guard response.status == 200 else {
            throw MetanodeError(.internal, "POST /txs answered \(response.status): \(response.text)")
        }
        let answer = try JSONValue.parse(response.body)
        if let rejected = answer["rejected"]?.arrayValue, !rejected.isEmpty {
            throw MetanodeError(.internal, "\(rejected.count) transaction(s) refused, first: "
                + (rejected[0]["error"]?.stringValue ?? "?"))
        }
    }

    func firstLive() -> Int { processes.firstIndex { $0 != nil } ?? 0 }

    func height(_ node: Int) throws -> UInt64 {
        let status = try JSONValue.parse(try LoopbackHTTPClient.request("GET", addresses[node],
                                                                        "/v1/plugins/bpi/status").body)
        return UInt64(status["height"]?.intValue ?? 0)
    }

    func block(_ node: Int, height: UInt64) throws -> FinalizedBlock? {
        let response = try LoopbackHTTPClient.request("GET", addresses[node], "/v1/plugins/bpi/blocks/\(height)?format=raw")
        guard response.status == 200 else { return nil }
        return try? FinalizedBlock.decode(response.body)
    }

    /// CPU seconds (user + system) the node processes have used so far.
    func cpuSeconds() -> Double {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var total = 0.0
        for process in processes.compactMap({ $0 }) {
            guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // After the command: state is field 3; utime and stime are fields 14 and 15.
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                total += (user + system) / ticks
            }
        }
        return total
    }

    func kill9(_ node: Int) {
        guard let process = processes[node] else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        processes[node] = nil
    }

    func stopAll() {
        for process in processes.compactMap({ $0 }) where process.isRunning { process.terminate() }
        for process in processes.compactMap({ $0 }) { process.waitUntilExit() }
    }
}

/// Follows the chain on a live node and records when each known transaction became final.
///
/// It shares the cores with the nodes it measures, so it asks for little: the next block's stored bytes (one request
/// every 2 ms while it is not there yet, where asking for the status first was two, and the status is rendered on the
/// ledger's thread), ids read from the bytes without decoding the transactions, and waits that resume from the first
/// transaction not yet final rather than looking every transaction up again each time.
final class FinalityObserver: @unchecked Sendable {
    private let network: BenchNetwork
    private let indexByID: [BytesKey: Int]
    private let state: Mutex<State>
    private var thread: Thread?
    static let pollIntervalMicroseconds: UInt32 = 2_000

    struct State {
        /// By the transaction's position in the pre-signed list.
        var submitted: [ContinuousClock.Instant?]
        var final: [ContinuousClock.Instant?]
        var nextHeight: UInt64 = 1
        var blocks = 0
        var running = true
    }

    init(network: BenchNetwork, ids: [[UInt8]]) {
        self.network = network
        var index: [BytesKey: Int] = [:]
        index.reserveCapacity(ids.count)
        for (position, id) in ids.enumerated() { index[BytesKey(id)] = position }
        indexByID = index
        state = Mutex(State(submitted: Array(repeating: nil, count: ids.count),
                            final: Array(repeating: nil, count: ids.count)))
    }

    var blocksFinalized: Int { state.withLock { $0.blocks } }

    func start() {
        let thread = Thread { [self] in
            while state.withLock({ $0.running }) {
                // Every block there is, then a pause until the next one may be.
                while poll() {}
                usleep(Self.pollIntervalMicroseconds)
            }
        }
        self.thread = thread
        thread.start()
    }

    func stop() { state.withLock { $0.running = false } }

    func submitted(range: Range<Int>, at instant: ContinuousClock.Instant) {
        state.withLock { for index in range { $0.submitted[index] = instant } }
    }

    func finalTime(_ index: Int) -> ContinuousClock.Instant? { state.withLock { $0.final[index] } }

    func waitFinal(range: Range<Int>, timeoutSeconds: Double) throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
        // Everything before `next` is final (it only grows), so each look starts there.
        var next = range.lowerBound
        while ContinuousClock.now < deadline {
            next = state.withLock { state in
                var index = next
                while index < range.upperBound, state.final[index] != nil { index += 1 }
                return index
            }
            if next == range.upperBound { return }
            usleep(Self.pollIntervalMicroseconds)
        }
        let missing = state.withLock { state in range.filter { state.final[$0] == nil }.count }
        throw MetanodeError(.timeout, "\(missing) of \(range.count) transactions not final after \(timeoutSeconds) s")
    }

    func latenciesMs(range: Range<Int>) -> [Double] {
        state.withLock { state in
            range.compactMap { index in
                guard let submitted = state.submitted[index], let final = state.final[index] else { return nil }
                return ChainBench.seconds(final - submitted) * 1000
            }
        }
    }

    /// Takes the next block if the node has it; whether it did.
    private func poll() -> Bool {
        let next = state.withLock { $0.nextHeight }
        guard let block = try? network.block(network.firstLive(), height: next) else { return false }
        let now = ContinuousClock.now
        let indexes = block.block.transactions.compactMap { encoded in
            Transaction.id(ofEncoded: encoded).flatMap { indexByID[BytesKey($0)] }
        }
        state.withLock { state in
            for index in indexes { state.final[index] = now }
            state.blocks += 1
            state.nextHeight = next + 1
        }
        return true
    }
}
