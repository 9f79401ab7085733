import DockLockCore
import DockLockRuntime
import Testing

/// Finding the cgroup layout from mountinfo: v1, v2 and the hybrid this host has (crun 1.8 refuses hybrid hosts).
struct CgroupHostTests {
    static let v1Lines = """
        30 24 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
        32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
        33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
        34 30 0:30 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
        35 30 0:31 / /sys/fs/cgroup/blkio rw,nosuid - cgroup cgroup rw,blkio
        36 30 0:32 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
        """

    @Test func v1HierarchiesWithCoMountedControllers() throws {
        let host = try CgroupHost.parse(mountinfo: Self.v1Lines)
        #expect(host.layout == .v1)
        #expect(host.controllers["cpu"] == "/sys/fs/cgroup/cpu,cpuacct")
        #expect(host.controllers["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct")
        #expect(host.controllers["memory"] == "/sys/fs/cgroup/memory")
    }

    @Test func hybridUsesTheV1ControllersBesideAnEmptyUnifiedTree() throws {
        let host = try CgroupHost.parse(mountinfo: Self.v1Lines
            + "\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw")
        #expect(host.layout == .hybrid)
        #expect(host.unified == "/sys/fs/cgroup/unified")
        #expect(host.controllers["pids"] == "/sys/fs/cgroup/pids")
    }

    @Test func v2IsTheUnifiedHierarchyAlone() throws {
        let host = try CgroupHost.parse(mountinfo: "25 22 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate")
        #expect(host.layout == .v2)
        #expect(host.unified == "/sys/fs/cgroup")
        #expect(host.controllers.isEmpty)
    }

    @Test func aV1HostMissingAControllerIsRefusedByName() {
        let partial = Self.v1Lines.split(separator: "\n").filter { !$0.contains("blkio") }.joined(separator: "\n")
        #expect { try CgroupHost.parse(mountinfo: partial) } throws: { error in
            (error as? DockLockError)?.code == .unsupported && "\(error)".contains("blkio")
        }
    }

    @Test func noCgroupsAtAllIsRefused() {
        #expect { try CgroupHost.parse(mountinfo: "22 1 8:1 / / rw - ext4 /dev/sda1 rw") } throws: { error in
            (error as? DockLockError)?.code == .unsupported
        }
    }

    @Test func thisHostIsDetected() throws {
        let host = try CgroupHost.detect()
        #expect([CgroupHost.Layout.v1, .v2, .hybrid].contains(host.layout))
    }
}

import Foundation

/// A node that crashed leaves containers running in cgroups named with its PID; the next DockLock start ends them.
@Suite(.serialized) struct StaleCgroupTests {
    @Test func aGoneNodesContainersAreKilledAndTheirCgroupsRemovedAtStart() throws {
        let host = try CgroupHost.detect()
        let gone = try #require((20_000...32_000).reversed().first { kill(Int32($0), 0) != 0 && errno == ESRCH })
        // Spawned and reaped directly: Foundation's Process could miss the SIGKILLed child's exit and wait forever
        // (it once hung the cgroup v2 guest here), where waitpid returns within sleep's 30 s whatever happens.
        var orphan: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
        defer { for argument in argv { free(argument) } }
        try #require(posix_spawn(&orphan, "/bin/sleep", nil, nil, argv, environ) == 0)
        // Suites run in parallel, and any of them starting a runtime removes this stale cgroup too; if one does so
        // before the orphan is in, make another.
        var cgroup = try host.create("c\(gone)-orphan1", limits: .defaults)
        for attempt in 1...5 {
            do {
                for directory in cgroup.directories {
                    try "\(orphan)".write(toFile: "\(directory)/cgroup.procs", atomically: false, encoding: .utf8)
                }
                break
            } catch where attempt < 5 {
                cgroup.closeProcs()
                cgroup = try host.create("c\(gone)-orphan\(attempt + 1)", limits: .defaults)
            }
        }
        cgroup.closeProcs()
        // A live node's cgroup (this process's) is left alone.
        let mine = try host.create("c\(getpid())-mine", limits: .defaults)
        defer { mine.remove() }

        _ = try ContainerRuntime(stateDirectory: NSTemporaryDirectory() + "docklock-stale-\(getpid())")

        var status: Int32 = 0
        #expect(waitpid(orphan, &status, 0) == orphan)
        #expect(status & 0x7F == SIGKILL, "wait status \(status): the orphan was not killed")
        #expect(cgroup.directories.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        #expect(mine.directories.allSatisfy { FileManager.default.fileExists(atPath: $0) })
    }
}

/// Limits written ahead of need (the defaults, on a spare cgroup) are rewritten only when a container asks for others,
/// and raising or lowering the memory limit both work (v1 keeps memory+swap at or above memory at every write).
@Suite(.serialized) struct CgroupLimitTests {
    @Test func memoryLimitsRiseAndFallFromTheDefaults() throws {
        let host = try CgroupHost.detect()
        let cgroup = try host.create("c\(getpid())-limits", limits: .defaults)
        defer { cgroup.remove() }
        let file = host.layout == .v2 ? "\(cgroup.directories[0])/memory.max"
            : "\(cgroup.directories.first { $0.hasPrefix(host.controllers["memory"]! + "/") }!)/memory.limit_in_bytes"
        func limit() throws -> UInt64? {
            UInt64(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        #expect(try limit() == ResourceLimits.defaults.memoryBytesMax)
        for bytes: UInt64 in [512 << 20, 64 << 20, 1 << 30] {
            let limits = ResourceLimits(memoryBytesMax: bytes, cpuMillicores: 500, pidsMax: 32)
            try cgroup.apply(limits)
            #expect(try limit() == bytes)
            #expect(cgroup.appliedLimits == limits)
        }
    }
}
