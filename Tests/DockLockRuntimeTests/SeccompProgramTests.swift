import DockLockCore
@testable import DockLockRuntime
import Testing

/// The compiled Docker-default program, run on a classic-BPF interpreter the way the kernel runs it: what it answers
/// for a call, and how many instructions it takes to answer. The step bound matters twice: every system call of the
/// container walks the program, and the kernel walks it once per system call number when it installs it
/// (seccomp_cache_prepare, with interrupts off), which cost 0.25 ms per container with libseccomp's linear list.
@Suite struct SeccompProgramTests {
    static let archX86_64: UInt32 = 0xC000_003E
    static let allow: UInt32 = 0x7FFF_0000
    static let killProcess: UInt32 = 0x8000_0000
    static func errno(_ value: UInt32) -> UInt32 { 0x0005_0000 | value }

    let program: [BPFInstruction]

    init() throws {
        program = BPFInstruction.decode(try SeccompCompiler.compile(.dockerDefault).bytes)
    }

    @Test func everyAllowedCallIsAllowedAndTheRestFailWithEPERM() throws {
        for (name, number) in [("read", 0), ("write", 1), ("getpid", 39), ("execve", 59), ("exit_group", 231),
                               ("openat", 257), ("futex_waitv", 449)] as [(String, UInt32)] {
            #expect(try run(number).action == Self.allow, "\(name)")
        }
        for (name, number) in [("mount", 165), ("umount2", 166), ("pivot_root", 155), ("ptrace", 101),
                               ("kexec_load", 246), ("unshare", 272), ("setns", 308), ("keyctl", 250),
                               ("bpf", 321), ("process_vm_readv", 310), ("pidfd_getfd", 438), ("open_tree", 428),
                               ("a number no kernel has yet", 1000)] as [(String, UInt32)] {
            #expect(try run(number).action == Self.errno(1), "\(name)")
        }
    }

    @Test func argumentRulesLookAtTheArguments() throws {
        let clone: UInt32 = 56, socket: UInt32 = 41, personality: UInt32 = 135, clone3: UInt32 = 435
        #expect(try run(clone, arguments: [0x11 /* SIGCHLD */]).action == Self.allow)
        #expect(try run(clone, arguments: [0x2000_0011 /* CLONE_NEWPID */]).action == Self.errno(1))
        #expect(try run(clone, arguments: [0x1_0000_0000 | 0x11]).action == Self.allow) // flags are an int
        #expect(try run(clone3).action == Self.errno(38))
        #expect(try run(socket, arguments: [2 /* AF_INET */]).action == Self.allow)
        #expect(try run(socket, arguments: [40 /* AF_VSOCK */]).action == Self.errno(1))
        #expect(try run(personality, arguments: [0]).action == Self.allow)
        #expect(try run(personality, arguments: [0x0040_0000 /* READ_IMPLIES_EXEC */]).action == Self.errno(1))
    }

    @Test func anotherArchitectureIsKilled() throws {
        #expect(try run(39, arch: 0x4000_0003 /* i386 */).action == Self.killProcess)
        #expect(try run(39 | 0x4000_0000 /* x32 */).action != Self.allow)
    }

    @Test func everyCallIsDecidedInAFewDozenInstructions() throws {
        var longest = 0
        for number in UInt32(0)..<512 { longest = max(longest, try run(number, arguments: [0x11]).steps) }
        #expect(longest <= 40, "the longest walk took \(longest) instructions of \(program.count)")
    }

    func run(_ number: UInt32, arch: UInt32 = archX86_64, arguments: [UInt64] = []) throws -> (action: UInt32, steps: Int) {
        var data = [UInt8](repeating: 0, count: 64) // struct seccomp_data: nr, arch, instruction_pointer, args[6]
        func put32(_ value: UInt32, at offset: Int) { for i in 0..<4 { data[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) } }
        put32(number, at: 0)
        put32(arch, at: 4)
        for (i, argument) in arguments.enumerated() {
            put32(UInt32(truncatingIfNeeded: argument), at: 16 + 8 * i)
            put32(UInt32(truncatingIfNeeded: argument >> 32), at: 20 + 8 * i)
        }
        return try BPFInstruction.run(program, on: data)
    }
}

/// Classic BPF as seccomp runs it: the instructions libseccomp emits, on a 32-bit accumulator, index register and
/// scratch memory. An instruction it does not know fails the test rather than guessing.
struct BPFInstruction {
    var code: UInt16, jumpTrue: UInt8, jumpFalse: UInt8, constant: UInt32

    struct Unknown: Error, CustomStringConvertible {
        var code: UInt16
        var description: String { "unknown BPF instruction code 0x\(String(code, radix: 16))" }
    }

    static func decode(_ bytes: [UInt8]) -> [BPFInstruction] {
        stride(from: 0, to: bytes.count, by: 8).map { at in
            func u16(_ i: Int) -> UInt16 { UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8 }
            func u32(_ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[i + $1]) << (8 * $1) } }
            return BPFInstruction(code: u16(at), jumpTrue: bytes[at + 2], jumpFalse: bytes[at + 3], constant: u32(at + 4))
        }
    }

    static func run(_ program: [BPFInstruction], on data: [UInt8]) throws -> (action: UInt32, steps: Int) {
        var a: UInt32 = 0, x: UInt32 = 0, memory = [UInt32](repeating: 0, count: 16)
        var pc = 0, steps = 0
        func word(_ offset: UInt32) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(data[Int(offset) + $1]) << (8 * $1) } }
        while pc < program.count {
            let instruction = program[pc]
            steps += 1
            pc += 1
            let k = instruction.constant
            switch instruction.code {
            case 0x20: a = word(k)                      // ld [k]
            case 0x00: a = k                            // ld #k
            case 0x01: x = k                            // ldx #k
            case 0x60: a = memory[Int(k)]               // ld M[k]
            case 0x61: x = memory[Int(k)]               // ldx M[k]
            case 0x02: memory[Int(k)] = a               // st M[k]
            case 0x03: memory[Int(k)] = x               // stx M[k]
            case 0x54: a &= k                           // and #k
            case 0x44: a |= k                           // or #k
            case 0x14: a &-= k                          // sub #k
            case 0x07: x = a                            // tax
            case 0x87: a = x                            // txa
            case 0x05: pc += Int(k)                     // ja
            case 0x15, 0x25, 0x35, 0x45:                // jeq, jgt, jge, jset #k
                let taken = switch instruction.code {
                case 0x15: a == k
                case 0x25: a > k
                case 0x35: a >= k
                default: a & k != 0
                }
                pc += Int(taken ? instruction.jumpTrue : instruction.jumpFalse)
            case 0x06: return (k, steps)                // ret #k
            case 0x16: return (a, steps)                // ret a
            default: throw Unknown(code: instruction.code)
            }
        }
        throw Unknown(code: 0xFFFF)
    }
}
