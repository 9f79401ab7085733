@testable import DockLockRuntime
import Foundation
import Testing

/// The cgroup v2 interface files as DockLock writes and reads them, on a directory laid out like a v2 container
/// cgroup, so that a host of any layout checks the formats (Documentation/admin-guide/cgroup-v2.rst). Real v2
/// controllers run in `Tests/vm/cgroup-v2.sh`: this host is hybrid, with its memory controller held by v1.
@Suite struct CgroupV2FilesTests {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "docklock-v2-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Empty: a write to a regular file does not replace what is there, as a write to a cgroup file does.
        for name in ["memory.max", "memory.swap.max", "pids.max", "cpu.max"] { write(name, "") }
    }

    func write(_ name: String, _ text: String) {
        FileManager.default.createFile(atPath: "\(directory)/\(name)", contents: Data(text.utf8))
    }

    func read(_ name: String) -> String? { try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8) }

    @Test func limitsAreWrittenInTheV2Formats() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cgroup = ContainerCgroup(layout: .v2, directories: [directory], controllers: [:])
        try cgroup.apply(ResourceLimits(memoryBytesMax: 64 << 20, cpuMillicores: 1500, pidsMax: 32))
        #expect(read("memory.max") == "67108864")
        #expect(read("memory.swap.max") == "0") // no swap, as on v1 (memsw = memory)
        #expect(read("pids.max") == "32")
        #expect(read("cpu.max") == "150000 100000") // 1.5 CPUs: quota and period in microseconds
    }

    @Test func usageIsReadFromTheV2Files() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        write("cpu.stat", "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\n")
        write("memory.peak", "10485760\n")
        write("pids.peak", "7\n")
        write("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
            + "8:16 rbytes=1000 wbytes=24 rios=1 wios=1 dbytes=0 dios=0\n")
        write("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
        let usage = ContainerCgroup(layout: .v2, directories: [directory], controllers: [:]).usage()
        #expect(usage.cpuMs == 123)
        #expect(usage.peakMemoryBytes == 10_485_760)
        #expect(usage.pidsPeak == 7)
        #expect(usage.ioReadBytes == 5096 && usage.ioWriteBytes == 8216)
        #expect(usage.oomKilled)

        write("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
        #expect(!ContainerCgroup(layout: .v2, directories: [directory], controllers: [:]).usage().oomKilled)
    }

    @Test func aSubtreeControlThatCannotBeWrittenIsNamed() throws {
        // (EBUSY, a v2 cgroup with processes of its own, gets its own explanation; only a real v2 cgroup with
        // the controllers available can give it.)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect { try CgroupHost.enableControllers(in: directory + "/absent") } throws: { error in
            "\(error)".contains("absent/cgroup.subtree_control")
        }
    }
}
