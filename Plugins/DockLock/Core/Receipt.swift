import Foundation
import MetanodeWire

/// What network a container had.
public enum NetworkMode: String, Sendable, Hashable, Codable, CaseIterable {
    /// No interfaces at all (an empty network namespace).
    case none
    /// A network namespace with only `lo` up.
    case loopback

    /// The receipt's `u8`: 0 none, 1 loopback.
    public var wireValue: UInt8 {
        switch self {
        case .none: 0
        case .loopback: 1
        }
    }

    public init?(wireValue: UInt8) {
        switch wireValue {
        case 0: self = .none
        case 1: self = .loopback
        default: return nil
        }
    }
}

/// The confinement an execution ran under, as the receipt records it.
///
///     [32] seccompProfileHash | u64 memoryBytesMax | u32 cpuMillicores | u32 pidsMax | u8 network
///     | bool readOnlyRoot | bool deterministic | u64 timeoutMs
public struct ExecutionProfile: Sendable, Hashable, Codable {
    /// The hash of the seccomp profile the container ran under, 32 bytes (the profile's own definition says how).
    public var seccompProfileHash: [UInt8]
    /// The cgroup's `memory.max`.
    public var memoryBytesMax: UInt64
    /// The CPU quota in thousandths of a CPU: 1000 is one CPU, 500 half of one.
    public var cpuMillicores: UInt32
    /// The cgroup's `pids.max`.
    public var pidsMax: UInt32
    public var network: NetworkMode
    public var readOnlyRoot: Bool
    /// Whether the run was asked to be reproducible (fixed clock, no network, fixed hostname and environment).
    public var deterministic: Bool
    /// The wall-clock limit in milliseconds; 0 means none.
    public var timeoutMs: UInt64

    public init(seccompProfileHash: [UInt8], memoryBytesMax: UInt64, cpuMillicores: UInt32, pidsMax: UInt32,
                network: NetworkMode, readOnlyRoot: Bool, deterministic: Bool, timeoutMs: UInt64) {
        self.seccompProfileHash = seccompProfileHash
        self.memoryBytesMax = memoryBytesMax
        self.cpuMillicores = cpuMillicores
        self.pidsMax = pidsMax
        self.network = network
        self.readOnlyRoot = readOnlyRoot
        self.deterministic = deterministic
        self.timeoutMs = timeoutMs
    }

    /// The encoding's fixed size.
    public static let encodedBytes = 32 + 8 + 4 + 4 + 1 + 1 + 1 + 8

    func write(to writer: inout WireWriter) {
        writer.fixed(seccompProfileHash, count: WireCrypto.hashBytes)
        writer.u64(memoryBytesMax)
        writer.u32(cpuMillicores)
        writer.u32(pidsMax)
        writer.u8(network.wireValue)
        writer.bool(readOnlyRoot)
        writer.bool(deterministic)
        writer.u64(timeoutMs)
    }

    static func read(from reader: inout WireReader) throws(WireError) -> ExecutionProfile {
        let hash = try reader.fixed(WireCrypto.hashBytes, "profile.seccompProfileHash")
        let memory = try reader.u64("profile.memoryBytesMax")
        let cpu = try reader.u32("profile.cpuMillicores")
        let pids = try reader.u32("profile.pidsMax")
        let networkByte = try reader.u8("profile.network")
        guard let network = NetworkMode(wireValue: networkByte) else {
            throw WireError(.invalidValue, "\(reader.context).profile.network is \(networkByte); it is 0 (none) or "
                + "1 (loopback)")
        }
        return ExecutionProfile(
            seccompProfileHash: hash, memoryBytesMax: memory, cpuMillicores: cpu, pidsMax: pids, network: network,
            readOnlyRoot: try reader.bool("profile.readOnlyRoot"),
            deterministic: try reader.bool("profile.deterministic"),
            timeoutMs: try reader.u64("profile.timeoutMs"))
    }

    // JSON: the fields by name, the hash as hex, the network as "none" or "loopback".
    enum CodingKeys: String, CodingKey {
        case seccompProfileHash, memoryBytesMax, cpuMillicores, pidsMax, network, readOnlyRoot, deterministic, timeoutMs
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        seccompProfileHash = try container.decodeReceiptHex(forKey: .seccompProfileHash, count: WireCrypto.hashBytes)
        memoryBytesMax = try container.decode(UInt64.self, forKey: .memoryBytesMax)
        cpuMillicores = try container.decode(UInt32.self, forKey: .cpuMillicores)
        pidsMax = try container.decode(UInt32.self, forKey: .pidsMax)
        network = try container.decode(NetworkMode.self, forKey: .network)
        readOnlyRoot = try container.decode(Bool.self, forKey: .readOnlyRoot)
        deterministic = try container.decode(Bool.self, forKey: .deterministic)
        timeoutMs = try container.decode(UInt64.self, forKey: .timeoutMs)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Hex.encode(seccompProfileHash), forKey: .seccompProfileHash)
        try container.encode(memoryBytesMax, forKey: .memoryBytesMax)
        try container.encode(cpuMillicores, forKey: .cpuMillicores)
        try container.encode(pidsMax, forKey: .pidsMax)
        try container.encode(network, forKey: .network)
        try container.encode(readOnlyRoot, forKey: .readOnlyRoot)
        try container.encode(deterministic, forKey: .deterministic)
        try container.encode(timeoutMs, forKey: .timeoutMs)
    }
}

/// How the container's init process ended.
///
///     u8 kind (0 exited, 1 signaled) | u32 value (the exit code 0-255, or the signal 1-64)
public enum ExecutionOutcome: Sendable, Hashable, Codable {
    /// It called exit: `code` is 0-255.
    case exited(code: Int32)
    /// A signal killed it (SIGKILL for a timeout or the OOM killer): `signal` is 1-64.
    case signaled(signal: Int32)

    public static let exitCodeMax: Int32 = 255
    public static let signalMax: Int32 = 64

    /// Exited with code 0.
    public var succeeded: Bool { self == .exited(code: 0) }

    /// The conventional shell status: the exit code, or 128 + the signal.
    public var shellStatus: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
    }

    /// What is wrong with the value, if anything.
    var problem: String? {
        switch self {
        case .exited(let code) where !(0...Self.exitCodeMax).contains(code):
            "an exit code is 0-\(Self.exitCodeMax), not \(code)"
        case .signaled(let signal) where !(1...Self.signalMax).contains(signal):
            "a signal is 1-\(Self.signalMax), not \(signal)"
        default: nil
        }
    }

    func write(to writer: inout WireWriter) {
        switch self {
        case .exited(let code):
            writer.u8(0)
            writer.u32(UInt32(bitPattern: code))
        case .signaled(let signal):
            writer.u8(1)
            writer.u32(UInt32(bitPattern: signal))
        }
    }

    static func read(from reader: inout WireReader) throws(WireError) -> ExecutionOutcome {
        let kind = try reader.u8("outcome.kind")
        let value = Int32(bitPattern: try reader.u32("outcome.value"))
        switch kind {
        case 0: return .exited(code: value)
        case 1: return .signaled(signal: value)
        default:
            throw WireError(.invalidValue, "\(reader.context).outcome.kind is \(kind); it is 0 (exited) or 1 "
                + "(signaled)")
        }
    }

    // JSON: {"exit": n} or {"signal": n}.
    enum CodingKeys: String, CodingKey { case exit, signal }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let exit = try container.decodeIfPresent(Int32.self, forKey: .exit)
        let signal = try container.decodeIfPresent(Int32.self, forKey: .signal)
        switch (exit, signal) {
        case (let code?, nil): self = .exited(code: code)
        case (nil, let signal?): self = .signaled(signal: signal)
        default:
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: decoder.codingPath, debugDescription: "must be {\"exit\": code} or {\"signal\": number}"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .exited(let code): try container.encode(code, forKey: .exit)
        case .signaled(let signal): try container.encode(signal, forKey: .signal)
        }
    }
}

/// What the execution used, measured from its cgroup.
///
///     u64 cpuMs | u64 peakMemoryBytes | u64 pidsPeak | u64 ioReadBytes | u64 ioWriteBytes
public struct ResourceUsage: Sendable, Hashable, Codable {
    /// CPU time, user and system (`cpu.stat` usage_usec / 1000).
    public var cpuMs: UInt64
    /// `memory.peak`.
    public var peakMemoryBytes: UInt64
    /// `pids.peak`.
    public var pidsPeak: UInt64
    /// `io.stat` rbytes and wbytes, summed over devices.
    public var ioReadBytes: UInt64
    public var ioWriteBytes: UInt64

    public init(cpuMs: UInt64, peakMemoryBytes: UInt64, pidsPeak: UInt64, ioReadBytes: UInt64, ioWriteBytes: UInt64) {
        self.cpuMs = cpuMs
        self.peakMemoryBytes = peakMemoryBytes
        self.pidsPeak = pidsPeak
        self.ioReadBytes = ioReadBytes
        self.ioWriteBytes = ioWriteBytes
    }

    public static let zero = ResourceUsage(cpuMs: 0, peakMemoryBytes: 0, pidsPeak: 0, ioReadBytes: 0, ioWriteBytes: 0)

    func write(to writer: inout WireWriter) {
        writer.u64(cpuMs)
        writer.u64(peakMemoryBytes)
        writer.u64(pidsPeak)
        writer.u64(ioReadBytes)
        writer.u64(ioWriteBytes)
    }

    static func read(from reader: inout WireReader) throws(WireError) -> ResourceUsage {
        ResourceUsage(cpuMs: try reader.u64("usage.cpuMs"), peakMemoryBytes: try reader.u64("usage.peakMemoryBytes"),
                      pidsPeak: try reader.u64("usage.pidsPeak"), ioReadBytes: try reader.u64("usage.ioReadBytes"),
                      ioWriteBytes: try reader.u64("usage.ioWriteBytes"))
    }
}

/// The record of one container execution, which the node signs (plugin-sdk/docs/wire.md, "DockLock execution
/// receipts"). Each node's receipts form a hash chain: receipt n carries the hash of receipt n - 1, so a node cannot
/// drop or rewrite one without breaking every later link (`ReceiptChain`).
///
///     u8 version (1) | [32] node | u64 sequence | [32] previousHash | string16 containerID | string16 imageDigest
///     | u16 n × string16 command | [32] environmentHash | string16 hostname | string16 user
///     | string16 workingDirectory | profile | stdin | stdout | stderr | outcome | bool oomKilled | bool timedOut
///     | usage | u64 startedAtMs | u64 endedAtMs
///
/// `signedMessage` is `"metanode/docklock/receipt/v1" 0x00 encoding` and the receipt's `hash` is its BLAKE2b-256.
/// The node signs `signedMessage` through the host's `ed25519_sign` (plugin scope "docklock"): see `SignedReceipt`.
///
/// Times are the node's wall clock in Unix milliseconds. Receipts are evidence a node gives about itself, not
/// consensus state, so nothing else agrees on them.
public struct ExecutionReceipt: Sendable, Hashable, Codable {
    /// The layout this build writes and reads.
    public static let version: UInt8 = 1
    /// The domain of `signedMessage` and `hash`.
    public static let domain = "metanode/docklock/receipt/v1"
    /// The domain of `environmentHash(_:)`.
    public static let environmentDomain = "metanode/docklock/environment/v1"
    /// The plugin name the node key signs receipts under (`NodeSignature`).
    public static let signingPlugin = "docklock"

    public static let containerIDBytesMax = 128
    public static let imageDigestPrefix = "sha256:"
    public static let imageDigestBytes = 7 + 64
    /// The most arguments (argv[0] included) a receipt records. The runtime refuses a longer command before it starts
    /// it, since the execution could not be receipted.
    public static let commandArgumentsMax = 1_024
    public static let commandArgumentBytesMax = 4_096
    /// The most bytes all arguments together may have.
    public static let commandBytesMax = 64 * 1_024
    /// Linux's HOST_NAME_MAX.
    public static let hostnameBytesMax = 64
    /// "4294967295:4294967295".
    public static let userBytesMax = 21
    /// Linux's PATH_MAX.
    public static let workingDirectoryBytesMax = 4_096
    /// The largest encoded receipt; `decode` refuses more before reading a field.
    public static let encodedBytesMax = 1 + 32 + 8 + 32 + (2 + containerIDBytesMax) + (2 + imageDigestBytes)
        + 2 + 2 * commandArgumentsMax + commandBytesMax + 32 + (2 + hostnameBytesMax) + (2 + userBytesMax)
        + (2 + workingDirectoryBytesMax) + ExecutionProfile.encodedBytes + 3 * (32 + 8) + (1 + 4) + 2 + 5 * 8 + 2 * 8

    /// The layout version; always `ExecutionReceipt.version` (decoding refuses others).
    public var version: UInt8 { Self.version }
    /// The node's Ed25519 public key, 32 bytes.
    public var node: [UInt8]
    /// 0 for the node's first receipt, then one more each time.
    public var sequence: UInt64
    /// The hash of the node's receipt `sequence - 1`; 32 zero bytes for sequence 0.
    public var previousHash: [UInt8]
    /// 1-128 bytes of A-Z a-z 0-9 - _ .
    public var containerID: String
    /// "sha256:" and 64 lowercase hex digits: the image manifest's digest.
    public var imageDigest: String
    /// argv: 1-`commandArgumentsMax` arguments, argv[0] not empty, none holding a NUL byte.
    public var command: [String]
    /// `environmentHash(_:)` of the environment the process started with.
    public var environmentHash: [UInt8]
    /// At most 64 bytes, no NUL (may be empty).
    public var hostname: String
    /// "uid:gid" in decimal, no leading zeros: "0:0", "1000:1000".
    public var user: String
    /// An absolute path.
    public var workingDirectory: String
    public var profile: ExecutionProfile
    public var stdin: StreamDigest
    public var stdout: StreamDigest
    public var stderr: StreamDigest
    public var outcome: ExecutionOutcome
    /// Whether the cgroup's OOM killer killed a process of the container (`memory.events` oom_kill).
    public var oomKilled: Bool
    /// Whether the runtime killed the container for outliving `profile.timeoutMs`.
    public var timedOut: Bool
    public var usage: ResourceUsage
    /// Unix time in milliseconds when the container's process started, and when it ended; ended ≥ started.
    public var startedAtMs: UInt64
    public var endedAtMs: UInt64

    public init(node: [UInt8], sequence: UInt64, previousHash: [UInt8], containerID: String, imageDigest: String,
                command: [String], environmentHash: [UInt8], hostname: String, user: String,
                workingDirectory: String, profile: ExecutionProfile, stdin: StreamDigest, stdout: StreamDigest,
                stderr: StreamDigest, outcome: ExecutionOutcome, oomKilled: Bool, timedOut: Bool,
                usage: ResourceUsage, startedAtMs: UInt64, endedAtMs: UInt64) {
        self.node = node
        self.sequence = sequence
        self.previousHash = previousHash
        self.containerID = containerID
        self.imageDigest = imageDigest
        self.command = command
        self.environmentHash = environmentHash
        self.hostname = hostname
        self.user = user
        self.workingDirectory = workingDirectory
        self.profile = profile
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.outcome = outcome
        self.oomKilled = oomKilled
        self.timedOut = timedOut
        self.usage = usage
        self.startedAtMs = startedAtMs
        self.endedAtMs = endedAtMs
    }

    /// One past the last sequence a receipt may have (UInt64.max), so every receipt has a successor number.
    public static let sequenceEnd = UInt64.max

    /// The previous hash of sequence 0.
    public static let zeroHash = [UInt8](repeating: 0, count: WireCrypto.hashBytes)

    /// The environment's canonical hash: the entries ("KEY=value") sorted by their UTF-8 bytes, encoded as
    /// `u32 count | count × bytes32 entry`, hashed under `environmentDomain`. The order the entries were given in
    /// does not matter; duplicates count.
    public static func environmentHash(_ environment: [String]) -> [UInt8] {
        let entries = environment.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
        var writer = WireWriter(capacity: 4 + entries.reduce(0) { $0 + 4 + $1.count })
        writer.u32(UInt32(entries.count))
        for entry in entries { writer.bytes32(entry) }
        return WireCrypto.domainHash(environmentDomain, writer.bytes)
    }

    // MARK: - Encoding

    /// The wire encoding. The fields must be valid (`checkFields()`): values from `decode`, from JSON and from
    /// `ReceiptChain.State.next` are.
    public var encoded: [UInt8] {
        let commandBytes = command.reduce(0) { $0 + 2 + $1.utf8.count }
        var writer = WireWriter(capacity: 512 + commandBytes + workingDirectory.utf8.count)
        writer.u8(Self.version)
        writer.fixed(node, count: WireCrypto.publicKeyBytes)
        writer.u64(sequence)
        writer.fixed(previousHash, count: WireCrypto.hashBytes)
        writer.string16(containerID)
        writer.string16(imageDigest)
        writer.u16(UInt16(command.count))
        for argument in command { writer.string16(argument) }
        writer.fixed(environmentHash, count: WireCrypto.hashBytes)
        writer.string16(hostname)
        writer.string16(user)
        writer.string16(workingDirectory)
        profile.write(to: &writer)
        for stream in [stdin, stdout, stderr] {
            writer.fixed(stream.hash, count: WireCrypto.hashBytes)
            writer.u64(stream.size)
        }
        outcome.write(to: &writer)
        writer.bool(oomKilled)
        writer.bool(timedOut)
        usage.write(to: &writer)
        writer.u64(startedAtMs)
        writer.u64(endedAtMs)
        return writer.bytes
    }

    /// What the node signs (through the host, which adds its plugin scope) and what `hash` hashes:
    /// `"metanode/docklock/receipt/v1" 0x00 encoding`.
    public var signedMessage: [UInt8] { Array(Self.domain.utf8) + [0] + encoded }

    /// BLAKE2b-256 of `signedMessage`: the receipt's name, and the next receipt's `previousHash`.
    public var hash: [UInt8] { WireCrypto.domainHash(Self.domain, encoded) }

    /// The exact bytes the node key signs: the host's `ed25519_sign` scope around `signedMessage`,
    /// `"metanode/plugin-sig/v1" 0x00 "docklock" 0x00 signedMessage`.
    public var signingBytes: [UInt8] {
        NodeSignature.signingBytes(plugin: Self.signingPlugin, message: signedMessage)
    }

    public static func decode(_ bytes: [UInt8]) throws(DockLockError) -> ExecutionReceipt {
        guard bytes.count <= encodedBytesMax else {
            throw DockLockError(.limit, "a receipt is \(bytes.count) bytes; at most \(encodedBytesMax)")
        }
        var reader = WireReader(bytes, context: "receipt")
        let receipt = try wire { () throws(WireError) in try read(from: &reader) }
        try wire { () throws(WireError) in try reader.finish() }
        try receipt.checkFields()
        return receipt
    }

    static func read(from reader: inout WireReader) throws(WireError) -> ExecutionReceipt {
        let version = try reader.u8("version")
        guard version == Self.version else {
            throw WireError(.invalidValue, "\(reader.context) version \(version) is unknown; this build reads version "
                + "\(Self.version)")
        }
        let node = try reader.fixed(WireCrypto.publicKeyBytes, "node")
        let sequence = try reader.u64("sequence")
        let previousHash = try reader.fixed(WireCrypto.hashBytes, "previousHash")
        let containerID = try reader.string16("containerID", max: containerIDBytesMax)
        let imageDigest = try reader.string16("imageDigest", max: imageDigestBytes)
        let count = try reader.count16("command", max: commandArgumentsMax, itemBytesMin: 2)
        var command: [String] = []
        command.reserveCapacity(count)
        var commandBytes = 0
        for index in 0..<count {
            let argument = try reader.string16("command[\(index)]", max: commandArgumentBytesMax)
            commandBytes += argument.utf8.count
            guard commandBytes <= commandBytesMax else {
                throw WireError(.tooLong, "\(reader.context).command is more than \(commandBytesMax) bytes in all "
                    + "(at argument \(index))")
            }
            command.append(argument)
        }
        let environmentHash = try reader.fixed(WireCrypto.hashBytes, "environmentHash")
        let hostname = try reader.string16("hostname", max: hostnameBytesMax)
        let user = try reader.string16("user", max: userBytesMax)
        let workingDirectory = try reader.string16("workingDirectory", max: workingDirectoryBytesMax)
        let profile = try ExecutionProfile.read(from: &reader)
        var streams: [StreamDigest] = []
        for name in ["stdin", "stdout", "stderr"] {
            streams.append(StreamDigest(hash: try reader.fixed(WireCrypto.hashBytes, "\(name).hash"),
                                        size: try reader.u64("\(name).size")))
        }
        let outcome = try ExecutionOutcome.read(from: &reader)
        let oomKilled = try reader.bool("oomKilled")
        let timedOut = try reader.bool("timedOut")
        let usage = try ResourceUsage.read(from: &reader)
        return ExecutionReceipt(
            node: node, sequence: sequence, previousHash: previousHash, containerID: containerID,
            imageDigest: imageDigest, command: command, environmentHash: environmentHash, hostname: hostname,
            user: user, workingDirectory: workingDirectory, profile: profile, stdin: streams[0], stdout: streams[1],
            stderr: streams[2], outcome: outcome, oomKilled: oomKilled, timedOut: timedOut, usage: usage,
            startedAtMs: try reader.u64("startedAtMs"), endedAtMs: try reader.u64("endedAtMs"))
    }

    /// Runs a decoding step, turning its `WireError` into DockLock's error (too long → `.limit`, else `.invalid`).
    static func wire<T>(_ body: () throws(WireError) -> T) throws(DockLockError) -> T {
        do {
            return try body()
        } catch {
            throw DockLockError(error.code == .tooLong ? .limit : .invalid, error.message)
        }
    }

    // MARK: - Field rules

    /// The rules on the fields beyond what their types say; errors name the field. `decode`, JSON decoding and
    /// `ReceiptChain.State.next` apply them, so a receipt that breaks one is never encoded, signed or accepted.
    public func checkFields() throws(DockLockError) {
        func invalid(_ message: String) -> DockLockError { DockLockError(.invalid, "receipt.\(message)") }
        func tooLong(_ message: String) -> DockLockError { DockLockError(.limit, "receipt.\(message)") }
        let hashes: [(String, [UInt8])] = [
            ("previousHash", previousHash), ("environmentHash", environmentHash),
            ("profile.seccompProfileHash", profile.seccompProfileHash), ("stdin.hash", stdin.hash),
            ("stdout.hash", stdout.hash), ("stderr.hash", stderr.hash),
        ]
        guard node.count == WireCrypto.publicKeyBytes else {
            throw invalid("node is \(node.count) bytes; an Ed25519 public key is \(WireCrypto.publicKeyBytes)")
        }
        for (name, hash) in hashes where hash.count != WireCrypto.hashBytes {
            throw invalid("\(name) is \(hash.count) bytes; a BLAKE2b-256 hash is \(WireCrypto.hashBytes)")
        }
        guard sequence < Self.sequenceEnd else {
            throw invalid("sequence is \(sequence); the last a chain can use is \(Self.sequenceEnd - 1)")
        }
        guard sequence != 0 || previousHash == Self.zeroHash else {
            throw invalid("previousHash is \(Hex.encode(previousHash)); sequence 0 has none, so it must be 32 zero "
                + "bytes")
        }
        guard !containerID.isEmpty, containerID.utf8.count <= Self.containerIDBytesMax,
              containerID.utf8.allSatisfy(Self.isIDByte) else {
            throw invalid("containerID '\(containerID.prefix(200))' must be 1-\(Self.containerIDBytesMax) characters "
                + "of A-Z, a-z, 0-9, '-', '_' or '.'")
        }
        guard Self.isImageDigest(imageDigest) else {
            throw invalid("imageDigest '\(imageDigest.prefix(200))' must be 'sha256:' and 64 lowercase hex digits")
        }
        guard !command.isEmpty else { throw invalid("command is empty; it needs at least argv[0]") }
        guard command.count <= Self.commandArgumentsMax else {
            throw tooLong("command has \(command.count) arguments; at most \(Self.commandArgumentsMax)")
        }
        var commandBytes = 0
        for (index, argument) in command.enumerated() {
            let size = argument.utf8.count
            guard size <= Self.commandArgumentBytesMax else {
                throw tooLong("command[\(index)] is \(size) bytes; at most \(Self.commandArgumentBytesMax)")
            }
            guard !argument.utf8.contains(0) else { throw invalid("command[\(index)] holds a NUL byte") }
            commandBytes += size
        }
        guard !command[0].isEmpty else { throw invalid("command[0] is empty; it names the program") }
        guard commandBytes <= Self.commandBytesMax else {
            throw tooLong("command is \(commandBytes) bytes in all; at most \(Self.commandBytesMax)")
        }
        guard hostname.utf8.count <= Self.hostnameBytesMax, !hostname.utf8.contains(0) else {
            throw invalid("hostname must be at most \(Self.hostnameBytesMax) bytes with no NUL, not "
                + "\(hostname.utf8.count) bytes")
        }
        guard Self.isUser(user) else {
            throw invalid("user '\(user.prefix(200))' must be 'uid:gid' in decimal with no leading zeros, such as "
                + "'1000:1000'")
        }
        guard workingDirectory.hasPrefix("/"), workingDirectory.utf8.count <= Self.workingDirectoryBytesMax,
              !workingDirectory.utf8.contains(0) else {
            throw invalid("workingDirectory '\(workingDirectory.prefix(200))' must be an absolute path of at most "
                + "\(Self.workingDirectoryBytesMax) bytes with no NUL")
        }
        if let problem = outcome.problem { throw invalid("outcome: \(problem)") }
        guard endedAtMs >= startedAtMs else {
            throw invalid("endedAtMs \(endedAtMs) is before startedAtMs \(startedAtMs)")
        }
    }

    static func isIDByte(_ byte: UInt8) -> Bool {
        (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
            || byte == 0x2D || byte == 0x5F || byte == 0x2E
    }

    /// "sha256:" and 64 lowercase hex digits.
    public static func isImageDigest(_ text: String) -> Bool {
        let utf8 = Array(text.utf8)
        guard utf8.count == imageDigestBytes, text.hasPrefix(imageDigestPrefix) else { return false }
        return utf8[7...].allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// "uid:gid", each a decimal UInt32 with no leading zeros.
    static func isUser(_ text: String) -> Bool {
        guard text.utf8.count <= userBytesMax else { return false }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { part in
            part.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && UInt32(part) != nil
                && (part == "0" || !part.hasPrefix("0"))
        }
    }

    // MARK: - JSON

    enum CodingKeys: String, CodingKey {
        case version, node, sequence, previousHash, containerID = "containerId", imageDigest, command, environmentHash
        case hostname, user, workingDirectory, profile, stdin, stdout, stderr, outcome, oomKilled, timedOut, usage
        case startedAtMs, endedAtMs
    }

    /// Reads the fields `encode(to:)` writes and checks them (`checkFields()`), throwing `DockLockError` for a
    /// rule broken and `DecodingError` for a missing or mistyped field.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let version = try container.decode(UInt8.self, forKey: .version)
        guard version == Self.version else {
            throw DockLockError(.invalid, "receipt version \(version) is unknown; this build reads version "
                + "\(Self.version)")
        }
        self.init(
            node: try container.decodeReceiptHex(forKey: .node, count: WireCrypto.publicKeyBytes),
            sequence: try container.decode(UInt64.self, forKey: .sequence),
            previousHash: try container.decodeReceiptHex(forKey: .previousHash, count: WireCrypto.hashBytes),
            containerID: try container.decode(String.self, forKey: .containerID),
            imageDigest: try container.decode(String.self, forKey: .imageDigest),
            command: try container.decode([String].self, forKey: .command),
            environmentHash: try container.decodeReceiptHex(forKey: .environmentHash, count: WireCrypto.hashBytes),
            hostname: try container.decode(String.self, forKey: .hostname),
            user: try container.decode(String.self, forKey: .user),
            workingDirectory: try container.decode(String.self, forKey: .workingDirectory),
            profile: try container.decode(ExecutionProfile.self, forKey: .profile),
            stdin: try container.decode(StreamDigest.self, forKey: .stdin),
            stdout: try container.decode(StreamDigest.self, forKey: .stdout),
            stderr: try container.decode(StreamDigest.self, forKey: .stderr),
            outcome: try container.decode(ExecutionOutcome.self, forKey: .outcome),
            oomKilled: try container.decode(Bool.self, forKey: .oomKilled),
            timedOut: try container.decode(Bool.self, forKey: .timedOut),
            usage: try container.decode(ResourceUsage.self, forKey: .usage),
            startedAtMs: try container.decode(UInt64.self, forKey: .startedAtMs),
            endedAtMs: try container.decode(UInt64.self, forKey: .endedAtMs))
        try checkFields()
    }

    /// The readable form: every field by name, hashes and the key as hex, the outcome as {"exit": n} or
    /// {"signal": n}. Throws the broken rule for a receipt whose fields are invalid.
    public func encode(to encoder: any Encoder) throws {
        try checkFields()
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Self.version, forKey: .version)
        try container.encode(Hex.encode(node), forKey: .node)
        try container.encode(sequence, forKey: .sequence)
        try container.encode(Hex.encode(previousHash), forKey: .previousHash)
        try container.encode(containerID, forKey: .containerID)
        try container.encode(imageDigest, forKey: .imageDigest)
        try container.encode(command, forKey: .command)
        try container.encode(Hex.encode(environmentHash), forKey: .environmentHash)
        try container.encode(hostname, forKey: .hostname)
        try container.encode(user, forKey: .user)
        try container.encode(workingDirectory, forKey: .workingDirectory)
        try container.encode(profile, forKey: .profile)
        try container.encode(stdin, forKey: .stdin)
        try container.encode(stdout, forKey: .stdout)
        try container.encode(stderr, forKey: .stderr)
        try container.encode(outcome, forKey: .outcome)
        try container.encode(oomKilled, forKey: .oomKilled)
        try container.encode(timedOut, forKey: .timedOut)
        try container.encode(usage, forKey: .usage)
        try container.encode(startedAtMs, forKey: .startedAtMs)
        try container.encode(endedAtMs, forKey: .endedAtMs)
    }
}

/// A receipt and the node's signature: Ed25519 by `receipt.node` over `receipt.signingBytes`, which is what the
/// host's `ed25519_sign` signs when DockLock passes it `receipt.signedMessage`.
///
///     receipt encoding | [64] signature
public struct SignedReceipt: Sendable, Hashable, Codable {
    public var receipt: ExecutionReceipt
    /// 64 bytes.
    public var signature: [UInt8]

    /// The largest encoded signed receipt.
    public static let encodedBytesMax = ExecutionReceipt.encodedBytesMax + WireCrypto.signatureBytes
    /// The largest receipts JSON file `decodeJSON` reads.
    public static let jsonBytesMax = 256 << 20

    /// `signature` is what the host's `ed25519_sign` returned for `receipt.signedMessage`.
    public init(receipt: ExecutionReceipt, signature: [UInt8]) {
        self.receipt = receipt
        self.signature = signature
    }

    /// Signs `receipt` with a key held in this process, producing exactly the signature the host's `ed25519_sign`
    /// would for DockLock with that node key. For tests, simulations and tools; a running node signs through the host.
    public static func sign(_ receipt: ExecutionReceipt, with signer: Ed25519Signer) throws(DockLockError)
        -> SignedReceipt {
        try receipt.checkFields()
        guard receipt.node == signer.publicKey else {
            throw DockLockError(.invalid, "receipt.node is \(Hex.encode(receipt.node)) but the signing key is "
                + "\(Hex.encode(signer.publicKey))")
        }
        return SignedReceipt(receipt: receipt, signature: signer.sign(receipt.signingBytes))
    }

    public var hash: [UInt8] { receipt.hash }

    /// Throws unless `publicKey` is the receipt's node and signed exactly this receipt. The message says which: a
    /// receipt whose fields are invalid, one that names another node, or a signature that does not verify (a field
    /// changed after signing, or another key signed).
    public func verify(publicKey: [UInt8]) throws(DockLockError) {
        guard publicKey.count == WireCrypto.publicKeyBytes else {
            throw DockLockError(.invalid, "the node key is \(publicKey.count) bytes; an Ed25519 public key is "
                + "\(WireCrypto.publicKeyBytes)")
        }
        try receipt.checkFields()
        guard receipt.node == publicKey else {
            throw DockLockError(.integrity, "the receipt names node \(Hex.encode(receipt.node)), not "
                + "\(Hex.encode(publicKey))")
        }
        guard signature.count == WireCrypto.signatureBytes else {
            throw DockLockError(.integrity, "the signature is \(signature.count) bytes; an Ed25519 signature is "
                + "\(WireCrypto.signatureBytes)")
        }
        guard NodeSignature.verify(signature: signature, nodeKey: publicKey, plugin: ExecutionReceipt.signingPlugin,
                                   message: receipt.signedMessage) else {
            throw DockLockError(.integrity, "the signature does not verify with node key \(Hex.encode(publicKey)): "
                + "the receipt was changed after it was signed, or another key signed it")
        }
    }

    public var encoded: [UInt8] {
        precondition(signature.count == WireCrypto.signatureBytes, "a signature is 64 bytes, not \(signature.count)")
        return receipt.encoded + signature
    }

    public static func decode(_ bytes: [UInt8]) throws(DockLockError) -> SignedReceipt {
        guard bytes.count <= encodedBytesMax else {
            throw DockLockError(.limit, "a signed receipt is \(bytes.count) bytes; at most \(encodedBytesMax)")
        }
        var reader = WireReader(bytes, context: "receipt")
        let receipt = try ExecutionReceipt.wire { () throws(WireError) in try ExecutionReceipt.read(from: &reader) }
        let signature = try ExecutionReceipt.wire { () throws(WireError) in
            try reader.fixed(WireCrypto.signatureBytes, "signature")
        }
        try ExecutionReceipt.wire { () throws(WireError) in try reader.finish() }
        try receipt.checkFields()
        return SignedReceipt(receipt: receipt, signature: signature)
    }

    // MARK: - JSON

    /// The receipt's fields, then "hash" (for people and tools; never read back: verifiers recompute it) and
    /// "signature", all in one object.
    enum CodingKeys: String, CodingKey { case hash, signature }

    public init(from decoder: any Decoder) throws {
        receipt = try ExecutionReceipt(from: decoder)
        signature = try decoder.container(keyedBy: CodingKeys.self)
            .decodeReceiptHex(forKey: .signature, count: WireCrypto.signatureBytes)
    }

    public func encode(to encoder: any Encoder) throws {
        try receipt.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Hex.encode(receipt.hash), forKey: .hash)
        try container.encode(Hex.encode(signature), forKey: .signature)
    }

    /// `receipts` as a JSON file: one object for one receipt, else an array (a chain), pretty-printed with the
    /// fields in the order of the wire layout (`encode(to:)` writes the same fields, in whatever order its encoder
    /// keeps). Throws the broken rule for a receipt whose fields are invalid.
    public static func json(_ receipts: [SignedReceipt]) throws(DockLockError) -> [UInt8] {
        var nodes: [ReceiptJSONNode] = []
        for signed in receipts {
            try signed.receipt.checkFields()
            nodes.append(signed.jsonNode)
        }
        var out = ""
        (nodes.count == 1 ? nodes[0] : .array(nodes)).write(to: &out, indent: 0)
        return Array(out.utf8) + [0x0A]
    }

    /// The JSON object `encode(to:)` describes, with its fields in layout order.
    var jsonNode: ReceiptJSONNode {
        typealias Node = ReceiptJSONNode
        let r = receipt
        func hex(_ bytes: [UInt8]) -> Node { .string(Hex.encode(bytes)) }
        func number(_ value: some BinaryInteger) -> Node { .number(String(value)) }
        func stream(_ digest: StreamDigest) -> Node {
            .object([("hash", hex(digest.hash)), ("size", number(digest.size))])
        }
        let outcome: Node = switch r.outcome {
        case .exited(let code): .object([("exit", number(code))])
        case .signaled(let signal): .object([("signal", number(signal))])
        }
        var profile: [(String, Node)] = [("seccompProfileHash", hex(r.profile.seccompProfileHash))]
        profile.append(("memoryBytesMax", number(r.profile.memoryBytesMax)))
        profile.append(("cpuMillicores", number(r.profile.cpuMillicores)))
        profile.append(("pidsMax", number(r.profile.pidsMax)))
        profile.append(("network", .string(r.profile.network.rawValue)))
        profile.append(("readOnlyRoot", .bool(r.profile.readOnlyRoot)))
        profile.append(("deterministic", .bool(r.profile.deterministic)))
        profile.append(("timeoutMs", number(r.profile.timeoutMs)))
        var usage: [(String, Node)] = [("cpuMs", number(r.usage.cpuMs))]
        usage.append(("peakMemoryBytes", number(r.usage.peakMemoryBytes)))
        usage.append(("pidsPeak", number(r.usage.pidsPeak)))
        usage.append(("ioReadBytes", number(r.usage.ioReadBytes)))
        usage.append(("ioWriteBytes", number(r.usage.ioWriteBytes)))
        var fields: [(String, Node)] = [("version", number(ExecutionReceipt.version))]
        fields.append(("node", hex(r.node)))
        fields.append(("sequence", number(r.sequence)))
        fields.append(("previousHash", hex(r.previousHash)))
        fields.append(("hash", hex(r.hash)))
        fields.append(("containerId", .string(r.containerID)))
        fields.append(("imageDigest", .string(r.imageDigest)))
        fields.append(("command", .array(r.command.map { .string($0) })))
        fields.append(("environmentHash", hex(r.environmentHash)))
        fields.append(("hostname", .string(r.hostname)))
        fields.append(("user", .string(r.user)))
        fields.append(("workingDirectory", .string(r.workingDirectory)))
        fields.append(("profile", .object(profile)))
        fields.append(("stdin", stream(r.stdin)))
        fields.append(("stdout", stream(r.stdout)))
        fields.append(("stderr", stream(r.stderr)))
        fields.append(("outcome", outcome))
        fields.append(("oomKilled", .bool(r.oomKilled)))
        fields.append(("timedOut", .bool(r.timedOut)))
        fields.append(("usage", .object(usage)))
        fields.append(("startedAtMs", number(r.startedAtMs)))
        fields.append(("endedAtMs", number(r.endedAtMs)))
        fields.append(("signature", hex(signature)))
        return .object(fields)
    }

    /// The receipts in a JSON file: one receipt object, or an array of them. Rebuilds each receipt exactly, so its
    /// signature verifies; errors name the entry and the field ("entry 2: profile.memoryBytesMax is missing").
    public static func decodeJSON(_ bytes: [UInt8]) throws(DockLockError) -> [SignedReceipt] {
        guard bytes.count <= jsonBytesMax else {
            throw DockLockError(.limit, "the receipts JSON is \(bytes.count) bytes; at most \(jsonBytesMax)")
        }
        let first = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        let decoder = JSONDecoder()
        do {
            if first == UInt8(ascii: "[") {
                let entries = try decoder.decode([Entry].self, from: Data(bytes))
                guard !entries.isEmpty else { throw DockLockError(.invalid, "the receipts JSON is an empty array") }
                return entries.map(\.receipt)
            }
            guard first == UInt8(ascii: "{") else {
                throw DockLockError(.invalid, "the receipts JSON must be a receipt object or an array of them")
            }
            return [try decoder.decode(SignedReceipt.self, from: Data(bytes))]
        } catch let error as DockLockError {
            throw error
        } catch let error as DecodingError {
            throw DockLockError(.invalid, describe(error))
        } catch {
            throw DockLockError(.invalid, "the receipts JSON does not decode: \(error)")
        }
    }

    /// One element of a JSON array, so a broken rule's message says which element.
    private struct Entry: Decodable {
        var receipt: SignedReceipt

        init(from decoder: any Decoder) throws {
            do {
                receipt = try SignedReceipt(from: decoder)
            } catch let error as DockLockError {
                let index = decoder.codingPath.last?.intValue.map(String.init) ?? "?"
                throw DockLockError(error.code, "entry \(index): \(error.message)")
            }
        }
    }

    /// "entry 2: profile.memoryBytesMax is missing" from a DecodingError's coding path.
    static func describe(_ error: DecodingError) -> String {
        func place(_ path: [any CodingKey]) -> String {
            var entry: String?
            var keys = path
            if let index = keys.first?.intValue {
                entry = "entry \(index)"
                keys.removeFirst()
            }
            let field = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
                .replacingOccurrences(of: ".[", with: "[")
            let name = field.hasPrefix(".") ? String(field.dropFirst()) : field
            return [entry, name.isEmpty ? nil : name].compactMap { $0 }.joined(separator: ": ")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "\(place(context.codingPath + [key])) is missing"
        case .valueNotFound(_, let context):
            return "\(place(context.codingPath)) is null"
        case .typeMismatch(let type, let context):
            return "\(place(context.codingPath)) is not \(typeName(type))"
        case .dataCorrupted(let context):
            let where_ = place(context.codingPath)
            return where_.isEmpty ? "the receipts JSON is not valid JSON (\(context.debugDescription))"
                : "\(where_) \(context.debugDescription)"
        @unknown default:
            return "the receipts JSON does not decode: \(error)"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is UInt8.Type, is UInt32.Type, is UInt64.Type: "a whole number in range (\(type))"
        case is Int32.Type: "a whole number in range (Int32)"
        default: "a \(type)"
        }
    }
}

/// A JSON value whose objects keep their fields in order, for receipt files people read.
indirect enum ReceiptJSONNode {
    case object([(String, ReceiptJSONNode)])
    case array([ReceiptJSONNode])
    case string(String)
    /// Already in JSON's number syntax.
    case number(String)
    case bool(Bool)

    /// Pretty-printed, two spaces an indent level, like JSONEncoder's `.prettyPrinted`.
    func write(to out: inout String, indent: Int) {
        let inner = String(repeating: "  ", count: indent + 1)
        switch self {
        case .object(let fields):
            guard !fields.isEmpty else { return out += "{}" }
            out += "{\n"
            for (index, (key, value)) in fields.enumerated() {
                out += inner
                Self.quote(key, to: &out)
                out += ": "
                value.write(to: &out, indent: indent + 1)
                out += index == fields.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: "  ", count: indent) + "}"
        case .array(let items):
            guard !items.isEmpty else { return out += "[]" }
            out += "[\n"
            for (index, item) in items.enumerated() {
                out += inner
                item.write(to: &out, indent: indent + 1)
                out += index == items.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: "  ", count: indent) + "]"
        case .string(let text): Self.quote(text, to: &out)
        case .number(let text): out += text
        case .bool(let value): out += value ? "true" : "false"
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped, everything else as it is.
    static func quote(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let control where control.value < 0x20:
                let digits = String(control.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
