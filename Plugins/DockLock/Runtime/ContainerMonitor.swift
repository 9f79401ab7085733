import CDockLock
import DockLockCore
import Foundation
import MetanodeWire

/// A running container as the monitor sees it.
struct WatchedContainer {
    var id: String
    var pid: pid_t
    var pidfd: Int32
    var stdoutFD: Int32
    var stderrFD: Int32
    var cgroup: ContainerCgroup
    /// On CLOCK_MONOTONIC, in ms.
    var deadlineMs: UInt64?
    var startedAtMs: UInt64
    /// CLOCK_MONOTONIC at the start: the end time is start + elapsed, so a wall clock stepping back cannot make a
    /// run end before it began.
    var startedMonotonicNs: UInt64
    var stdin: (digest: [UInt8], size: UInt64)
    var captureBytesMax: Int
    var logDirectory: String?
    var logBytesMax: UInt64
    var onExit: @Sendable (ContainerExit) -> Void
}

/// One thread and one epoll set for every running container: it drains stdout and stderr (hashing, capturing the
/// head, appending to log files), reaps the first process through its pidfd, enforces timeouts, then reads the
/// cgroup's usage and removes it. A container is finished when its process has exited and both pipes are at EOF.
final class ContainerMonitor: @unchecked Sendable {
    private final class Stream {
        var fd: Int32
        var hasher = Blake2b256Hasher()
        var size: UInt64 = 0
        var captured: [UInt8] = []
        var log: Int32 = -1
        var logPath: String?
        var logged: UInt64 = 0
        init(fd: Int32) { self.fd = fd }
    }

    private final class Entry {
        var container: WatchedContainer
        let stdout: Stream
        let stderr: Stream
        var exitCode: Int32?
        var signal: Int32?
        var exited = false
        var timedOut = false
        init(_ container: WatchedContainer) {
            self.container = container
            stdout = Stream(fd: container.stdoutFD)
            stderr = Stream(fd: container.stderrFD)
        }
    }

    private let epoll: Int32
    private let wake: Int32
    private let lock = NSLock()
    private var pending: [WatchedContainer] = []
    /// Owned by the monitor thread, except `ids` (under `lock`) for `runningIDs` and `signal`.
    private var entries: [Int32: Entry] = [:]
    private var ids: [String: pid_t] = [:]
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)

    /// Takes each finished container's cgroup for removal, off this thread (`Prestarter.retire`).
    private let retire: @Sendable (ContainerCgroup) -> Void

    init(retire: @escaping @Sendable (ContainerCgroup) -> Void) throws(DockLockError) {
        self.retire = retire
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wake = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard epoll >= 0, wake >= 0 else {
            throw DockLockError(.system, "cannot create the container monitor's epoll set: \(String(cString: strerror(errno)))")
        }
        add(wake)
        // The thread keeps its object alive: both live until the process exits (the node never unloads a plugin).
        let thread = Thread { [self] in self.loop() }
        thread.name = "docklock-monitor"
        thread.start()
    }

    var runningIDs: [String] { lock.withLock { Array(ids.keys).sorted() } }

    func watch(_ container: WatchedContainer) {
        lock.withLock {
            pending.append(container)
            ids[container.id] = container.pid
        }
        poke()
    }

    func signal(_ id: String, _ signal: Int32) -> Bool {
        // Under the lock `reap` holds while it reaps: a PID is never signalled once it is free for reuse (0).
        lock.withLock {
            guard let pid = ids[id], pid > 0 else { return false }
            return Glibc.kill(pid, signal) == 0
        }
    }

    private func poke() {
        var one: UInt64 = 1
        _ = Foundation.write(wake, &one, 8)
    }

    private func add(_ fd: Int32) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLHUP.rawValue
        event.data.fd = fd
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            let timeout = nextTimeoutMs()
            let count = epoll_wait(epoll, &events, Int32(events.count), timeout)
            if count < 0 && errno != EINTR { usleep(1000) }
            for event in events.prefix(max(0, Int(count))) {
                let fd = event.data.fd
                if fd == wake {
                    var value: UInt64 = 0
                    _ = Foundation.read(wake, &value, 8)
                    adopt()
                    continue
                }
                guard let entry = entries[fd] else { continue }
                if fd == entry.container.pidfd { reap(entry) } else { drain(entry, fd) }
                finishIfDone(entry)
            }
            enforceDeadlines()
        }
    }

    private func adopt() {
        let new = lock.withLock { () -> [WatchedContainer] in
            defer { pending = [] }
            return pending
        }
        for container in new {
            let entry = Entry(container)
            if let directory = container.logDirectory {
                try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                for (stream, name) in [(entry.stdout, "stdout"), (entry.stderr, "stderr")] {
                    stream.logPath = "\(directory)/\(name)"
                    stream.log = open(stream.logPath!, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
                }
            }
            for fd in [container.pidfd, container.stdoutFD, container.stderrFD] {
                entries[fd] = entry
                add(fd)
            }
        }
    }

    private func reap(_ entry: Entry) {
        var exited: Int32 = 0, status: Int32 = 0
        let reaped = lock.withLock { () -> Int32 in
            let result = dl_reap(entry.container.pidfd, &exited, &status)
            if result != 0 { ids[entry.container.id] = 0 }
            return result
        }
        guard reaped != 0 else { return }
        if reaped < 0 {
            // Someone else reaped it (ECHILD): the status is lost. Ending it here keeps the readable pidfd from
            // spinning this loop, and the caller still gets its answer and receipt.
            exited = 0
            status = SIGKILL
        }
        if exited == 1 { entry.exitCode = status } else { entry.signal = status }
        entry.exited = true
        forget(entry.container.pidfd)
    }

    private func drain(_ entry: Entry, _ fd: Int32) {
        let stream = fd == entry.stdout.fd ? entry.stdout : entry.stderr
        let n = buffer.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw.prefix(n))
                stream.hasher.update(chunk)
                stream.size += UInt64(n)
                let room = entry.container.captureBytesMax - stream.captured.count
                if room > 0 { stream.captured.append(contentsOf: chunk.prefix(room)) }
                if stream.log >= 0 {
                    let allowed = Int(min(UInt64(n), entry.container.logBytesMax - stream.logged))
                    if allowed > 0 { _ = Foundation.write(stream.log, chunk.baseAddress, allowed) }
                    stream.logged += UInt64(allowed)
                    if allowed < n { // full: say so beside the file, and stop writing it
                        close(open(stream.logPath! + ".truncated", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600))
                        close(stream.log)
                        stream.log = -1
                    }
                }
            }
        } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
            forget(fd)
            stream.fd = -1
        }
    }

    private func forget(_ fd: Int32) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
        entries[fd] = nil
        close(fd)
    }

    private func finishIfDone(_ entry: Entry) {
        guard entry.exited, entry.stdout.fd < 0, entry.stderr.fd < 0 else { return }
        let container = entry.container
        let usage = container.cgroup.usage()
        for log in [entry.stdout.log, entry.stderr.log] where log >= 0 { close(log) }
        func captured(_ stream: Stream) -> CapturedStream {
            CapturedStream(digest: stream.hasher.finalize(), size: stream.size, captured: stream.captured)
        }
        container.onExit(ContainerExit(
            id: container.id, exitCode: entry.exitCode, signal: entry.signal, timedOut: entry.timedOut,
            oomKilled: usage.oomKilled, usage: usage, stdin: container.stdin, stdout: captured(entry.stdout),
            stderr: captured(entry.stderr), startedAtMs: container.startedAtMs,
            endedAtMs: container.startedAtMs + (ContainerRuntime.monotonicNs() - container.startedMonotonicNs) / 1_000_000))
        // Removed elsewhere: rmdir takes the cgroup lock for ~0.15 ms, and the thread woken to send the answer
        // would wait for this one otherwise. Queued before the container stops counting as running, so the plugin's
        // stop (killAll, then releaseSpares) finds it queued and removes it.
        retire(container.cgroup)
        // Only now is it no longer running: `killAll` waits for this, so receipts are out before a plugin stops.
        lock.withLock { ids[container.id] = nil }
    }

    private func nextTimeoutMs() -> Int32 {
        var soonest: UInt64?
        for entry in entries.values where !entry.timedOut && !entry.exited {
            if let deadline = entry.container.deadlineMs { soonest = min(soonest ?? deadline, deadline) }
        }
        guard let soonest else { return -1 }
        let now = ContainerRuntime.monotonicNs() / 1_000_000
        return soonest <= now ? 0 : Int32(min(soonest - now, 60_000))
    }

    private func enforceDeadlines() {
        let now = ContainerRuntime.monotonicNs() / 1_000_000
        for entry in entries.values where !entry.timedOut && !entry.exited {
            if let deadline = entry.container.deadlineMs, deadline <= now {
                entry.timedOut = true
                Glibc.kill(entry.container.pid, SIGKILL)
            }
        }
    }
}
