import Foundation
import Logging
import MetanodeCore
import MetanodeKernel
import MetanodeNet
import ServiceLifecycle

/// Opens nothing (storage is opened before the group starts, so plugins can rely on it) but owns closing it: it is
/// first in the group, so it shuts down last, after every plugin has stopped and the HTTP server is gone. Then it
/// flushes RocksDB and records a clean exit for the crash guard.
struct StorageService: Service {
    let kernel: Kernel
    let onClosed: @Sendable () -> Void

    func run() async throws {
        try? await gracefulShutdown()
        do {
            try kernel.store.flush()
        } catch {
            kernel.logger.error("flushing storage failed: \(error)")
        }
        kernel.close()
        onClosed()
        kernel.logger.info("storage flushed and closed")
    }
}

/// The bus and the clock behind plugin timers and bus-request timeouts. Second in the group, so it shuts down after
/// every plugin has stopped (no timer fires into a stopped plugin) and before storage closes.
struct BusService: Service {
    let kernel: Kernel

    func run() async throws {
        try? await gracefulShutdown()
        kernel.stopBus()
        kernel.logger.info("bus stopped")
    }
}

/// The peer-to-peer transport. Its listener is bound before the group starts (so a port in use fails the start);
/// placed after the bus and before the plugins, it closes its connections once every plugin has stopped.
struct NetService: Service {
    let transport: NIOPeerTransport
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        await transport.shutdown()
        logger.info("network stopped")
    }
}

/// Last in the group, so first to shut down: answers every deferred plugin HTTP response still open with 503 (and
/// any deferred later). The HTTP server, which shuts down next, waits for open requests, and a deferred one may be an
/// hour from its answer; the plugins that would answer it stop only after the server.
struct DeferredHTTPDrainService: Service {
    let kernel: Kernel

    func run() async throws {
        try? await gracefulShutdown()
        kernel.drainDeferredHTTP()
    }
}

/// Settles once: whether a plugin started. Dependents wait on it.
actor StartGate {
    private var outcome: Bool?
    private var waiters: [CheckedContinuation<Bool, Never>] = []

    func settle(_ started: Bool) {
        guard outcome == nil else { return }
        outcome = started
        for waiter in waiters { waiter.resume(returning: started) }
        waiters.removeAll()
    }

    func wait() async -> Bool {
        if let outcome { return outcome }
        return await withCheckedContinuation { waiters.append($0) }
    }
}

/// One plugin as a Service: waits for its dependencies, runs on_init and on_start, and at shutdown — which the group
/// delivers in reverse dependency order — runs on_stop.
struct PluginService: Service, CustomStringConvertible {
    let kernel: Kernel
    let runtime: PluginRuntime
    let gate: StartGate
    let dependencies: [(name: String, gate: StartGate)]
    /// Started first if they can; this plugin starts either way (it runs without what they offer).
    var optionalDependencies: [(name: String, gate: StartGate)] = []

    var description: String { "plugin \(runtime.name)" }

    func run() async throws {
        let logger = kernel.logger
        for dependency in dependencies where await !dependency.gate.wait() {
            runtime.status = .failed("dependency \(dependency.name) did not start")
            logger.error("plugin \(runtime.name) not started: its dependency \(dependency.name) did not start")
            await gate.settle(false)
            try? await gracefulShutdown()
            return
        }
        for dependency in optionalDependencies where await !dependency.gate.wait() {
            logger.notice("""
                plugin \(runtime.name) starts without its optional dependency \(dependency.name), which did not start
                """)
        }
        do {
            try await kernel.start(runtime)
            logger.info("plugin \(runtime.name) \(runtime.version) started")
            await gate.settle(true)
        } catch {
            logger.error("plugin \(runtime.name) failed to start: \(error.message)")
            await gate.settle(false)
            try? await gracefulShutdown()
            return
        }
        try? await gracefulShutdown()
        await kernel.stop(runtime)
        logger.info("plugin \(runtime.name) stopped")
    }
}
