import CDockLock
import DockLockCore
import Foundation

/// The slow, container-independent part of starting a container, done ahead of need on a thread of its own: a fresh
/// network namespace (about 0.5 ms of clone time) and the cgroup directories (about 0.3 ms of mkdir). A container
/// takes one ready slot and the thread makes the next. Each slot is used once; none is shared between containers.
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
        Self.removeStaleSlots(cgroups)
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "docklock-prestart"
        thread.start()
    }

    /// Spare cgroups are named p<pid>-<n>; those of processes that are gone (a node that stopped) are removed.
    /// Another live node's spares on the same host are left alone.
    static func removeStaleSlots(_ cgroups: CgroupHost) {
        let parents = Set(cgroups.layout == .v2 ? [cgroups.unified!] : Array(cgroups.controllers.values))
            .map { "\($0)/\(CgroupHost.parentName)" }
        for parent in parents {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix("p") {
                guard let pid = Int32(name.dropFirst().prefix { $0 != "-" }), pid != getpid(),
                      kill(pid, 0) != 0, errno == ESRCH else { continue }
                rmdir("\(parent)/\(name)")
            }
        }
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
