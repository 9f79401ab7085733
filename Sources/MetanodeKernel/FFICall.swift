import CMetanodeShim
import Foundation
import MetanodeCore
import MetanodeHostBridge

/// Calls a plugin's exported C function through libffi. Arguments were checked against the manifest's prototype;
/// strings and byte buffers are copied into memory that lives exactly as long as the call.
enum FFICall {
    static func kind(_ type: CType) -> Int32 {
        switch type {
        case .void: MN_FFI_VOID
        case .int32: MN_FFI_I32
        case .int64: MN_FFI_I64
        case .uint32: MN_FFI_U32
        case .uint64: MN_FFI_U64
        case .double: MN_FFI_F64
        case .cString: MN_FFI_CSTR
        case .bytes: MN_FFI_BYTES
        }
    }

    static func invoke(_ address: UnsafeMutableRawPointer, prototype: CPrototype, arguments: [FFIArgument],
                       instance: PluginInstance) throws(MetanodeError) -> FFIResult {
        precondition(arguments.count == prototype.parameters.count && arguments.count <= Int(MN_FFI_ARGS_MAX))
        var kinds = prototype.parameters.map { kind($0.type) }
        var values = [mn_ffi_value](repeating: mn_ffi_value(), count: max(arguments.count, 1))
        var allocations: [UnsafeMutableRawPointer] = []
        defer { allocations.forEach { free($0) } }
        for (index, argument) in arguments.enumerated() {
            switch argument {
            case .int32(let value): values[index].i32 = value
            case .int64(let value): values[index].i64 = value
            case .uint32(let value): values[index].u32 = value
            case .uint64(let value): values[index].u64 = value
            case .double(let value): values[index].f64 = value
            case .string(let text):
                let copy = strdup(text)!
                allocations.append(UnsafeMutableRawPointer(copy))
                values[index].cstr = UnsafePointer(copy)
            case .bytes(let bytes):
                let copy = malloc(max(bytes.count, 1))!
                bytes.withUnsafeBytes { if $0.count > 0 { copy.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                allocations.append(copy)
                values[index].bytes.ptr = UnsafePointer(copy.assumingMemoryBound(to: UInt8.self))
                values[index].bytes.len = bytes.count
            }
        }
        var result = mn_ffi_value()
        let resultKind = kind(prototype.returnType)
        let status = instance.callExported {
            mn_ffi_call(address, resultKind, Int32(arguments.count), &kinds, &values, &result)
        }
        guard status == 0 else {
            throw MetanodeError(.internal, "libffi could not call \(prototype.symbol) (status \(status))")
        }
        switch prototype.returnType {
        case .void: return .void
        case .int32: return .int32(result.i32)
        case .int64: return .int64(result.i64)
        case .uint32: return .uint32(result.u32)
        case .uint64: return .uint64(result.u64)
        case .double: return .double(result.f64)
        case .cString:
            guard let text = result.cstr else {
                throw MetanodeError(.internal, "\(prototype.symbol) returned NULL where its prototype promises a string")
            }
            return .string(String(cString: text))
        case .bytes:
            throw MetanodeError(.internal, "\(prototype.symbol) cannot return mn_bytes")
        }
    }
}
