// DockLock: containers started by the node itself, each execution ending in a signed, hash-chained receipt.
//
//   POST   /run                      start a container; answers when it has ended (deferred), or at once with
//                                    "detach": true
//   GET    /containers               running and recently ended containers
//   GET    /containers/<id>          one of them
//   GET    /containers/<id>/logs     a detached container's stdout and stderr (base64)
//   POST   /containers/<id>/kill     SIGKILL (or ?signal=N)
//   DELETE /containers/<id>          forget an ended container and its logs
//   GET    /receipts[?after=N&limit=M]   signed receipts in sequence order
//   GET    /receipts/<sequence | receipt hash | container id>     the receipt, and "ledger": where the ledger
//                                    holds it (when BPI runs on this node)
//   GET    /node                     the key receipts are signed with, and the ledger account that anchors them
//
// Images come from the store in <stateDirectory> (the CLI's `metanode docklock image …` writes it).
//
// With BPI on the node (an optional dependency, so it starts first), DockLock is also a ledger module: it registers
// the kind docklock/receipts and anchors every receipt's hash in batches (ReceiptAnchor, LedgerModule).
import DockLockCore
import DockLockRuntime
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodeWire

public final class DockLock: Plugin, @unchecked Sendable {
    public static let name = "docklock"
    public static let version = "0.1.0"

    struct Config: Decodable {
        var stateDirectory: String
        var ceilings: RunCeilings?
    }

    let context: PluginContext
    let runtime: ContainerRuntime
    let images: ImageStore
    let stateDirectory: String
    let ceilings: RunCeilings
    let nodeKey: [UInt8]
    let containers = ContainerTable()
    /// The receipt chain's head; receipts are issued one at a time under `chainLock` (from the monitor thread).
    private let chainLock = NSLock()
    private var chain: ReceiptChain.State
    let receiptsIssued: Counter
    let runsStarted: Counter
    /// Anchors receipts in the ledger, or why it does not (this node runs no BPI).
    private(set) var ledger: Result<ReceiptAnchor, ReceiptAnchor.NoLedger> = .failure(.init(reason: "not connected"))
    var anchor: ReceiptAnchor? { try? ledger.get() }
    /// For GET /node: the ledger account and how far anchoring has come, or why there is none.
    var ledgerSummary: [String: Any] {
        switch ledger {
        case .success(let anchor): anchor.summary
        case .failure(let none): none.summary
        }
    }

    public init(context: PluginContext) throws {
        self.context = context
        let config: Config
        do { config = try context.decodeConfig(Config.self) } catch {
            throw PluginError(MN_ERR_INVALID_ARGUMENT, "docklock needs {\"stateDirectory\": \"<path>\"} in its config "
                + "(`metanode node init` sets it to <data dir>/docklock): \(error.message)", function: "on_init")
        }
        stateDirectory = config.stateDirectory
        ceilings = config.ceilings ?? RunCeilings()
        try? FileManager.default.createDirectory(atPath: "\(stateDirectory)/containers", withIntermediateDirectories: true)
        (runtime, images) = try Self.open(stateDirectory)
        let key = try context.signer.publicKey()
        nodeKey = key
        let head = try context.kv.get(ReceiptStore.headKey).flatMap { ReceiptStore.decodeHead($0, node: key) }
        chain = head ?? .start(node: key)
        receiptsIssued = try context.metrics.counter("receipts_signed_total", help: "Execution receipts signed and stored")
        runsStarted = try context.metrics.counter("containers_started_total", help: "Containers started")
        try registerRoutes()
        ledger = try ReceiptAnchor.connect(context: context, node: key, stateDirectory: stateDirectory) {
            [unowned self] in receiptHead.nextSequence
        }
        context.log.info("docklock ready: cgroups \(runtime.cgroups.layout.rawValue), seccomp profile "
            + "\(SeccompProfile.dockerDefault.name) \(Hex.encode(SeccompProfile.dockerDefault.hash).prefix(12)), "
            + "receipts from sequence \(chain.nextSequence)")
    }

    public func start() throws { anchor?.start() }

    /// Running containers are killed (SIGKILL) so none outlives the node, and their receipts are issued before the
    /// host calls stop working. The spare cgroups and network namespaces go too.
    public func stop() {
        let left = runtime.killAll(waitMs: 2000)
        if left > 0 { context.log.warn("\(left) container(s) still ending at stop; their receipts are not issued") }
        runtime.releaseSpares()
    }

    // MARK: Running

    /// Starts `request`; `onEnd` gets the answer (with the receipt) once the container has ended.
    func start(_ request: RunRequest, onEnd: @escaping @Sendable (RunOutcome) -> Void) throws(DockLockError) -> String {
        let image = try images.resolve(request.image)
        if request.isDeterministic, !request.image.hasPrefix("sha256:") {
            throw DockLockError(.invalid, "--deterministic runs name the image by digest (\(image.digest)), not '\(request.image)', "
                + "so the run can be repeated exactly")
        }
        let plan = try RunPlan(request: request, image: image, rootfs: images.rootfsPath(of: image), ceilings: ceilings)
        // Check and start are one step: every start runs on the plugin's executor thread, one hook at a time.
        if let most = ceilings.runningMax, runtime.running.count >= most {
            throw DockLockError(.limit, "\(most) containers are running, this node's ceiling "
                + "(docklock config ceilings.runningMax); wait for one to end")
        }
        let id = Self.newContainerID()
        var spec = plan.spec(id: id)
        if request.isDetached { spec.logDirectory = "\(stateDirectory)/containers/\(id)" }
        containers.started(id: id, plan: plan, detached: request.isDetached)
        runsStarted.add(1)
        do {
            try runtime.start(spec, profile: plan.seccompProfile) { [weak self] exit in
                guard let self else { return }
                let outcome = finish(plan: plan, exit: exit)
                onEnd(outcome)
            }
        } catch {
            containers.remove(id)
            throw error
        }
        return id
    }

    /// Signs and stores the receipt for an ended container. Runs on the monitor thread.
    private func finish(plan: RunPlan, exit: ContainerExit) -> RunOutcome {
        var outcome = RunOutcome(exit: exit, plan: plan, receipt: nil, receiptError: nil)
        do {
            chainLock.lock()
            defer { chainLock.unlock() }
            outcome.receipt = try { () throws -> SignedReceipt in
                let receipt = try chain.next(
                    containerID: exit.id, imageDigest: plan.imageDigest, command: plan.arguments,
                    environmentHash: ExecutionReceipt.environmentHash(plan.environment), hostname: plan.hostname,
                    user: "\(plan.uid):\(plan.gid)", workingDirectory: plan.workingDirectory, profile: plan.profile,
                    stdin: StreamDigest(hash: exit.stdin.digest, size: exit.stdin.size),
                    stdout: StreamDigest(hash: exit.stdout.digest, size: exit.stdout.size),
                    stderr: StreamDigest(hash: exit.stderr.digest, size: exit.stderr.size),
                    outcome: exit.exitCode.map { .exited(code: $0) } ?? .signaled(signal: exit.signal ?? SIGKILL),
                    oomKilled: exit.oomKilled, timedOut: exit.timedOut,
                    usage: ResourceUsage(cpuMs: exit.usage.cpuMs, peakMemoryBytes: exit.usage.peakMemoryBytes,
                                         pidsPeak: exit.usage.pidsPeak, ioReadBytes: exit.usage.ioReadBytes,
                                         ioWriteBytes: exit.usage.ioWriteBytes),
                    startedAtMs: exit.startedAtMs, endedAtMs: exit.endedAtMs)
                let signature = try context.signer.sign(receipt.signedMessage)
                let signed = SignedReceipt(receipt: receipt, signature: signature)
                var next = chain
                try next.record(receipt)
                try ReceiptStore.store(signed, head: next, replay: plan.deterministic ? plan.replay : nil, kv: context.kv)
                chain = next
                return signed
            }()
            receiptsIssued.add(1)
        } catch {
            outcome.receiptError = "\(error)"
            context.log.error("container \(exit.id) ended but its receipt could not be issued: \(error)")
        }
        containers.ended(id: exit.id, outcome: outcome)
        return outcome
    }

    private static func open(_ directory: String) throws(PluginError) -> (ContainerRuntime, ImageStore) {
        do throws(DockLockError) {
            return (try ContainerRuntime(stateDirectory: directory), ImageStore(root: directory))
        } catch {
            throw PluginError(MN_ERR_IO, error.message, function: "on_init")
        }
    }

    var receiptHead: ReceiptChain.State { chainLock.withLock { chain } }

    static func newContainerID() -> String {
        var bytes = [UInt8](repeating: 0, count: 8)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        return Hex.encode(bytes)
    }
}
