import Foundation
@testable import MetanodeKernel
import Testing

/// The crash guard record, written by a real child process (Fixtures/crashchild.c linked with the kernel's own
/// Sources/CMetanodeShim/crashguard.c) and read back with CrashGuard.readPrevious.
@Suite("Crash guard")
struct CrashGuardTests {
    /// Compiles the child program into `scratch` and runs it in `mode`; returns the record path and the result.
    static func runChild(_ scratch: Scratch, _ mode: String) throws -> (record: String, result: CommandResult) {
        let program = scratch.file("crashchild")
        try compileC(["\(Repo.fixtures)/crashchild.c", "\(Repo.shim)/crashguard.c"], output: program, shared: false,
                     extraArguments: ["-I\(Repo.shim)/include"])
        let record = scratch.file("crashguard.bin")
        return (record, try run(program, [record, mode]))
    }

    @Test("an abort inside a plugin hook is recorded as that plugin's crash, with hook and signal")
    func abortIsAttributed() throws {
        let scratch = try Scratch("crash")
        let (record, result) = try Self.runChild(scratch, "abort")
        #expect(result.uncaughtSignal && result.status == SIGABRT, "the child must die of SIGABRT: \(result)")

        let previous = try #require(CrashGuard.readPrevious(path: record))
        #expect(!previous.cleanExit)
        let crash = try #require(previous.crash, "no crash recorded")
        #expect(crash.plugin == "victim")
        #expect(crash.hook == "on_message")
        #expect(crash.signal == SIGABRT)
        #expect(CrashGuard.signalName(crash.signal) == "SIGABRT")
        #expect(previous.inFlight.map { "\($0.plugin) \($0.hook)" } == ["victim on_message"])
    }

    @Test("a run that leaves its hook and marks a clean exit reports a clean exit and no crash")
    func cleanExit() throws {
        let scratch = try Scratch("crash-clean")
        let (record, result) = try Self.runChild(scratch, "clean")
        #expect(!result.uncaughtSignal && result.status == 0, "\(result)")

        let previous = try #require(CrashGuard.readPrevious(path: record))
        #expect(previous.cleanExit)
        #expect(previous.crash == nil)
        #expect(previous.inFlight.isEmpty)
    }

    @Test("no record, or a file that is not one, reads as no previous run")
    func missingOrForeignRecord() throws {
        let scratch = try Scratch("crash-none")
        #expect(CrashGuard.readPrevious(path: scratch.file("absent")) == nil)
        try scratch.write(String(repeating: "not a crash guard record ", count: 4000), to: "foreign")
        #expect(CrashGuard.readPrevious(path: scratch.file("foreign")) == nil)
    }
}
