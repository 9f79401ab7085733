import DockLockCore
import MetanodeABI
import MetanodePluginKit
import MetanodeWire
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// DockLock's ledger module on BPI's "bpi.ledger" service (plugin-sdk/include/metanode/ledger.h): the C table whose
/// handlers run `ReceiptLedgerModule`'s rules. One table per registration, each with its own `user_data` (a
/// simulation runs several nodes, so several BPI instances, in one process); BPI may call the handlers for the life
/// of the process, so the table and its context are never freed.
enum LedgerModule {
    /// What the handlers need: the ledger API they were registered with, and the height of the block being
    /// executed. `deliver` has no block argument, so `begin_block` (which BPI runs for every module before a
    /// block's first transaction, on the same thread, in the same call) notes the height for the delivers after it.
    final class Context: @unchecked Sendable {  // the table pointer is static and immutable; the height atomic
        let api: UnsafePointer<mn_ledger_api>
        let height = Atomic<UInt64>(0)
        init(api: UnsafePointer<mn_ledger_api>) { self.api = api }
    }

    /// The module's name as the static bytes ledger.h asks for (written once, never freed).
    nonisolated(unsafe) static let moduleName: UnsafeMutablePointer<UInt8> = {
        let bytes = Array(ReceiptLedgerModule.name.utf8)
        let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count)
        pointer.initialize(from: bytes, count: bytes.count)
        return pointer
    }()

    /// Looks up "bpi.ledger" 1.x and registers the module with it. nil with the reason when there is no ledger on
    /// this node (BPI not enabled, or this plugin not granted the "service" capability); throws if BPI refuses the
    /// registration.
    static func register(_ context: PluginContext) throws(PluginError) -> String? {
        let service: ServiceTable
        do {
            service = try context.services.lookup(MN_LEDGER_SERVICE, major: MN_LEDGER_VERSION_MAJOR, minMinor: 0)
        } catch {
            switch error.status {
            case PluginStatus.notFound: return "BPI is not running on this node (no bpi.ledger service)"
            case PluginStatus.denied:
                return "docklock is not granted the 'service' capability it needs for the ledger (a node made before "
                    + "DockLock used it: `metanode plugin disable docklock` and `metanode plugin enable docklock` "
                    + "grant everything it declares)"
            default: return "bpi.ledger: \(error.message)"
            }
        }
        guard let ledger = service.bound(to: mn_ledger_api.self) else {
            return "bpi.ledger's table is \(service.size) bytes; docklock needs ledger 1.x's "
                + "\(MemoryLayout<mn_ledger_api>.size)"
        }
        let status = ledger.pointee.register_module(ledger, make(ledger: ledger))
        guard status == MN_OK else {
            throw PluginError(status, status == MN_ERR_EXISTS ? "another module is registered as 'docklock'"
                : "register_module failed", function: "register_module")
        }
        return nil
    }

    static func make(ledger: UnsafePointer<mn_ledger_api>) -> UnsafePointer<mn_ledger_module> {
        let context = Unmanaged.passRetained(Context(api: ledger)).toOpaque()
        let module = UnsafeMutablePointer<mn_ledger_module>.allocate(capacity: 1)
        module.initialize(to: mn_ledger_module(
            struct_size: UInt32(MemoryLayout<mn_ledger_module>.size),
            name: mn_str(ptr: moduleName, len: ReceiptLedgerModule.name.utf8.count),
            user_data: context,
            check: { userData, state, tx in
                LedgerModule.run(userData, state) { context, view in
                    guard let tx = tx?.pointee else { return .failure(DockLockError(.invalid, "no transaction")) }
                    if let refusal = ReceiptLedgerModule.check(sender: tx.sender.array, kind: tx.kind.string,
                                                               payload: tx.payload.array, state: view) {
                        return .failure(refusal)
                    }
                    return .success(nil)
                }
            },
            deliver: { userData, state, tx in
                LedgerModule.run(userData, state) { context, view in
                    guard let tx = tx?.pointee else { return .failure(DockLockError(.invalid, "no transaction")) }
                    return ReceiptLedgerModule.deliver(
                        sender: tx.sender.array, kind: tx.kind.string, payload: tx.payload.array,
                        height: context.height.load(ordering: .relaxed), state: &view
                    ).map { Optional($0) }
                }
            },
            begin_block: { userData, _, block in
                guard let userData, let block else { return MN_ERR_INVALID_ARGUMENT }
                Unmanaged<Context>.fromOpaque(userData).takeUnretainedValue().height
                    .store(block.pointee.height, ordering: .relaxed)
                return MN_OK
            },
            end_block: nil,
            query: { userData, state, path, request in
                guard let userData, let state else { return MN_ERR_INVALID_ARGUMENT }
                let context = Unmanaged<Context>.fromOpaque(userData).takeUnretainedValue()
                let view = StateView(api: context.api, state: state)
                switch ReceiptLedgerModule.query(path: path.string, data: request.array, state: view) {
                case .success(let answer):
                    answer.withMNBytes { context.api.pointee.answer(state, $0) }
                    return MN_OK
                case .failure(let refusal):
                    refusal.message.withMNBytes { context.api.pointee.reject(state, $0) }
                    return MN_ERR_NOT_FOUND
                }
            },
            init_chain: nil,
            charge_fee: nil,
            flags: 0))
        return UnsafePointer(module)
    }

    /// Runs a handler over the call's state: its event (if any) is emitted, a refusal is rejected with its reason.
    static func run(_ userData: UnsafeMutableRawPointer?, _ state: OpaquePointer?,
                    _ body: (Context, inout StateView) -> Result<[UInt8]?, DockLockError>) -> mn_status {
        guard let userData, let state else { return MN_ERR_INVALID_ARGUMENT }
        let context = Unmanaged<Context>.fromOpaque(userData).takeUnretainedValue()
        let api = context.api
        var view = StateView(api: api, state: state)
        switch body(context, &view) {
        case .success(let event):
            if let failure = view.failure { return failure }
            if let event {
                let status = ReceiptLedgerModule.eventType.withMNBytes { type in
                    event.withMNBytes { api.pointee.emit_event(state, type, $0) }
                }
                guard status == MN_OK else { return status }
            }
            return MN_OK
        case .failure(let refusal):
            refusal.message.withMNBytes { api.pointee.reject(state, $0) }
            return refusal.code == .exists ? MN_ERR_EXISTS : MN_ERR_DENIED
        }
    }
}

typealias StateView = LedgerStateView
extension LedgerStateView: ReceiptLedgerState {
    public mutating func put(_ key: [UInt8], _ value: [UInt8]) { put(key, Optional(value)) }
}
