import CMetanodeShim
import Foundation
import MetanodeCore
import MetanodeHostBridge

/// Records which plugin call is in progress in a memory-mapped file, and which plugin a fatal signal arrived in.
/// The next start reads the record: a crash inside a plugin disables (quarantines) that plugin.
///
/// Only a fatal signal caught while plugin code ran counts as the plugin's crash. A SIGKILL or power loss leaves
/// calls "in flight" in the record too, but a node killed from outside is not its plugins' fault, so those are only
/// reported.
public final class CrashGuard: PluginCallObserver, @unchecked Sendable {
    public struct PreviousRun: Sendable {
        public var pid: Int32
        public var cleanExit: Bool
        /// The plugin, hook and signal of a crash inside plugin code.
        public var crash: (plugin: String, hook: String, signal: Int32)?
        /// Plugin calls that were running when the process ended.
        public var inFlight: [(plugin: String, hook: String)]
    }

    /// Reads the record a previous run left, if any.
    public static func readPrevious(path: String) -> PreviousRun? {
        var record = mn_cg_file()
        guard mn_cg_read_previous(path, &record) == 0 else { return nil }
        let names = withUnsafeBytes(of: &record.names) { raw -> [String] in
            (0..<Int(MN_CG_SLOTS_MAX)).map { slot in
                let start = raw.baseAddress!.advanced(by: slot * Int(MN_CG_NAME_LEN_MAX))
                return String(cString: start.assumingMemoryBound(to: CChar.self))
            }
        }
        let inflight = withUnsafeBytes(of: &record.inflight) { Array($0.bindMemory(to: UInt32.self)) }
        var run = PreviousRun(pid: record.pid, cleanExit: record.state == MN_CG_STATE_CLEAN_EXIT, crash: nil,
                              inFlight: [])
        for slot in 0..<Int(min(record.slot_count, UInt32(MN_CG_SLOTS_MAX))) where inflight[slot] != 0 {
            run.inFlight.append((names[slot], hookName(inflight[slot])))
        }
        if record.culprit_slot >= 0, record.culprit_slot < MN_CG_SLOTS_MAX {
            run.crash = (names[Int(record.culprit_slot)], hookName(record.culprit_hook), record.culprit_signal)
        }
        return run
    }

    static func hookName(_ raw: UInt32) -> String { PluginHook(rawValue: raw)?.name ?? "hook \(raw)" }

    /// Starts this run's record and installs the fatal-signal handlers.
    public init(path: String) throws(MetanodeError) {
        guard mn_cg_open(path) == 0 else {
            throw MetanodeError(.io, "cannot create crash guard record \(path): \(FileIO.errnoText())")
        }
        guard mn_cg_install_signal_handlers() == 0 else {
            throw MetanodeError(.internal, "cannot install signal handlers: \(FileIO.errnoText())")
        }
        _ = mn_cg_thread_prepare()
    }

    public func name(slot: Int, plugin: String) { _ = mn_cg_set_slot_name(Int32(slot), plugin) }

    @inline(__always)
    public func willCall(slot: Int, hook: PluginHook) -> Int64 { mn_cg_enter(Int32(slot), hook.rawValue) }

    @inline(__always)
    public func didCall(_ token: Int64) { mn_cg_leave(token) }

    public func markCleanExit() { mn_cg_mark_clean_exit() }

    public static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGSEGV: "SIGSEGV"
        case SIGBUS: "SIGBUS"
        case SIGILL: "SIGILL"
        case SIGFPE: "SIGFPE"
        case SIGABRT: "SIGABRT"
        case SIGTRAP: "SIGTRAP"
        default: "signal \(signal)"
        }
    }
}
