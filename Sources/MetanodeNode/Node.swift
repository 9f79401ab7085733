import Foundation
import Hummingbird
import Logging
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeKernel
import MetanodeNet
import MetanodeStorage
import NIOCore
import ServiceLifecycle

/// `metanode node start`: storage, bus, HTTP and every plugin as Services in one ServiceGroup. SIGTERM or SIGINT stop
/// the HTTP server, then plugins in reverse dependency order, then flush and close storage.
public enum Node {
    public struct Options: Sendable {
        public var dataDirectory: DataDirectory
        public var safeMode: Bool
        /// Overrides config.json's http.listen (e.g. "127.0.0.1:0" for a free port in tests).
        public var httpListen: String?

        public init(dataDirectory: DataDirectory, safeMode: Bool = false, httpListen: String? = nil) {
            self.dataDirectory = dataDirectory
            self.safeMode = safeMode
            self.httpListen = httpListen
        }
    }

    public static func run(_ options: Options, logger: Logger) async throws(MetanodeError) {
        let startedAt = ContinuousClock.now
        logger.info("memory allocator: \(MemoryAllocator.description)")
        let data = options.dataDirectory
        let config = try data.loadConfig()
        let nodeKey = try data.loadNodeKey()
        let listen = try HostPort.parse(options.httpListen ?? config.httpListen)
        try FileIO.createDirectory(data.runDirectory)

        // Storage first: its lock makes this the only node on the data directory, so nothing below can disturb
        // a node that is already running there (its crash record, its address file).
        var storeOptions = Store.Options()
        storeOptions.syncWrites = config.storageSyncWrites
        let store = try Store(path: data.databasePath, options: storeOptions)
        try? FileIO.remove(data.httpAddressPath)

        let manager = PluginManager(data)
        let crashGuard: CrashGuard
        do {
            try quarantineAfterCrash(data: data, manager: manager, logger: logger)
            crashGuard = try CrashGuard(path: data.crashGuardPath)
            let added = try manager.syncBundled(config: config)
            if !added.isEmpty { logger.info("registered bundled plugins: \(added.joined(separator: ", "))") }
        } catch {
            store.close()
            throw error
        }
        let kernel = Kernel(store: store, nodeKey: nodeKey.keyPair, logger: logger, crashGuard: crashGuard)

        var transport: NIOPeerTransport?
        if let net = config.net {
            let own = PeerID(bytes: nodeKey.keyPair.publicKey.bytes)!
            let peers: [NetSettings.Peer]
            do {
                peers = try net.allPeers(excluding: own)
            } catch {
                kernel.close()
                throw error
            }
            var netConfig = NetConfig(listen: net.listen,
                                      peers: peers.map { NetConfig.Peer(address: $0.address, key: $0.key) })
            netConfig.allowUnlisted = net.allowUnlisted
            if let keepalive = net.keepaliveMs { netConfig.keepaliveIntervalMs = keepalive }
            if let dead = net.deadPeerMs { netConfig.deadPeerTimeoutMs = dead }
            if let queue = net.sendQueueMessagesMax { netConfig.sendQueueMessagesMax = queue }
            let peerTransport = NIOPeerTransport(identity: nodeKey.keyPair, config: netConfig, logger: logger,
                                                 metrics: kernel.metricsRegistry)
            kernel.attach(peerTransport)
            do {
                try await peerTransport.start()
            } catch {
                kernel.close()
                throw error
            }
            logger.info("""
                network: node key \(peerTransport.localID.hex), listening on \
                \(peerTransport.boundAddress?.description ?? "nothing (dial only)"), \(peers.count) peer(s) configured
                """)
            transport = peerTransport
        }

        let plan: PluginPlan
        do {
            plan = try PluginPlanner.plan(dataDirectory: data, config: config, registry: data.loadRegistry(),
                                          safeMode: options.safeMode)
        } catch {
            kernel.close()
            throw error
        }
        for warning in plan.warnings { logger.warning("\(warning) (loaded anyway: allowed unsigned)") }
        for note in plan.notes { logger.notice("\(note)") }
        var notStarted = plan.failures
        for (name, error) in plan.failures.sorted(by: { $0.key < $1.key }) {
            logger.error("plugin \(name) will not run: \(error.message)")
        }

        var gates: [String: StartGate] = [:]
        var pluginServices: [PluginService] = []
        for request in plan.load {
            let name = request.package.manifest.name
            let dependencies = plan.dependencies[name] ?? []
            if let missing = dependencies.first(where: { gates[$0] == nil }) {
                let error = MetanodeError(.dependency, "not started: its dependency \(missing) did not load")
                notStarted[name] = error
                logger.error("plugin \(name) will not run: \(error.message)")
                continue
            }
            do {
                let runtime = try kernel.load(request)
                let gate = StartGate()
                gates[name] = gate
                // Optional dependencies that loaded start first; one that did not load is simply not waited for.
                let optional = (plan.optionalDependencies[name] ?? []).compactMap { other in
                    gates[other].map { (name: other, gate: $0) }
                }
                pluginServices.append(PluginService(
                    kernel: kernel, runtime: runtime, gate: gate,
                    dependencies: dependencies.map { ($0, gates[$0]!) }, optionalDependencies: optional))
            } catch {
                notStarted[name] = error
                logger.error("plugin \(name) could not be loaded: \(error.message)")
            }
        }

        let state = NodeState(kernel: kernel, config: config, data: data, safeMode: options.safeMode,
                              notStarted: notStarted, nodeKey: nodeKey.publicKey)
        let router = HTTPAPI.router(state: state)
        let allGates = Array(gates.values)
        let notStartedCount = notStarted.count
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "metanode"),
            onServerRunning: { channel in
                let bound = channel.localAddress.flatMap { address -> String? in
                    guard let port = address.port else { return nil }
                    return HostPort(host: listen.host, port: port).description
                } ?? listen.description
                // The API serves (/healthz answers "starting") while plugins start; "ready" waits for all of them.
                Task {
                    for gate in allGates { _ = await gate.wait() }
                    try? FileIO.writeAtomically(Array("\(getpid())\n".utf8), to: data.pidPath)
                    try? FileIO.writeAtomically(Array("\(bound)\n".utf8), to: data.httpAddressPath)
                    state.markReady()
                    let elapsed = ContinuousClock.now - startedAt
                    let running = kernel.runtimes.filter { $0.status == .running }.count
                    let stopped = kernel.runtimes.count - running + notStartedCount
                    logger.info("""
                        node ready in \(elapsed.milliseconds) ms: \(running) plugin(s) running, \(stopped) not \
                        running; HTTP on http://\(bound)
                        """)
                }
            },
            logger: logger)

        let storage = StorageService(kernel: kernel) {
            try? FileIO.remove(data.httpAddressPath)
            try? FileIO.remove(data.pidPath)
            crashGuard.markCleanExit()
        }
        // Started in this order, shut down in reverse: deferred HTTP answers, HTTP, plugins (reverse dependency order),
        // bus, storage.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: storage), .init(service: BusService(kernel: kernel)),
        ]
        if let transport { services.append(.init(service: NetService(transport: transport, logger: logger))) }
        services += pluginServices.map { .init(service: $0) }
        services.append(.init(service: app))
        services.append(.init(service: DeferredHTTPDrainService(kernel: kernel)))
        let group = ServiceGroup(configuration: .init(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
            logger: logger))
        do {
            try await group.run()
        } catch {
            throw MetanodeError(.internal, "node stopped with an error: \(error)", cause: nil)
        }
    }

    /// Reads the previous run's crash guard record. A fatal signal inside a plugin quarantines that plugin.
    static func quarantineAfterCrash(data: DataDirectory, manager: PluginManager, logger: Logger) throws(MetanodeError) {
        guard let previous = CrashGuard.readPrevious(path: data.crashGuardPath), !previous.cleanExit else { return }
        if let crash = previous.crash {
            let reason = "the node (pid \(previous.pid)) crashed with \(CrashGuard.signalName(crash.signal)) inside "
                + "\(crash.hook) of plugin \(crash.plugin); enable it again with `metanode plugin enable "
                + "\(crash.plugin)` once fixed"
            try manager.quarantine(crash.plugin, reason: reason)
            logger.error("quarantined plugin \(crash.plugin): \(reason)")
        } else if !previous.inFlight.isEmpty {
            let calls = previous.inFlight.map { "\($0.plugin) (\($0.hook))" }.joined(separator: ", ")
            logger.warning("""
                the previous run (pid \(previous.pid)) ended without a clean shutdown while these plugin calls ran: \
                \(calls); no plugin is blamed for an outside kill
                """)
        } else {
            logger.warning("the previous run (pid \(previous.pid)) ended without a clean shutdown")
        }
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}

/// What the HTTP API reads about the node.
final class NodeState: Sendable {
    let kernel: Kernel
    let config: NodeConfig
    let data: DataDirectory
    let safeMode: Bool
    let notStarted: [String: MetanodeError]
    let nodeKey: MinisignPublicKey
    let startedAt = Date()
    private let ready = ManagedAtomicFlag()

    init(kernel: Kernel, config: NodeConfig, data: DataDirectory, safeMode: Bool,
         notStarted: [String: MetanodeError], nodeKey: MinisignPublicKey) {
        self.kernel = kernel
        self.config = config
        self.data = data
        self.safeMode = safeMode
        self.notStarted = notStarted
        self.nodeKey = nodeKey
    }

    func markReady() { ready.set() }
    var isReady: Bool { ready.isSet }
}

import Synchronization

final class ManagedAtomicFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
