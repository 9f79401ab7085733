import DockLockCore
import DockLockRuntime
import Foundation
import MetanodeWire

/// `POST /run`'s body.
struct RunRequest: Decodable, Sendable {
    var image: String
    /// Empty: the image's entrypoint + cmd.
    var command: [String]?
    var env: [String]?
    var workdir: String?
    /// "uid:gid", "uid" or "root"; default the image's user, else root.
    var user: String?
    var hostname: String?
    /// "none" (default) or "loopback".
    var network: String?
    var memoryBytes: UInt64?
    var cpuMillicores: UInt32?
    var pids: UInt32?
    var timeoutMs: UInt64?
    /// Base64.
    var stdin: String?
    var detach: Bool?
    var deterministic: Bool?

    var isDetached: Bool { detach ?? false }

    init(image: String, command: [String]? = nil, env: [String]? = nil, workdir: String? = nil, stdin: String? = nil,
         timeoutMs: UInt64? = nil, deterministic: Bool? = nil) {
        self.image = image
        self.command = command
        self.env = env
        self.workdir = workdir
        self.stdin = stdin
        self.timeoutMs = timeoutMs
        self.deterministic = deterministic
    }
    var isDeterministic: Bool { deterministic ?? false }
}

/// A request checked and completed with the image's defaults: everything a run needs and its receipt records.
struct RunPlan: Sendable {
    var imageDigest: String
    var rootfs: String
    var arguments: [String]
    var environment: [String]
    var workingDirectory: String
    var hostname: String
    var uid: UInt32
    var gid: UInt32
    var network: NetworkMode
    var limits: ResourceLimits
    var timeoutMs: UInt64
    var stdin: [UInt8]
    var deterministic: Bool
    var seccompProfile: SeccompProfile

    static let environmentMax = 1024
    static let hostnameBytesMax = 64
    static let timeoutMsMax: UInt64 = 24 * 3600 * 1000
    static let memoryBytesMin: UInt64 = 4 << 20
    static let pidsMin: UInt32 = 1
    /// What --deterministic fixes: no choice left to the caller or the host.
    static let deterministicEnvironment = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "LANG=C.UTF-8", "LC_ALL=C.UTF-8",
        "TZ=UTC",
    ]
    static let deterministicHostname = "docklock"
    static let deterministicLimits = ResourceLimits(memoryBytesMax: 256 << 20, cpuMillicores: 1000, pidsMax: 256)

    var profile: ExecutionProfile {
        ExecutionProfile(seccompProfileHash: seccompProfile.hash, memoryBytesMax: limits.memoryBytesMax,
                         cpuMillicores: limits.cpuMillicores, pidsMax: limits.pidsMax, network: network,
                         readOnlyRoot: true, deterministic: deterministic, timeoutMs: timeoutMs)
    }

    init(request: RunRequest, image: ImageRecord, rootfs: String, ceilings: RunCeilings = .init())
        throws(DockLockError)
    {
        imageDigest = image.digest.description
        self.rootfs = rootfs
        deterministic = request.isDeterministic
        seccompProfile = .dockerDefault
        let command = request.command ?? []
        arguments = command.isEmpty ? (image.config.entrypoint ?? []) + (image.config.cmd ?? []) : command
        guard !arguments.isEmpty else {
            throw DockLockError(.invalid, "no command given and image \(imageDigest) has no entrypoint or cmd")
        }
        guard arguments.count <= ContainerRuntime.argumentsMax else {
            throw DockLockError(.limit, "\(arguments.count) command arguments; at most \(ContainerRuntime.argumentsMax)")
        }
        let extra = request.env ?? []
        for entry in extra where !entry.contains("=") || entry.hasPrefix("=") {
            throw DockLockError(.invalid, "environment entry '\(entry)' is not NAME=value")
        }
        if deterministic {
            if request.network != nil && request.network != "none" {
                throw DockLockError(.invalid, "--deterministic runs have no network")
            }
            if request.hostname != nil || request.user != nil || request.memoryBytes != nil || request.cpuMillicores != nil
                || request.pids != nil
            {
                throw DockLockError(.invalid, "--deterministic fixes hostname, user and limits; leave them out")
            }
            environment = Self.merge(Self.deterministicEnvironment, extra)
            hostname = Self.deterministicHostname
            uid = 0
            gid = 0
            network = .none
            limits = Self.deterministicLimits
            if let over = ceilings.exceeded(by: limits) {
                throw DockLockError(.limit, "--deterministic runs use fixed limits, and \(over)")
            }
        } else {
            environment = Self.merge(image.config.env.isEmpty ? [Self.deterministicEnvironment[0]] : image.config.env, extra)
            hostname = request.hostname ?? "docklock"
            (uid, gid) = try Self.parseUser(request.user ?? (image.config.user.isEmpty ? "0:0" : image.config.user))
            switch request.network ?? "none" {
            case "none": network = .none
            case "loopback": network = .loopback
            case let other: throw DockLockError(.invalid, "network '\(other)' is not one of: none, loopback")
            }
            // Defaults above a ceiling come down to it; what a request asks for above one is refused.
            var limits = ceilings.clamped(ResourceLimits.defaults)
            if let value = request.memoryBytes {
                guard value >= Self.memoryBytesMin else {
                    throw DockLockError(.invalid, "memory limit \(value) bytes is below the minimum \(Self.memoryBytesMin)")
                }
                limits.memoryBytesMax = value
            }
            if let value = request.cpuMillicores {
                guard (10...64_000).contains(value) else {
                    throw DockLockError(.invalid, "cpu \(value) millicores is outside 10...64000")
                }
                limits.cpuMillicores = value
            }
            if let value = request.pids {
                guard value >= Self.pidsMin else { throw DockLockError(.invalid, "the PID limit must be at least 1") }
                limits.pidsMax = value
            }
            if let over = ceilings.exceeded(by: limits) { throw DockLockError(.limit, over) }
            self.limits = limits
        }
        guard environment.count <= Self.environmentMax else {
            throw DockLockError(.limit, "\(environment.count) environment entries; at most \(Self.environmentMax)")
        }
        guard !hostname.isEmpty, hostname.utf8.count <= Self.hostnameBytesMax else {
            throw DockLockError(.invalid, "hostname must be 1...\(Self.hostnameBytesMax) bytes")
        }
        workingDirectory = request.workdir ?? (image.config.workingDir.isEmpty ? "/" : image.config.workingDir)
        guard workingDirectory.hasPrefix("/") else {
            throw DockLockError(.invalid, "working directory '\(workingDirectory)' must be absolute")
        }
        timeoutMs = request.timeoutMs ?? 0
        guard timeoutMs <= Self.timeoutMsMax else {
            throw DockLockError(.invalid, "timeout \(timeoutMs) ms is over the maximum \(Self.timeoutMsMax) ms (one day)")
        }
        if let ceiling = ceilings.timeoutMsMax {
            guard timeoutMs <= ceiling else {
                throw DockLockError(.limit, "timeout \(timeoutMs) ms is over this node's ceiling of \(ceiling) ms "
                    + "(docklock config ceilings.timeoutMsMax)")
            }
            if timeoutMs == 0 {
                // A deterministic profile may not depend on the node's config: such a run names its timeout.
                guard !deterministic else {
                    throw DockLockError(.limit, "--deterministic runs on this node need --timeout (at most \(ceiling) "
                        + "ms, docklock config ceilings.timeoutMsMax), so that the receipt does not depend on the "
                        + "node's config")
                }
                timeoutMs = ceiling // no run outlives the operator's ceiling
            }
        }
        if let text = request.stdin {
            guard let data = Data(base64Encoded: text) else { throw DockLockError(.invalid, "stdin is not valid base64") }
            guard data.count <= ContainerRuntime.stdinBytesMax else {
                throw DockLockError(.limit, "stdin is \(data.count) bytes; at most \(ContainerRuntime.stdinBytesMax)")
            }
            stdin = Array(data)
        } else {
            stdin = []
        }
    }

    var replay: Replay { Replay(env: environment, stdin: Data(stdin).base64EncodedString()) }

    func spec(id: String) -> ContainerSpec {
        var spec = ContainerSpec(id: id, rootfs: rootfs, arguments: arguments, environment: environment, hostname: hostname)
        spec.workingDirectory = workingDirectory
        spec.uid = uid
        spec.gid = gid
        spec.loopback = network == .loopback
        spec.limits = limits
        spec.timeoutMs = timeoutMs
        spec.stdin = stdin
        spec.singleCPU = deterministic
        return spec
    }

    /// Later entries replace earlier ones with the same name.
    static func merge(_ base: [String], _ extra: [String]) -> [String] {
        var result = base
        for entry in extra {
            let name = entry.prefix { $0 != "=" }
            result.removeAll { $0.prefix { $0 != "=" } == name }
            result.append(entry)
        }
        return result
    }

    static func parseUser(_ text: String) throws(DockLockError) -> (UInt32, UInt32) {
        if text == "root" { return (0, 0) }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        // 4294967295 is (uid_t)-1, which setresuid reads as "unchanged": it would leave the container root.
        guard (1...2).contains(parts.count), let uid = UInt32(parts[0]), uid != .max,
              parts.count == 1 || (UInt32(parts[1]).map { $0 != .max } ?? false) else {
            throw DockLockError(.invalid, "user '\(text)' is not uid[:gid] with numbers below 4294967295 (names are not "
                + "looked up)")
        }
        return (uid, parts.count == 2 ? UInt32(parts[1])! : uid)
    }
}

/// What a run ended with: the exit, the plan it ran, and its signed receipt (nil only if issuing it failed).
struct RunOutcome: Sendable {
    var exit: ContainerExit
    var plan: RunPlan
    var receipt: SignedReceipt?
    var receiptError: String?

    func document(includeOutput: Bool) -> RunOutcomeDocument {
        var document = RunOutcomeDocument(
            id: exit.id, image: plan.imageDigest, command: plan.arguments, timedOut: exit.timedOut,
            oomKilled: exit.oomKilled, startedAtMs: exit.startedAtMs, endedAtMs: exit.endedAtMs,
            usage: .init(cpuMs: exit.usage.cpuMs, peakMemoryBytes: exit.usage.peakMemoryBytes,
                         pidsPeak: exit.usage.pidsPeak, ioReadBytes: exit.usage.ioReadBytes,
                         ioWriteBytes: exit.usage.ioWriteBytes),
            stdoutBytes: exit.stdout.size, stderrBytes: exit.stderr.size, exitCode: exit.exitCode, signal: exit.signal,
            receiptError: receiptError)
        if includeOutput {
            document.stdout = Data(exit.stdout.captured).base64EncodedString()
            document.stderr = Data(exit.stderr.captured).base64EncodedString()
            document.stdoutTruncated = exit.stdout.truncated
            document.stderrTruncated = exit.stderr.truncated
        }
        if let receipt { document.receipt = .init(sequence: receipt.receipt.sequence, hash: Hex.encode(receipt.hash)) }
        return document
    }
}

/// A run's answer (`POST /run`) and, with `detached` and `state`, a container in `GET /containers`. Typed and
/// written by JSONEncoder: the [String: Any] tree JSONSerialization needs cost 0.28 ms per run, 8% of a container's
/// whole lifecycle. Absent fields are left out.
struct RunOutcomeDocument: Encodable {
    struct Usage: Encodable {
        var cpuMs, peakMemoryBytes, pidsPeak, ioReadBytes, ioWriteBytes: UInt64
    }
    struct ReceiptReference: Encodable {
        var sequence: UInt64
        var hash: String
    }
    var id: String
    var image: String
    var command: [String]
    var detached: Bool?
    var state: String?
    var timedOut: Bool?
    var oomKilled: Bool?
    var startedAtMs: UInt64?
    var endedAtMs: UInt64?
    var usage: Usage?
    var stdoutBytes: UInt64?
    var stderrBytes: UInt64?
    var exitCode: Int32?
    var signal: Int32?
    var stdout: String?
    var stderr: String?
    var stdoutTruncated: Bool?
    var stderrTruncated: Bool?
    var receipt: ReceiptReference?
    var receiptError: String?

}

/// What the operator lets one container have at most: the plugin config's "ceilings". Nil is no ceiling beyond
/// DockLock's own limits.
struct RunCeilings: Decodable, Equatable {
    var memoryBytesMax: UInt64?
    var cpuMillicoresMax: UInt32?
    var pidsMax: UInt32?
    var timeoutMsMax: UInt64?
    var runningMax: Int?

    /// `limits` with each value brought down to its ceiling.
    func clamped(_ limits: ResourceLimits) -> ResourceLimits {
        var clamped = limits
        if let ceiling = memoryBytesMax { clamped.memoryBytesMax = min(limits.memoryBytesMax, ceiling) }
        if let ceiling = cpuMillicoresMax { clamped.cpuMillicores = min(limits.cpuMillicores, ceiling) }
        if let ceiling = pidsMax { clamped.pidsMax = min(limits.pidsMax, ceiling) }
        return clamped
    }

    /// Which limit is over its ceiling, said for an error, or nil.
    func exceeded(by limits: ResourceLimits) -> String? {
        if let ceiling = memoryBytesMax, limits.memoryBytesMax > ceiling {
            return "memory limit \(limits.memoryBytesMax) bytes is over this node's ceiling of \(ceiling) bytes "
                + "(docklock config ceilings.memoryBytesMax)"
        }
        if let ceiling = cpuMillicoresMax, limits.cpuMillicores > ceiling {
            return "cpu \(limits.cpuMillicores) millicores is over this node's ceiling of \(ceiling) "
                + "(docklock config ceilings.cpuMillicoresMax)"
        }
        if let ceiling = pidsMax, limits.pidsMax > ceiling {
            return "PID limit \(limits.pidsMax) is over this node's ceiling of \(ceiling) (docklock config ceilings.pidsMax)"
        }
        return nil
    }
}
