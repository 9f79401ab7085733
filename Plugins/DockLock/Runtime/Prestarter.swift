import CDockLock
import DockLockCore
import Foundation

/// The slow, container-independent part of starting a container, done ahead of need on a thread of its own: a fresh
/// network namespace (about 0.5 ms of clone time) and the cgroup directories (about 0.3 ms of mkdir) with the default
/// limits written. A container takes one ready slot and the thread makes the next. Each slot is used once; none is
/// shared between containers.
/// When none is ready (a burst), the container makes its own, as it would without this.
final class Prestarter: @unchecked Sendable {
    struct Slot {
        var netnsFD: Int32
        var cgroup: ContainerCgroup
    }

    /// Ready slots kept: enough for a sequential caller and a short burst, few enough that idle nodes hold little.
    static let slotsMax = 4
    private let cgroups: CgroupHost
    private let condition = NSCondition()
    private var ready: [Slot] = []
    private var counter = 0
    private var failing = false

    init(cgroups: CgroupHost) {
        self.cgroups = cgroups
        Self.removeStale(cgroups)
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
        guard !ready.isEmpty else { return nil }
        let slot = ready.removeFirst()
        condition.signal()
        return slot
    }

    private func loop() {
        while true {
            condition.lock()
            while ready.count >= Self.slotsMax { condition.wait() }
            counter += 1
            let name = "p\(getpid())-\(counter)"
            condition.unlock()
            // dl_netns_create unshares this thread's network namespace for a moment: only this thread calls it.
            let fd = dl_netns_create()
            let cgroup = try? cgroups.prepare(name)
            // Most containers run with the default limits; a failure here is retried by the container's own apply.
            try? cgroup?.apply(.defaults)
            condition.lock()
            if fd >= 0, let cgroup {
                ready.append(Slot(netnsFD: fd, cgroup: cgroup))
                failing = false
                condition.unlock()
            } else {
                if fd >= 0 { close(fd) }
                cgroup?.remove()
                // The container path reports the real error; back off instead of spinning.
                failing = true
                condition.unlock()
                usleep(200_000)
            }
        }
    }
}
