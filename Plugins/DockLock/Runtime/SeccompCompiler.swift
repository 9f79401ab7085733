import CDockLock
import DockLockCore
import Foundation
import MetanodeWire

/// A compiled seccomp program: classic BPF, 8 bytes per instruction, ready for seccomp(2).
public struct SeccompProgram: Sendable, Equatable {
    public let profileHash: [UInt8]
    public let bytes: [UInt8]
    public var instructionCount: Int { bytes.count / 8 }
}

/// Compiles profiles with libseccomp once per process and keeps the BPF by profile hash. Deliberately not on disk:
/// a program read back from a file would be trusted as the profile its name claims (anyone able to write the file
/// could weaken every container), and compiling takes a few milliseconds once per node start.
public final class SeccompCompiler: @unchecked Sendable {
    private let lock = NSLock()
    private var programs: [[UInt8]: SeccompProgram] = [:]
    /// Classic BPF programs are at most 4096 instructions (BPF_MAXINSNS).
    static let programBytesMax = 4096 * 8

    public init() {}

    public func program(for profile: SeccompProfile) throws(DockLockError) -> SeccompProgram {
        let hash = profile.hash
        if let cached = lock.withLock({ programs[hash] }) { return cached }
        let program = try Self.compile(profile)
        lock.withLock { programs[hash] = program }
        return program
    }

    public static func compile(_ profile: SeccompProfile) throws(DockLockError) -> SeccompProgram {
        // C strings for the names live as long as `names`.
        let names = profile.rules.map { strdup($0.syscall)! }
        defer { names.forEach { free($0) } }
        var rules: [dl_seccomp_rule] = []
        rules.reserveCapacity(profile.rules.count)
        for (index, rule) in profile.rules.enumerated() {
            guard rule.conditions.count <= 6 else {
                throw DockLockError(.invalid, "seccomp rule for \(rule.syscall) has \(rule.conditions.count) conditions (at most 6)")
            }
            var c = dl_seccomp_rule()
            c.syscall = UnsafePointer(names[index])
            c.errno_value = rule.errno
            c.argument_count = UInt32(rule.conditions.count)
            withUnsafeMutableBytes(of: &c.arguments) { raw in
                let arguments = raw.bindMemory(to: dl_seccomp_argument.self)
                for (i, condition) in rule.conditions.enumerated() {
                    arguments[i] = dl_seccomp_argument(index: condition.argument, op: condition.comparison.rawValue,
                                                       value: condition.value, value_two: condition.valueTwo)
                }
            }
            rules.append(c)
        }
        var buffer = [UInt8](repeating: 0, count: programBytesMax)
        var length = 0
        var error = [CChar](repeating: 0, count: 256)
        let rc = buffer.withUnsafeMutableBytes { out in
            dl_seccomp_compile(rules, rules.count, profile.defaultErrno, out.baseAddress, out.count, &length, &error,
                               error.count)
        }
        guard rc == 0 else {
            throw DockLockError(.system, "cannot compile seccomp profile \(profile.name): "
                + String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return SeccompProgram(profileHash: profile.hash, bytes: Array(buffer.prefix(length)))
    }
}
