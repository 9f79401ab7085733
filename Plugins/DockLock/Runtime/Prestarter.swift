import CDockLock
import DockLockCore
import Foundation
import Synchronization

/// DockLock's housekeeping thread. It does the slow, container-independent part of starting a container ahead of
/// need: a fresh network namespace (about 0.5 ms of clone time) and the cgroup directories (about 0.3 ms of mkdir)
/// with the default limits written. A container takes one ready slot and the thread makes the next. Each slot is
/// used once; none is shared between containers. When none is ready (a burst), the container makes its own, as it
/// would without this. It also removes finished containers' cgroups (`retire`).
///
/// The thread runs at nice 5: a container's own start and exit win the CPU from it (at normal priority, refilling a
/// slot right after a start competed with that container's set-up), yet it keeps a fair share under load, because it
/// holds kernel locks the containers also take (rtnl and the netns lock while making a namespace, the cgroup mutex in
/// mkdir and rmdir), and a holder starved at nice 19 would stall them.
final class Prestarter: @unchecked Sendable {
    struct Slot {
        var netnsFD: Int32
        var cgroup: ContainerCgroup
    }

    /// Ready slots kept: enough for a sequential caller and a short burst, few enough that idle nodes hold little.
    static let slotsMax = 4
    static let niceness: Int32 = 5
    /// Finished cgroups waiting past this many are removed by the caller of `retire` itself: at low priority under
    /// sustained load this thread may fall behind, and the directories must not pile up.
    static let retiredMax = 64
    private let cgroups: CgroupHost
    private let condition = NSCondition()
    private var ready: [Slot] = []
    private var retired: [ContainerCgroup] = []
    /// Spare names are p<pid>-<n>, n unique in the process (tests run several runtimes in one).
    private static let counter = Atomic<Int>(0)
    /// Set by `drain` (the plugin stopping): no slots are made until a container asks for one again.
    private var paused = false

    init(cgroups: CgroupHost) {
        self.cgroups = cgroups
        Self.removeStale(cgroups)
    }

    /// Starts the thread. Separate from init, so that nothing is left running when the runtime's later set-up fails.
    func start() {
        // The thread keeps its object alive: both live until the process exits (the node never unloads a plugin).
        let thread = Thread { [self] in self.loop() }
        thread.name = "docklock-prestart"
        thread.start()
    }

    /// Every DockLock cgroup carries its node's PID: spares are p<pid>-<n>, containers made without a spare
    /// c<pid>-<container id>. Those of a node that is gone — stopped, or crashed with containers still running — are
    /// emptied (each process SIGKILLed) and removed. Another live node's cgroups on the same host are left alone.
    /// Returns how many processes it killed.
    @discardableResult
    static func removeStale(_ cgroups: CgroupHost) -> Int {
        let parents = Set(cgroups.layout == .v2 ? [cgroups.unified!] : Array(cgroups.controllers.values))
            .map { "\($0)/\(CgroupHost.parentName)" }
        var killed: Set<Int32> = []
        var stale: [String] = []
        for parent in parents {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
            where name.hasPrefix("p") || name.hasPrefix("c") {
                guard let owner = Int32(name.dropFirst().prefix { $0 != "-" }), owner != getpid(),
                      kill(owner, 0) != 0, errno == ESRCH else { continue }
                let directory = "\(parent)/\(name)"
                let procs = (try? String(contentsOfFile: "\(directory)/cgroup.procs", encoding: .utf8)) ?? ""
                for line in procs.split(separator: "\n") {
                    if let pid = Int32(line), !killed.contains(pid), kill(pid, SIGKILL) == 0 { killed.insert(pid) }
                }
                stale.append(directory)
            }
        }
        // Killed processes leave their cgroups a moment later; rmdir waits for that (EBUSY), briefly.
        for directory in stale {
            var attempts = 0
            while rmdir(directory) != 0 && errno == EBUSY && attempts < 500 {
                attempts += 1
                usleep(1000)
            }
        }
        return killed.count
    }

    /// A ready slot, or nil when none is (the caller then creates its own).
    func take() -> Slot? {
        condition.lock()
        defer { condition.unlock() }
        if paused {
            paused = false
            condition.signal()
        }
        guard !ready.isEmpty else { return nil }
        let slot = ready.removeFirst()
        condition.signal()
        return slot
    }

    /// Removes `cgroup` soon, on this thread.
    func retire(_ cgroup: ContainerCgroup) {
        condition.lock()
        guard retired.count < Self.retiredMax else {
            condition.unlock()
            cgroup.remove()
            return
        }
        retired.append(cgroup)
        condition.signal()
        condition.unlock()
    }

    /// Removes the ready slots and the retired cgroups now, and makes no more until a container asks again
    /// (`take`): for a plugin stopping, so that a node that exits leaves no cgroup behind.
    func drain() {
        condition.lock()
        paused = true
        let slots = ready, finished = retired
        ready = []
        retired = []
        condition.unlock()
        for slot in slots {
            close(slot.netnsFD)
            slot.cgroup.remove()
        }
        for cgroup in finished { cgroup.remove() }
    }

    /// Cgroup directories of spare slots, for tests.
    var spareDirectories: [String] { condition.withLock { ready.flatMap(\.cgroup.directories) } }

    private func loop() {
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(dl_gettid()), Self.niceness) // this thread only
        while true {
            condition.lock()
            while (ready.count >= Self.slotsMax || paused) && retired.isEmpty { condition.wait() }
            if !retired.isEmpty {
                let finished = retired
                retired = []
                condition.unlock()
                for cgroup in finished { cgroup.remove() }
                continue
            }
            let name = "p\(getpid())-\(Self.counter.add(1, ordering: .relaxed).newValue)"
            condition.unlock()
            // dl_netns_create unshares this thread's network namespace for a moment: only this thread calls it.
            let fd = dl_netns_create()
            let cgroup = try? cgroups.prepare(name)
            // Most containers run with the default limits; a failure here is retried by the container's own apply.
            try? cgroup?.apply(.defaults)
            condition.lock()
            if paused { // drained while this slot was being made
                if fd >= 0 { close(fd) }
                condition.unlock()
                cgroup?.remove()
            } else if fd >= 0, let cgroup {
                ready.append(Slot(netnsFD: fd, cgroup: cgroup))
                condition.unlock()
            } else {
                if fd >= 0 { close(fd) }
                cgroup?.remove()
                // The container path reports the real error; back off instead of spinning.
                condition.unlock()
                usleep(200_000)
            }
        }
    }
}
