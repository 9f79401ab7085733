import CDockLock
import DockLockCore
@testable import DockLockRuntime
import Foundation
import MetanodeWire
import Testing

/// A busybox root filesystem (Debian's busybox-static) in a temporary directory, made once per test process.
enum BusyboxRoot {
    static let path: String = {
        let root = NSTemporaryDirectory() + "docklock-busybox-\(getpid())"
        let fm = FileManager.default
        for directory in ["bin", "proc", "dev", "tmp", "etc", "sys"] {
            try! fm.createDirectory(atPath: "\(root)/\(directory)", withIntermediateDirectories: true)
        }
        if !fm.fileExists(atPath: "\(root)/bin/busybox") { try! fm.copyItem(atPath: "/bin/busybox", toPath: "\(root)/bin/busybox") }
        for applet in ["sh", "true", "false", "echo", "cat", "mount", "unshare", "dd", "sleep", "hostname", "id", "ls",
                       "head", "ip", "ping", "wc", "env"]
        where !fm.fileExists(atPath: "\(root)/bin/\(applet)") {
            try! fm.createSymbolicLink(atPath: "\(root)/bin/\(applet)", withDestinationPath: "busybox")
        }
        return root
    }()
}

/// Runs containers straight through ContainerRuntime (no node, no image store): root and cgroups are needed.
@Suite(.serialized)
struct ContainerRuntimeTests {
    static let runtime: ContainerRuntime = {
        let state = NSTemporaryDirectory() + "docklock-state-\(getpid())"
        return try! ContainerRuntime(stateDirectory: state)
    }()

    static func run(_ arguments: [String], stdin: [UInt8] = [], timeoutMs: UInt64 = 20_000,
                    limits: ResourceLimits = .defaults, loopback: Bool = false) throws -> ContainerExit {
        var spec = ContainerSpec(id: "test-\(UInt32.random(in: 0...UInt32.max))", rootfs: BusyboxRoot.path,
                                 arguments: arguments, environment: ["PATH=/bin"], hostname: "docklock-test")
        spec.stdin = stdin
        spec.timeoutMs = timeoutMs
        spec.limits = limits
        spec.loopback = loopback
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var exit: ContainerExit?
        try runtime.start(spec, profile: .dockerDefault) { result in
            exit = result
            done.signal()
        }
        done.wait()
        return exit!
    }

    static func text(_ stream: CapturedStream) -> String { String(decoding: stream.captured, as: UTF8.self) }

    @Test func trueExitsZeroWithEmptyOutput() throws {
        let exit = try Self.run(["/bin/true"])
        #expect(exit.exitCode == 0)
        #expect(exit.signal == nil)
        #expect(exit.stdout.size == 0)
        #expect(exit.stdout.digest == WireCrypto.blake2b256([]))
    }

    @Test func outputIsCapturedAndHashed() throws {
        let exit = try Self.run(["sh", "-c", "echo hello; echo oops >&2; exit 3"])
        #expect(exit.exitCode == 3)
        #expect(Self.text(exit.stdout) == "hello\n")
        #expect(Self.text(exit.stderr) == "oops\n")
        #expect(exit.stdout.digest == WireCrypto.blake2b256(Array("hello\n".utf8)))
    }

    @Test func stdinReachesTheCommand() throws {
        let exit = try Self.run(["cat"], stdin: Array("from stdin".utf8))
        #expect(Self.text(exit.stdout) == "from stdin")
        #expect(exit.stdin.size == 10)
    }

    @Test func theContainerHasItsOwnHostnamePidOneAndReadOnlyRoot() throws {
        let exit = try Self.run(["sh", "-c", "hostname; echo $$; touch /x 2>&1; touch /tmp/ok && echo tmp-writable"])
        let lines = Self.text(exit.stdout).split(separator: "\n")
        #expect(lines.first == "docklock-test")
        #expect(lines.dropFirst().first == "1")
        #expect(Self.text(exit.stdout).contains("Read-only file system"))
        #expect(lines.last == "tmp-writable")
    }

    @Test func aNonRootUserRunsWithNoCapabilities() throws {
        var spec = ContainerSpec(id: "user-\(UInt32.random(in: 0...UInt32.max))", rootfs: BusyboxRoot.path,
                                 arguments: ["sh", "-c", "id; grep CapEff /proc/self/status; echo x > /dev/shm/ok && echo shm"],
                                 environment: ["PATH=/bin"], hostname: "u")
        spec.uid = 1000
        spec.gid = 1000
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var exit: ContainerExit?
        try Self.runtime.start(spec, profile: .dockerDefault) { exit = $0; done.signal() }
        done.wait()
        let output = Self.text(exit!.stdout)
        #expect(output.contains("uid=1000 gid=1000"), "\(output)")
        #expect(output.contains("CapEff:\t0000000000000000"), "\(output)")
        #expect(output.contains("shm"), "\(output)")
        // The child changed its ids while sharing this process's memory, which the kernel marks non-dumpable; the
        // runtime puts it back (core dumps and /proc ownership of the daemon depend on it).
        #expect(dl_get_dumpable() == 1)
    }

    @Test func noFileOfTheDaemonReachesTheContainer() throws {
        // ls's own fds: stdin, stdout, stderr and the directory it reads; nothing inherited.
        let exit = try Self.run(["ls", "/proc/self/fd"])
        #expect(Self.text(exit.stdout) == "0\n1\n2\n3\n")
    }

    @Test func mountIsRefused() throws {
        let exit = try Self.run(["sh", "-c", "mount -t tmpfs none /tmp 2>&1; echo status=$?"])
        #expect(Self.text(exit.stdout).contains("permission denied"))
        #expect(!Self.text(exit.stdout).contains("status=0"))
    }

    @Test func unshareIsRefused() throws {
        let exit = try Self.run(["sh", "-c", "unshare -n true 2>&1; echo status=$?"])
        #expect(!Self.text(exit.stdout).contains("status=0"))
    }

    @Test func procSysIsReadOnly() throws {
        let exit = try Self.run(["sh", "-c", "(echo 1 > /proc/sys/vm/drop_caches) 2>&1; echo status=$?"])
        #expect(Self.text(exit.stdout).contains("Read-only file system"))
        #expect(!Self.text(exit.stdout).contains("status=0"))
    }

    @Test func thereIsNoNetworkButLoopbackWhenAsked() throws {
        let none = try Self.run(["sh", "-c", "ping -c 1 -W 1 127.0.0.1 >/dev/null 2>&1; echo status=$?"])
        #expect(!Self.text(none.stdout).contains("status=0"))
        let lo = try Self.run(["sh", "-c", "ip link show lo | head -1"], loopback: true)
        #expect(Self.text(lo.stdout).contains("UP"))
    }

    /// The child is unkillable by the OOM killer only while it shares the daemon's memory; the container gets the
    /// daemon's value back, and its root (without CAP_SYS_RESOURCE) cannot lower it.
    @Test func theContainerHasTheDaemonsOOMScoreAndCannotLowerIt() throws {
        let mine = try String(contentsOfFile: "/proc/self/oom_score_adj", encoding: .utf8)
        let exit = try Self.run(["sh", "-c", "cat /proc/self/oom_score_adj; echo -1000 > /proc/self/oom_score_adj && echo lowered"])
        #expect(String(decoding: exit.stdout.captured, as: UTF8.self) == mine, "\(exit)")
    }

    @Test func aForkBombStopsAtThePidLimit() throws {
        let limits = ResourceLimits(memoryBytesMax: 128 << 20, cpuMillicores: 1000, pidsMax: 32)
        let exit = try Self.run(["sh", "-c", "for i in $(seq 1 200); do sleep 5 & done 2>/dev/null; echo started"],
                                timeoutMs: 3000, limits: limits)
        #expect(exit.usage.pidsPeak <= 32)
        #expect(exit.usage.pidsPeak > 8)
    }

    @Test func aMemoryHogIsKilledAndReportedAsOOM() throws {
        let limits = ResourceLimits(memoryBytesMax: 32 << 20, cpuMillicores: 1000, pidsMax: 64)
        let exit = try Self.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"], limits: limits)
        #expect(exit.oomKilled)
        #expect(exit.signal == SIGKILL)
    }

    @Test func aTimeoutKillsTheContainer() throws {
        let exit = try Self.run(["sleep", "30"], timeoutMs: 200)
        #expect(exit.timedOut)
        #expect(exit.signal == SIGKILL)
        #expect(exit.endedAtMs - exit.startedAtMs < 5000)
    }

    @Test func aMissingCommandIsNamed() throws {
        #expect(throws: DockLockError.self) { try Self.run(["no-such-command"]) }
        do { _ = try Self.run(["no-such-command"]) } catch let error as DockLockError {
            #expect(error.code == .notFound)
            #expect(error.message.contains("no-such-command"))
        }
    }

    @Test func cpuTimeIsMeasured() throws {
        let exit = try Self.run(["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
        #expect(exit.exitCode == 0)
        #expect(exit.usage.cpuMs > 0)
        #expect(exit.usage.peakMemoryBytes > 0)
    }
}

/// Hostile workloads built from Fixtures/probe.c: each tries one forbidden operation inside a container.
@Suite(.serialized)
struct HostileWorkloadTests {
    static let probeInstalled: Bool = {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/probe.c").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["cc", "-static", "-O1", "-o", "\(BusyboxRoot.path)/bin/probe", source]
        try? process.run()
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()

    @Test(arguments: ["mount", "unshare", "kexec_load", "raw_socket", "ptrace", "proc_sys", "clone_newuser"])
    func isRefused(_ operation: String) throws {
        try #require(Self.probeInstalled, "cc -static could not build the probe")
        let hostname = try String(contentsOfFile: "/proc/sys/kernel/hostname", encoding: .utf8)
        let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        let exit = try ContainerRuntimeTests.run(["/bin/probe", operation])
        let output = ContainerRuntimeTests.text(exit.stdout)
        #expect(output.hasPrefix("blocked:"), "\(operation): \(output)")
        #expect(exit.exitCode == 0)
        // The host is unchanged.
        #expect(try String(contentsOfFile: "/proc/sys/kernel/hostname", encoding: .utf8) == hostname)
        #expect(try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) == mounts)
    }
}

@Suite struct KillAllTests {
    @Test func killAllEndsEveryRunningContainerAndWaitsForTheirEnds() throws {
        let runtime = try ContainerRuntime(stateDirectory: NSTemporaryDirectory() + "docklock-killall-\(getpid())")
        let ended = NSLock()
        nonisolated(unsafe) var exits: [ContainerExit] = []
        for index in 0..<3 {
            var spec = ContainerSpec(id: "killall-\(getpid())-\(index)", rootfs: BusyboxRoot.path, arguments: ["sleep", "30"],
                                     environment: ["PATH=/bin"], hostname: "k")
            spec.timeoutMs = 60_000
            try runtime.start(spec, profile: .dockerDefault) { exit in ended.withLock { exits.append(exit) } }
        }
        #expect(runtime.running.count == 3)
        #expect(runtime.killAll(waitMs: 5000) == 0)
        #expect(runtime.running.isEmpty)
        let all = ended.withLock { exits }
        #expect(all.count == 3)
        #expect(all.allSatisfy { $0.signal == SIGKILL && !$0.timedOut })
    }

    /// A detached container's log files stop at logBytesMax; the stream is still hashed and counted whole.
    @Test func logFilesStopAtTheirCap() throws {
        let runtime = try ContainerRuntime(stateDirectory: NSTemporaryDirectory() + "docklock-logcap-\(getpid())")
        let logs = NSTemporaryDirectory() + "docklock-logcap-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: logs) }
        var spec = ContainerSpec(id: "logcap-\(getpid())", rootfs: BusyboxRoot.path,
                                 arguments: ["sh", "-c", "head -c 5000 /dev/zero; head -c 10 /dev/zero >&2"],
                                 environment: ["PATH=/bin"], hostname: "l")
        spec.logDirectory = logs
        spec.logBytesMax = 1000
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var exit: ContainerExit?
        try runtime.start(spec, profile: .dockerDefault) { result in
            exit = result
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(exit?.stdout.size == 5000)
        var whole = Blake2b256Hasher()
        whole.update([UInt8](repeating: 0, count: 5000))
        #expect(exit?.stdout.digest == whole.finalize())
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(logs)/stdout")
        #expect((attributes[.size] as? NSNumber)?.intValue == 1000)
        #expect(FileManager.default.fileExists(atPath: "\(logs)/stdout.truncated"))
        #expect(!FileManager.default.fileExists(atPath: "\(logs)/stderr.truncated")) // 10 bytes: under the cap
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(logs)/stderr")).count == 10)
    }

    /// A stopping plugin leaves no spare cgroup behind; the next container makes spares again.
    @Test func releaseSparesRemovesThemUntilTheNextStart() throws {
        let runtime = try ContainerRuntime(stateDirectory: NSTemporaryDirectory() + "docklock-spares-\(getpid())")
        func waitForSpares() -> [String] {
            for _ in 0..<500 {
                let spares = runtime.prestarter.spareDirectories
                if !spares.isEmpty { return spares }
                usleep(2000)
            }
            return runtime.prestarter.spareDirectories
        }
        let spares = waitForSpares()
        #expect(!spares.isEmpty)
        runtime.releaseSpares()
        usleep(50_000)
        #expect(runtime.prestarter.spareDirectories.isEmpty)
        #expect(spares.allSatisfy { !FileManager.default.fileExists(atPath: $0) })

        let done = DispatchSemaphore(value: 0)
        let spec = ContainerSpec(id: "spares-\(getpid())", rootfs: BusyboxRoot.path, arguments: ["true"],
                                 environment: ["PATH=/bin"], hostname: "s")
        try runtime.start(spec, profile: .dockerDefault) { _ in done.signal() }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(!waitForSpares().isEmpty)
    }
}
