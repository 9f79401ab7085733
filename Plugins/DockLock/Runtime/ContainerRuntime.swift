import CDockLock
import DockLockCore
import Foundation
import MetanodeWire

/// Everything needed to start one container.
public struct ContainerSpec: Sendable {
    public var id: String
    /// The image's unpacked root filesystem (host path).
    public var rootfs: String
    public var arguments: [String]
    public var environment: [String]
    public var workingDirectory = "/"
    public var hostname: String
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    /// true: `lo` up in the container's own network namespace; false: no interface up at all.
    public var loopback = false
    public var readOnlyRoot = true
    /// Pin every process to CPU 0 (the deterministic profile's "one CPU").
    public var singleCPU = false
    public var limits = ResourceLimits.defaults
    /// 0 = no limit.
    public var timeoutMs: UInt64 = 0
    public var stdin: [UInt8] = []
    public var tmpBytesMax: UInt64 = 64 << 20
    /// stdout and stderr are appended to `<logDirectory>/stdout` and `/stderr` when set.
    public var logDirectory: String?
    /// Bytes of each stream written to its log file; past it the stream is still hashed and counted, and
    /// `<logDirectory>/<stream>.truncated` says the file stops short. A container cannot fill the node's disk.
    public var logBytesMax: UInt64 = ContainerSpec.logBytesMaxDefault
    public static let logBytesMaxDefault: UInt64 = 64 << 20
    /// At most this much of each stream is kept in memory for the caller; all of it is hashed and logged.
    public var captureBytesMax = 1 << 20

    public init(id: String, rootfs: String, arguments: [String], environment: [String], hostname: String) {
        self.id = id
        self.rootfs = rootfs
        self.arguments = arguments
        self.environment = environment
        self.hostname = hostname
    }

    /// Docker's default capability set less CAP_NET_RAW (as Podman does): no raw sockets.
    public static let defaultCapabilities: [Int] = [
        0 /* CHOWN */, 1 /* DAC_OVERRIDE */, 3 /* FOWNER */, 4 /* FSETID */, 5 /* KILL */, 6 /* SETGID */,
        7 /* SETUID */, 8 /* SETPCAP */, 10 /* NET_BIND_SERVICE */, 18 /* SYS_CHROOT */, 27 /* MKNOD */,
        29 /* AUDIT_WRITE */, 31 /* SETFCAP */,
    ]
}

/// One output stream as it was captured.
public struct CapturedStream: Sendable, Equatable {
    public var digest: [UInt8]
    public var size: UInt64
    /// The first `captureBytesMax` bytes.
    public var captured: [UInt8]
    public var truncated: Bool { UInt64(captured.count) < size }
}

/// How a container ended, with what it wrote and what its cgroup measured.
public struct ContainerExit: Sendable {
    public var id: String
    /// The exit status of its first process, or nil when a signal ended it.
    public var exitCode: Int32?
    public var signal: Int32?
    public var timedOut: Bool
    public var oomKilled: Bool
    public var usage: CgroupUsage
    public var stdin: (digest: [UInt8], size: UInt64)
    public var stdout: CapturedStream
    public var stderr: CapturedStream
    public var startedAtMs: UInt64
    public var endedAtMs: UInt64
}

/// Starts containers from the node's process and watches them on one thread: output, exit, timeouts, cgroup usage.
public final class ContainerRuntime: @unchecked Sendable {
    public let cgroups: CgroupHost
    public let seccomp: SeccompCompiler
    let monitor: ContainerMonitor
    let prestarter: Prestarter
    /// Search path for a command given without "/".
    static let pathDirectories = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    public static let argumentsMax = 1024
    public static let stdinBytesMax = 16 << 20

    public init(stateDirectory: String) throws(DockLockError) {
        cgroups = try CgroupHost.detect()
        seccomp = SeccompCompiler()
        let prestarter = Prestarter(cgroups: cgroups)
        self.prestarter = prestarter
        monitor = try ContainerMonitor(retire: { prestarter.retire($0) })
        prestarter.start()
    }

    public var running: [String] { monitor.runningIDs }

    /// Starts `spec` under `profile`. Returns once the command runs (or throws, naming the step that failed);
    /// `onExit` is called once, on the monitor thread, when it has ended and its output is drained.
    public func start(_ spec: ContainerSpec, profile: SeccompProfile,
                      onExit: @escaping @Sendable (ContainerExit) -> Void) throws(DockLockError) {
        guard !spec.arguments.isEmpty, spec.arguments.count <= Self.argumentsMax else {
            throw DockLockError(.invalid, "a container needs 1...\(Self.argumentsMax) command arguments; got \(spec.arguments.count)")
        }
        guard spec.stdin.count <= Self.stdinBytesMax else {
            throw DockLockError(.limit, "stdin is \(spec.stdin.count) bytes; at most \(Self.stdinBytesMax)")
        }
        for text in spec.arguments + spec.environment + [spec.hostname, spec.workingDirectory] where text.utf8.contains(0) {
            throw DockLockError(.invalid, "arguments, environment, hostname and working directory may not contain NUL bytes")
        }
        try Self.prepareMountPoints(spec.rootfs)
        let program = try seccomp.program(for: profile)
        let slot = prestarter.take()
        let cgroup: ContainerCgroup
        if let slot {
            cgroup = slot.cgroup
            do throws(DockLockError) { try cgroup.apply(spec.limits) } catch {
                close(slot.netnsFD)
                cgroup.remove()
                throw error
            }
        } else {
            cgroup = try cgroups.create("c\(getpid())-\(spec.id)", limits: spec.limits)
        }
        var fds: [Int32] = slot.map { [$0.netnsFD] } ?? []
        func cleanUp() {
            for fd in fds { close(fd) }
            cgroup.remove()
        }
        let stdinFD = dl_memfd_create("docklock-stdin", 1 /* MFD_CLOEXEC */)
        guard stdinFD >= 0 else {
            cleanUp()
            throw DockLockError(.system, "memfd_create for stdin: \(String(cString: strerror(errno)))")
        }
        fds.append(stdinFD)
        if !spec.stdin.isEmpty {
            let written = spec.stdin.withUnsafeBytes { Foundation.write(stdinFD, $0.baseAddress, $0.count) }
            guard written == spec.stdin.count else {
                cleanUp()
                throw DockLockError(.system, "writing stdin: \(String(cString: strerror(errno)))")
            }
            lseek(stdinFD, 0, SEEK_SET)
        }
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        guard dl_pipe_cloexec(&out) == 0 else {
            cleanUp()
            throw DockLockError(.system, "pipe2: \(String(cString: strerror(errno)))")
        }
        fds += [out[1]]
        guard dl_pipe_cloexec(&err) == 0 else {
            close(out[0])
            cleanUp()
            throw DockLockError(.system, "pipe2: \(String(cString: strerror(errno)))")
        }
        fds += [err[1]]

        var result = dl_spawn_result()
        let started = Self.nowMs()
        let startedMonotonic = Self.monotonicNs()
        let rc = CStrings.with(spec.arguments) { argv in
            CStrings.with(spec.environment) { envp in
                CStrings.with(Self.pathDirectories) { path in
                    spec.rootfs.withCString { rootfs in
                        spec.workingDirectory.withCString { cwd in
                            spec.hostname.withCString { hostname in
                                cgroup.procsFDs.withUnsafeBufferPointer { procs in
                                    program.bytes.withUnsafeBytes { bpf in
                                        var config = dl_spawn_config()
                                        config.rootfs = rootfs
                                        config.argv = argv
                                        config.envp = envp
                                        config.path_dirs = path
                                        config.cwd = cwd
                                        config.hostname = hostname
                                        config.uid = spec.uid
                                        config.gid = spec.gid
                                        config.stdin_fd = stdinFD
                                        config.stdout_fd = out[1]
                                        config.stderr_fd = err[1]
                                        config.cgroup_procs_fds = procs.baseAddress
                                        config.cgroup_procs_fd_count = procs.count
                                        config.network = spec.loopback ? Int32(DL_NETWORK_LOOPBACK) : Int32(DL_NETWORK_NONE)
                                        config.netns_fd = slot?.netnsFD ?? -1
                                        config.readonly_root = spec.readOnlyRoot ? 1 : 0
                                        config.single_cpu = spec.singleCPU ? 1 : 0
                                        config.tmp_size_bytes = spec.tmpBytesMax
                                        config.capabilities_kept = ContainerSpec.defaultCapabilities
                                            .reduce(UInt64(0)) { $0 | (1 << UInt64($1)) }
                                        config.seccomp_program = bpf.baseAddress
                                        config.seccomp_program_length = program.instructionCount
                                        return dl_spawn(&config, &result)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for fd in fds { close(fd) }
        fds = []
        cgroup.closeProcs()
        if rc != 0 {
            close(out[0])
            close(err[0])
            if result.pid > 0 {
                var status: Int32 = 0
                _ = waitpid(result.pid, &status, 0)
                close(result.pidfd)
            }
            cgroup.remove()
            let text = withUnsafeBytes(of: result.error_text) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            let code: DockLockError.Code = result.failed_errno == ENOENT && text.hasPrefix("execute") ? .notFound : .system
            throw DockLockError(code, "container \(spec.id) did not start: \(text)"
                + (code == .notFound ? " (no \(spec.arguments[0]) in the image)" : ""))
        }
        var stdinHasher = Blake2b256Hasher()
        stdinHasher.update(spec.stdin)
        monitor.watch(WatchedContainer(
            id: spec.id, pid: result.pid, pidfd: result.pidfd, stdoutFD: out[0], stderrFD: err[0], cgroup: cgroup,
            deadlineMs: spec.timeoutMs == 0 ? nil : startedMonotonic / 1_000_000 + spec.timeoutMs, startedAtMs: started,
            startedMonotonicNs: startedMonotonic,
            stdin: (stdinHasher.finalize(), UInt64(spec.stdin.count)), captureBytesMax: spec.captureBytesMax,
            logDirectory: spec.logDirectory, logBytesMax: spec.logBytesMax, onExit: onExit))
    }

    /// The directories the container's set-up mounts over must be real directories of the image: created when
    /// missing, refused when an image put a symlink there (the mount would follow it out of the root).
    static func prepareMountPoints(_ rootfs: String) throws(DockLockError) {
        for name in ["proc", "dev", "tmp"] {
            let path = "\(rootfs)/\(name)"
            var info = stat()
            if lstat(path, &info) != 0 {
                guard errno == ENOENT, mkdir(path, 0o755) == 0 || errno == EEXIST else {
                    throw DockLockError(.system, "cannot create /\(name) in the image's root \(rootfs): "
                        + String(cString: strerror(errno)))
                }
            } else if (info.st_mode & S_IFMT) != S_IFDIR {
                throw DockLockError(.invalid, "the image's /\(name) is not a directory; DockLock mounts its own there")
            }
        }
    }

    /// Sends `signal` to a running container's first process (SIGKILL ends the whole PID namespace).
    public func kill(_ id: String, signal: Int32 = SIGKILL) throws(DockLockError) {
        guard monitor.signal(id, signal) else { throw DockLockError(.notFound, "no running container \(id)") }
    }

    /// SIGKILLs every running container and waits up to `waitMs` for their ends to be handled (their `onExit` runs,
    /// so their receipts are issued). Returns how many were still running when the wait ended.
    @discardableResult
    public func killAll(waitMs: UInt64 = 2000) -> Int {
        for id in monitor.runningIDs { _ = monitor.signal(id, SIGKILL) }
        let deadline = Self.monotonicNs() + waitMs * 1_000_000
        while !monitor.runningIDs.isEmpty && Self.monotonicNs() < deadline { usleep(2000) }
        return monitor.runningIDs.count
    }

    /// Removes the spare cgroups and network namespaces made ahead of need, and the cgroups of finished containers
    /// still waiting for removal. For a plugin stopping, after `killAll`; a later `start` makes spares again.
    public func releaseSpares() { prestarter.drain() }

    static func monotonicNs() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func nowMs() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
    }
}

/// NULL-terminated C string arrays that live for one call.
enum CStrings {
    static func with<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let pointers = copies.map { UnsafePointer($0) } + [nil]
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
