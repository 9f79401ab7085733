import DockLockCore
import Foundation

/// Limits a container's cgroup enforces.
public struct ResourceLimits: Sendable, Equatable {
    public var memoryBytesMax: UInt64
    /// 1000 = one CPU's worth of time per period.
    public var cpuMillicores: UInt32
    public var pidsMax: UInt32

    public init(memoryBytesMax: UInt64, cpuMillicores: UInt32, pidsMax: UInt32) {
        self.memoryBytesMax = memoryBytesMax
        self.cpuMillicores = cpuMillicores
        self.pidsMax = pidsMax
    }

    public static let defaults = ResourceLimits(memoryBytesMax: 256 << 20, cpuMillicores: 1000, pidsMax: 256)
}

/// What the cgroup measured once the container is gone.
public struct CgroupUsage: Sendable, Equatable {
    public var cpuMs: UInt64 = 0
    public var peakMemoryBytes: UInt64 = 0
    public var pidsPeak: UInt64 = 0
    public var ioReadBytes: UInt64 = 0
    public var ioWriteBytes: UInt64 = 0
    public var oomKilled = false
}

/// The cgroup hierarchies of this host, read from /proc/self/mountinfo.
///
/// - v2: one unified hierarchy with the controllers; a container gets `<root>/docklock/<id>`.
/// - v1: a hierarchy per controller; a container gets `<controller mount>/docklock/<id>` in memory, pids, cpu, cpuacct
///   and blkio.
/// - hybrid (this is what systemd's "hybrid" mode and many CI hosts give): v1 controllers plus a unified hierarchy with
///   no controllers in it. The limits live in v1, so DockLock uses v1 and leaves the empty unified tree alone —
///   crun 1.8 refuses such hosts; DockLock does not.
public struct CgroupHost: Sendable, Equatable {
    public enum Layout: String, Sendable { case v1, v2, hybrid }
    public let layout: Layout
    /// v1: controller → mount point (co-mounted controllers share one).
    public let controllers: [String: String]
    /// v2: the unified mount point (also set, unused, for hybrid).
    public let unified: String?

    static let neededControllers = ["memory", "pids", "cpu", "cpuacct", "blkio"]
    static let parentName = "docklock"

    public static func detect(mountinfo path: String = "/proc/self/mountinfo") throws(DockLockError) -> CgroupHost {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw DockLockError(.system, "cannot read \(path) to find the cgroup hierarchies")
        }
        return try parse(mountinfo: text)
    }

    /// Reads mountinfo lines: "… <mount point> … - <fstype> <source> <super options>".
    public static func parse(mountinfo text: String) throws(DockLockError) -> CgroupHost {
        var controllers: [String: String] = [:]
        var unified: String?
        for line in text.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let mountPoint = String(left[4]).replacingOccurrences(of: "\\040", with: " ")
            switch right[0] {
            case "cgroup2": unified = mountPoint
            case "cgroup":
                for option in right[2].split(separator: ",") where neededControllers.contains(String(option)) {
                    controllers[String(option)] = mountPoint
                }
            default: continue
            }
        }
        let missing = neededControllers.filter { controllers[$0] == nil }
        if missing.count < neededControllers.count {
            guard missing.isEmpty else {
                throw DockLockError(.unsupported, "this host's cgroup v1 hierarchies lack \(missing.joined(separator: ", ")); "
                    + "DockLock needs memory, pids, cpu, cpuacct and blkio to enforce and measure limits")
            }
            return CgroupHost(layout: unified == nil ? .v1 : .hybrid, controllers: controllers, unified: unified)
        }
        guard let unified else {
            throw DockLockError(.unsupported, "no cgroup hierarchy is mounted (looked for cgroup and cgroup2 in mountinfo)")
        }
        return CgroupHost(layout: .v2, controllers: [:], unified: unified)
    }

    /// Creates the container's cgroup(s) with `limits`, ready for the container's first process to join.
    public func create(_ name: String, limits: ResourceLimits) throws(DockLockError) -> ContainerCgroup {
        let cgroup = try prepare(name)
        do throws(DockLockError) {
            try cgroup.apply(limits)
        } catch {
            cgroup.remove()
            throw error
        }
        return cgroup
    }

    /// Creates the directories (and opens their cgroup.procs) without limits: the slow part, which DockLock does
    /// ahead of need (`Prestarter`). `apply` then sets the limits.
    public func prepare(_ name: String) throws(DockLockError) -> ContainerCgroup {
        precondition(!name.contains("/") && !name.isEmpty, "cgroup names are single path components")
        var created: [String] = []
        do throws(DockLockError) {
            switch layout {
            case .v1, .hybrid:
                var byPath: [String: [String]] = [:]
                for controller in Self.neededControllers { byPath[controllers[controller]!, default: []].append(controller) }
                var paths: [String: String] = [:]
                for (mount, names) in byPath.sorted(by: { $0.key < $1.key }) {
                    let directory = "\(mount)/\(Self.parentName)/\(name)"
                    try Self.makeDirectory("\(mount)/\(Self.parentName)", existingOK: true)
                    try Self.makeDirectory(directory, existingOK: false)
                    created.append(directory)
                    for controller in names { paths[controller] = directory }
                }
                let cgroup = ContainerCgroup(layout: layout, directories: created, controllers: paths)
                try cgroup.openProcs()
                return cgroup
            case .v2:
                let unified = unified!
                let parent = "\(unified)/\(Self.parentName)"
                try Self.makeDirectory(parent, existingOK: true)
                try Self.enableControllers(in: unified)
                try Self.enableControllers(in: parent)
                let directory = "\(parent)/\(name)"
                try Self.makeDirectory(directory, existingOK: false)
                created.append(directory)
                let cgroup = ContainerCgroup(layout: layout, directories: created, controllers: [:])
                try cgroup.openProcs()
                return cgroup
            }
        } catch {
            for directory in created.reversed() { rmdir(directory) }
            throw error
        }
    }

    /// v2 hands controllers down through cgroup.subtree_control. The kernel refuses that (EBUSY) in a non-root cgroup
    /// that has processes of its own: a daemon inside a container whose cgroup namespace root it shares.
    static func enableControllers(in directory: String) throws(DockLockError) {
        let path = "\(directory)/cgroup.subtree_control", value = "+memory +pids +cpu +io"
        // Already on (every container after the first): no write, which would take the cgroup lock.
        if let enabled = try? String(contentsOfFile: path, encoding: .utf8) {
            let names = Set(enabled.split(whereSeparator: \.isWhitespace))
            if ["memory", "pids", "cpu", "io"].allSatisfy({ names.contains(Substring($0)) }) { return }
        }
        switch writeFile(path, value) {
        case 0: return
        case EBUSY:
            throw DockLockError(.unsupported, "cannot enable the memory, pids, cpu and io controllers below "
                + "\(directory): it holds processes itself, and cgroup v2 lets a cgroup with processes have no "
                + "controlled children. Start the node in a leaf cgroup (a systemd service, or inside a container "
                + "first move every process to a child: mkdir \(directory)/init and write each pid to its cgroup.procs)")
        case let error:
            throw DockLockError(.system, "cannot write '\(value)' to \(path): \(String(cString: strerror(error)))")
        }
    }

    static func makeDirectory(_ path: String, existingOK: Bool) throws(DockLockError) {
        if mkdir(path, 0o755) == 0 { return }
        let error = errno
        if error == EEXIST && existingOK { return }
        throw DockLockError(.system, "cannot create cgroup \(path): \(String(cString: strerror(error)))")
    }

    static func write(_ path: String, _ value: String) throws(DockLockError) {
        let error = writeFile(path, value)
        guard error == 0 else {
            throw DockLockError(.system, "cannot write '\(value)' to \(path): \(String(cString: strerror(error)))")
        }
    }

    /// 0, or the errno of the open or the write.
    static func writeFile(_ path: String, _ value: String) -> Int32 {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno }
        let bytes = Array(value.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let error = written == bytes.count ? 0 : (written < 0 ? errno : EIO)
        close(fd)
        return error
    }
}

/// One container's cgroup directories: joined by the container's first process through `procsFDs`, read for usage
/// when it has exited, then removed.
public final class ContainerCgroup: @unchecked Sendable {
    public let layout: CgroupHost.Layout
    public let directories: [String]
    let controllers: [String: String]
    /// Open cgroup.procs files, one per directory; the child writes "0" to each.
    public private(set) var procsFDs: [Int32] = []
    /// The limits last written (nil before the first `apply`): a spare cgroup gets the defaults ahead of need, and a
    /// container asking for those has nothing left to write.
    public private(set) var appliedLimits: ResourceLimits?

    init(layout: CgroupHost.Layout, directories: [String], controllers: [String: String]) {
        self.layout = layout
        self.directories = directories
        self.controllers = controllers
    }

    deinit { closeProcs() }

    func openProcs() throws(DockLockError) {
        for directory in directories {
            let fd = open("\(directory)/cgroup.procs", O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw DockLockError(.system, "cannot open \(directory)/cgroup.procs: \(String(cString: strerror(errno)))")
            }
            procsFDs.append(fd)
        }
    }

    /// Writes the limits, unless they are the ones already written.
    public func apply(_ limits: ResourceLimits) throws(DockLockError) {
        guard limits != appliedLimits else { return }
        let previous = appliedLimits
        appliedLimits = nil // unknown until every write has gone through
        switch layout {
        case .v1, .hybrid:
            let memory = controllers["memory"]!
            // No swap: the memory+swap limit equals the memory limit (the file exists only with swap accounting).
            // v1 keeps memsw >= memory at every step, so raising a limit writes memsw first, lowering it memory.
            let memsw = "\(memory)/memory.memsw.limit_in_bytes"
            let swapAccounting = access(memsw, F_OK) == 0
            let raising = previous.map { limits.memoryBytesMax > $0.memoryBytesMax } ?? false
            if swapAccounting, raising { try CgroupHost.write(memsw, "\(limits.memoryBytesMax)") }
            try CgroupHost.write("\(memory)/memory.limit_in_bytes", "\(limits.memoryBytesMax)")
            if swapAccounting, !raising { try CgroupHost.write(memsw, "\(limits.memoryBytesMax)") }
            try CgroupHost.write("\(controllers["pids"]!)/pids.max", "\(limits.pidsMax)")
            try CgroupHost.write("\(controllers["cpu"]!)/cpu.cfs_period_us", "100000")
            try CgroupHost.write("\(controllers["cpu"]!)/cpu.cfs_quota_us", "\(UInt64(limits.cpuMillicores) * 100)")
        case .v2:
            let directory = directories[0]
            try CgroupHost.write("\(directory)/memory.max", "\(limits.memoryBytesMax)")
            if access("\(directory)/memory.swap.max", F_OK) == 0 {
                try CgroupHost.write("\(directory)/memory.swap.max", "0")
            }
            try CgroupHost.write("\(directory)/pids.max", "\(limits.pidsMax)")
            try CgroupHost.write("\(directory)/cpu.max", "\(UInt64(limits.cpuMillicores) * 100) 100000")
        }
        appliedLimits = limits
    }

    public func closeProcs() {
        for fd in procsFDs { close(fd) }
        procsFDs = []
    }

    public func usage() -> CgroupUsage {
        var usage = CgroupUsage()
        switch layout {
        case .v1, .hybrid:
            usage.cpuMs = (Self.number(controllers["cpuacct"].map { "\($0)/cpuacct.usage" }) ?? 0) / 1_000_000
            usage.peakMemoryBytes = Self.number(controllers["memory"].map { "\($0)/memory.max_usage_in_bytes" }) ?? 0
            usage.pidsPeak = Self.number(controllers["pids"].map { "\($0)/pids.peak" }) ?? 0
            if let blkio = controllers["blkio"], let text = Self.text("\(blkio)/blkio.throttle.io_service_bytes_recursive") {
                for line in text.split(separator: "\n") {
                    let fields = line.split(separator: " ")
                    guard fields.count == 3, let value = UInt64(fields[2]) else { continue }
                    if fields[1] == "Read" { usage.ioReadBytes += value } else if fields[1] == "Write" { usage.ioWriteBytes += value }
                }
            }
            usage.oomKilled = (Self.keyed(controllers["memory"].map { "\($0)/memory.oom_control" }, "oom_kill") ?? 0) > 0
        case .v2:
            let directory = directories[0]
            usage.cpuMs = (Self.keyed("\(directory)/cpu.stat", "usage_usec") ?? 0) / 1000
            usage.peakMemoryBytes = Self.number("\(directory)/memory.peak") ?? 0
            usage.pidsPeak = Self.number("\(directory)/pids.peak") ?? 0
            if let text = Self.text("\(directory)/io.stat") {
                for field in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                    if field.hasPrefix("rbytes="), let value = UInt64(field.dropFirst(7)) { usage.ioReadBytes += value }
                    if field.hasPrefix("wbytes="), let value = UInt64(field.dropFirst(7)) { usage.ioWriteBytes += value }
                }
            }
            usage.oomKilled = (Self.keyed("\(directory)/memory.events", "oom_kill") ?? 0) > 0
        }
        return usage
    }

    /// Removes the directories; processes still exiting keep a cgroup busy for a moment, so EBUSY is retried briefly.
    /// Returns the directories it could not remove.
    @discardableResult
    public func remove() -> [String] {
        closeProcs()
        var left: [String] = []
        for directory in directories.reversed() {
            var attempts = 0
            while rmdir(directory) != 0 && errno == EBUSY && attempts < 200 {
                attempts += 1
                usleep(1000)
            }
            if access(directory, F_OK) == 0 { left.append(directory) }
        }
        return left
    }

    static func text(_ path: String?) -> String? {
        guard let path else { return nil }
        return try? String(contentsOfFile: path, encoding: .utf8)
    }

    static func number(_ path: String?) -> UInt64? {
        text(path).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The value of "key value" in a flat-keyed cgroup file.
    static func keyed(_ path: String?, _ key: String) -> UInt64? {
        guard let text = text(path) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == key { return UInt64(fields[1]) }
        }
        return nil
    }
}
