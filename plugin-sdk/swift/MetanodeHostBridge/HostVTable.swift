import MetanodeABI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds one plugin's `mn_host_api`: granted capabilities point at the serving functions below, the others at
/// functions that answer MN_ERR_DENIED (and tell the backend, which logs it).
enum HostVTable {
    static func make(grants: HostCapabilities) -> UnsafeMutablePointer<mn_host_api> {
        let table = UnsafeMutablePointer<mn_host_api>.allocate(capacity: 1)  // lives as long as the process
        table.initialize(to: mn_host_api())
        table.pointee.struct_size = UInt32(MemoryLayout<mn_host_api>.size)
        table.pointee.abi_major = UInt16(MN_ABI_VERSION_MAJOR)
        table.pointee.abi_minor = UInt16(MN_ABI_VERSION_MINOR)
        installAlways(table)
        if grants.contains(.kv) { installKV(table) } else { denyKV(table) }
        if grants.contains(.crypto) { installCrypto(table) } else { denyCrypto(table) }
        if grants.contains(.sign) { installSign(table) } else { denySign(table) }
        if grants.contains(.bus) { installBus(table) } else { denyBus(table) }
        if grants.contains(.timer) { installTimer(table) } else { denyTimer(table) }
        if grants.contains(.http) { installHTTP(table) } else { denyHTTP(table) }
        if grants.contains(.service) { installService(table) } else { denyService(table) }
        if grants.contains(.metrics) { installMetrics(table) } else { denyMetrics(table) }
        if grants.contains(.net) { installNet(table) } else { denyNet(table) }
        return table
    }

    // MARK: Always available

    private static func installAlways(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.log = { ctx, level, message in
            guard let context = PluginHostContext.resolve(ctx), !context.isStopped else { return }
            guard let view = try? Validate.bytes(message, "message") else { return }
            let cut = UnsafeRawBufferPointer(rebasing: view.prefix(Int(MN_LOG_MESSAGE_LEN_MAX)))
            let level = min(max(level, MN_LOG_TRACE), MN_LOG_ERROR)
            context.backend.log(context, level: level, message: String(decoding: cut, as: UTF8.self))
        }
        t.pointee.last_error = { ctx, out in
            guard let context = PluginHostContext.resolve(ctx), let out else { return MN_ERR_INVALID_ARGUMENT }
            guard let message = LastError.get(context) else { return MN_ERR_NOT_FOUND }
            out.pointee = message
            return MN_OK
        }
        t.pointee.buf_free = { _, buf in
            // Every mn_buf the host hands out comes from malloc (RocksDB's values included).
            free(buf.ptr)
        }
        t.pointee.config_get = { ctx, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let out else { throw .invalid("out_json is NULL") }
                out.pointee = Buffers.malloced(context.backend.config(context))
            }
        }
        t.pointee.clock_unix_ms = { ctx in
            PluginHostContext.resolve(ctx)?.backend.clockUnixMs() ?? 0
        }
        t.pointee.clock_monotonic_ns = { ctx in
            PluginHostContext.resolve(ctx)?.backend.clockMonotonicNs() ?? 0
        }
    }

    // MARK: kv

    private static func installKV(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.kv_get = { ctx, key, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let key = try Validate.key(key)
                guard let out else { throw .invalid("out_value is NULL") }
                guard let value = try context.backend.kvGet(context, key: key, snapshot: nil) else {
                    throw .notFound("key not found")
                }
                out.pointee = value
            }
        }
        t.pointee.kv_put = { ctx, key, value in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                try context.backend.kvPut(context, key: Validate.key(key), value: Validate.value(value))
            }
        }
        t.pointee.kv_delete = { ctx, key in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                try context.backend.kvDelete(context, key: Validate.key(key))
            }
        }
        t.pointee.kv_batch_begin = { ctx, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let out else { throw .invalid("out_batch is NULL") }
                let batch = try context.backend.kvBatchBegin(context)
                let handle = context.handles.withLock { table -> UInt in
                    let handle = table.allocate()
                    table.batches[handle] = BatchState(object: batch)
                    return handle
                }
                out.pointee = OpaquePointer(bitPattern: handle)
            }
        }
        t.pointee.kv_batch_put = { ctx, batch, key, value in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let key = try Validate.key(key)
                let value = try Validate.value(value)
                let object = try context.reserveBatch(batch, bytes: key.count + value.count)
                try context.backend.kvBatchPut(context, batch: object, key: key, value: value)
            }
        }
        t.pointee.kv_batch_delete = { ctx, batch, key in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let key = try Validate.key(key)
                let object = try context.reserveBatch(batch, bytes: key.count)
                try context.backend.kvBatchDelete(context, batch: object, key: key)
            }
        }
        t.pointee.kv_batch_commit = { ctx, batch in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let state = context.takeBatch(batch) else { throw .invalid("not a live batch handle") }
                try context.backend.kvBatchCommit(context, batch: state.object)
            }
        }
        t.pointee.kv_batch_discard = { ctx, batch in
            guard let context = PluginHostContext.resolve(ctx) else { return }
            _ = context.takeBatch(batch)
        }
        t.pointee.kv_snapshot_open = { ctx, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let out else { throw .invalid("out_snapshot is NULL") }
                // Reserve the slot first so concurrent opens cannot pass the limit together.
                let reserved = context.handles.withLock { table -> UInt? in
                    guard table.snapshots.count + table.snapshotsOpening < Int(MN_KV_SNAPSHOTS_MAX) else { return nil }
                    table.snapshotsOpening += 1
                    return table.allocate()
                }
                guard let handle = reserved else {
                    throw HostError(MN_ERR_LIMIT, "\(MN_KV_SNAPSHOTS_MAX) snapshots are open, the limit — release "
                        + "some with kv_snapshot_release")
                }
                let snapshot: AnyObject
                do throws(HostError) {
                    snapshot = try context.backend.kvSnapshotOpen(context)
                } catch {
                    context.handles.withLock { $0.snapshotsOpening -= 1 }
                    throw error
                }
                context.handles.withLock { table in
                    table.snapshotsOpening -= 1
                    table.snapshots[handle] = snapshot
                }
                out.pointee = OpaquePointer(bitPattern: handle)
            }
        }
        t.pointee.kv_snapshot_get = { ctx, snapshot, key, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let key = try Validate.key(key)
                guard let out else { throw .invalid("out_value is NULL") }
                guard let object = context.snapshot(snapshot) else { throw .invalid("not a live snapshot handle") }
                guard let value = try context.backend.kvGet(context, key: key, snapshot: object) else {
                    throw .notFound("key not found")
                }
                out.pointee = value
            }
        }
        t.pointee.kv_snapshot_release = { ctx, snapshot in
            guard let context = PluginHostContext.resolve(ctx) else { return }
            let handle = UInt(bitPattern: snapshot)
            if let object = context.handles.withLock({ $0.snapshots.removeValue(forKey: handle) }) {
                context.backend.kvSnapshotRelease(context, snapshot: object)
            }
        }
        t.pointee.kv_scan_prefix = { ctx, snapshot, prefix, start, visit, userData in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let prefix = try Validate.bytes(prefix, "prefix", max: MN_KV_KEY_LEN_MAX)
                let start = try Validate.bytes(start, "start", max: MN_KV_KEY_LEN_MAX)
                guard let visit else { throw .invalid("visit is NULL") }
                var object: AnyObject?
                if let snapshot {
                    guard let found = context.snapshot(snapshot) else { throw .invalid("not a live snapshot handle") }
                    object = found
                }
                try context.backend.kvScan(context, snapshot: object, prefix: prefix, start: start) { key, value in
                    visit(userData, Buffers.view(key), Buffers.view(value)) == 0
                }
            }
        }
    }

    private static func denyKV(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.kv_get = { ctx, _, _ in PluginHostContext.deny(ctx, "kv_get", "kv") }
        t.pointee.kv_put = { ctx, _, _ in PluginHostContext.deny(ctx, "kv_put", "kv") }
        t.pointee.kv_delete = { ctx, _ in PluginHostContext.deny(ctx, "kv_delete", "kv") }
        t.pointee.kv_batch_begin = { ctx, _ in PluginHostContext.deny(ctx, "kv_batch_begin", "kv") }
        t.pointee.kv_batch_put = { ctx, _, _, _ in PluginHostContext.deny(ctx, "kv_batch_put", "kv") }
        t.pointee.kv_batch_delete = { ctx, _, _ in PluginHostContext.deny(ctx, "kv_batch_delete", "kv") }
        t.pointee.kv_batch_commit = { ctx, _ in PluginHostContext.deny(ctx, "kv_batch_commit", "kv") }
        t.pointee.kv_batch_discard = { ctx, _ in _ = PluginHostContext.deny(ctx, "kv_batch_discard", "kv") }
        t.pointee.kv_snapshot_open = { ctx, _ in PluginHostContext.deny(ctx, "kv_snapshot_open", "kv") }
        t.pointee.kv_snapshot_get = { ctx, _, _, _ in PluginHostContext.deny(ctx, "kv_snapshot_get", "kv") }
        t.pointee.kv_snapshot_release = { ctx, _ in _ = PluginHostContext.deny(ctx, "kv_snapshot_release", "kv") }
        t.pointee.kv_scan_prefix = { ctx, _, _, _, _, _ in PluginHostContext.deny(ctx, "kv_scan_prefix", "kv") }
    }

    // MARK: crypto

    private static func installCrypto(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.hash_blake2b256 = { ctx, data, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let data = try Validate.bytes(data, "data")
                guard let out else { throw .invalid("out_hash is NULL") }
                context.backend.hashBlake2b256(data, into: out)
            }
        }
        t.pointee.hash_sha256 = { ctx, data, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let data = try Validate.bytes(data, "data")
                guard let out else { throw .invalid("out_hash is NULL") }
                context.backend.hashSHA256(data, into: out)
            }
        }
        t.pointee.ed25519_verify = { ctx, publicKey, message, signature in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let publicKey, let signature else { throw .invalid("public_key or signature is NULL") }
                let message = try Validate.bytes(message, "message")
                let valid = context.backend.ed25519Verify(
                    publicKey: UnsafeRawBufferPointer(start: publicKey, count: 32), message: message,
                    signature: UnsafeRawBufferPointer(start: signature, count: 64))
                guard valid else { throw HostError(MN_ERR_BAD_SIGNATURE, "signature does not verify") }
            }
        }
        t.pointee.random_bytes = { ctx, out, length in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard length <= Int(MN_RANDOM_LEN_MAX) else {
                    throw .tooLarge("random_bytes request", length, max: MN_RANDOM_LEN_MAX)
                }
                guard length == 0 || out != nil else { throw .invalid("out is NULL") }
                context.backend.randomBytes(into: UnsafeMutableRawBufferPointer(start: out, count: length))
            }
        }
        t.pointee.ed25519_verify_scoped = { ctx, publicKey, signer, message, signature in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let publicKey, let signature else { throw .invalid("public_key or signature is NULL") }
                let signer = try Validate.string(signer, "signer_plugin", max: MN_PLUGIN_NAME_LEN_MAX)
                let message = try Validate.bytes(message, "message")
                let scoped = Signing.scopedMessage(plugin: signer.isEmpty ? context.nameUTF8 : Array(signer.utf8),
                                                   message: message)
                let valid = scoped.withUnsafeBytes { bytes in
                    context.backend.ed25519Verify(
                        publicKey: UnsafeRawBufferPointer(start: publicKey, count: 32), message: bytes,
                        signature: UnsafeRawBufferPointer(start: signature, count: 64))
                }
                guard valid else { throw HostError(MN_ERR_BAD_SIGNATURE, "signature does not verify") }
            }
        }
    }

    private static func denyCrypto(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.hash_blake2b256 = { ctx, _, _ in PluginHostContext.deny(ctx, "hash_blake2b256", "crypto") }
        t.pointee.hash_sha256 = { ctx, _, _ in PluginHostContext.deny(ctx, "hash_sha256", "crypto") }
        t.pointee.ed25519_verify = { ctx, _, _, _ in PluginHostContext.deny(ctx, "ed25519_verify", "crypto") }
        t.pointee.random_bytes = { ctx, _, _ in PluginHostContext.deny(ctx, "random_bytes", "crypto") }
        t.pointee.ed25519_verify_scoped = { ctx, _, _, _, _ in
            PluginHostContext.deny(ctx, "ed25519_verify_scoped", "crypto")
        }
    }

    // MARK: sign

    private static func installSign(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.ed25519_public_key = { ctx, keyID, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let keyID = try Validate.keyID(keyID)
                guard let out else { throw .invalid("out_public_key is NULL") }
                let key = try context.backend.ed25519PublicKey(context, keyID: keyID)
                precondition(key.count == 32, "backend returned a \(key.count)-byte Ed25519 public key")
                key.withUnsafeBytes { out.initialize(from: $0.bindMemory(to: UInt8.self).baseAddress!, count: 32) }
            }
        }
        t.pointee.ed25519_sign = { ctx, keyID, message, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let keyID = try Validate.keyID(keyID)
                let message = try Validate.bytes(message, "message")
                guard let out else { throw .invalid("out_signature is NULL") }
                let scoped = Signing.scopedMessage(plugin: context.nameUTF8, message: message)
                let result: Result<Void, HostError> = scoped.withUnsafeBytes { bytes in
                    Result { () throws(HostError) in
                        try context.backend.ed25519Sign(context, keyID: keyID, message: bytes, into: out)
                    }
                }
                try result.get()
            }
        }
    }

    private static func denySign(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.ed25519_public_key = { ctx, _, _ in PluginHostContext.deny(ctx, "ed25519_public_key", "sign") }
        t.pointee.ed25519_sign = { ctx, _, _, _ in PluginHostContext.deny(ctx, "ed25519_sign", "sign") }
    }

    // MARK: bus

    private static func installBus(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.bus_subscribe = { ctx, topic, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let topic = try Validate.topic(topic, allowWildcard: true)
                guard let out else { throw .invalid("out_subscription is NULL") }
                out.pointee = try context.backend.busSubscribe(context, topic: topic)
            }
        }
        t.pointee.bus_unsubscribe = { ctx, subscription in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                try context.backend.busUnsubscribe(context, subscription: subscription)
            }
        }
        t.pointee.bus_publish = { ctx, topic, payload, outDelivered in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let topic = try Validate.topic(topic, allowWildcard: false)
                let payload = try Validate.bytes(payload, "payload", max: MN_BUS_PAYLOAD_LEN_MAX)
                let delivered = try context.backend.busPublish(context, topic: topic, payload: payload)
                outDelivered?.pointee = delivered
            }
        }
        // ABI 1.3
        t.pointee.bus_listeners = { ctx, topic, outCount in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let topic = try Validate.topic(topic, allowWildcard: false)
                guard let outCount else { throw .invalid("out_count is NULL") }
                outCount.pointee = try context.backend.busListeners(context, topic: topic)
            }
        }
        t.pointee.bus_request = { ctx, topic, payload, timeoutMs, onReply, userData in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let topic = try Validate.topic(topic, allowWildcard: false)
                let payload = try Validate.bytes(payload, "payload", max: MN_BUS_PAYLOAD_LEN_MAX)
                guard let onReply else { throw .invalid("on_reply is NULL") }
                guard timeoutMs >= 1, timeoutMs <= MN_BUS_REQUEST_TIMEOUT_MS_MAX else {
                    throw .invalid("timeout_ms is \(timeoutMs); it must be 1...\(MN_BUS_REQUEST_TIMEOUT_MS_MAX)")
                }
                try context.backend.busRequest(
                    context, topic: topic, payload: payload, timeoutMs: timeoutMs,
                    reply: BusReplyCallback(function: onReply, userData: userData))
            }
        }
        t.pointee.bus_reply = { ctx, token, payload in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let payload = try Validate.bytes(payload, "payload", max: MN_BUS_PAYLOAD_LEN_MAX)
                guard token != 0 else { throw .invalid("reply_token is 0: the message was not a request") }
                try context.backend.busReply(context, token: token, payload: payload)
            }
        }
    }

    private static func denyBus(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.bus_subscribe = { ctx, _, _ in PluginHostContext.deny(ctx, "bus_subscribe", "bus") }
        t.pointee.bus_unsubscribe = { ctx, _ in PluginHostContext.deny(ctx, "bus_unsubscribe", "bus") }
        t.pointee.bus_publish = { ctx, _, _, _ in PluginHostContext.deny(ctx, "bus_publish", "bus") }
        t.pointee.bus_listeners = { ctx, _, _ in PluginHostContext.deny(ctx, "bus_listeners", "bus") }
        t.pointee.bus_request = { ctx, _, _, _, _, _ in PluginHostContext.deny(ctx, "bus_request", "bus") }
        t.pointee.bus_reply = { ctx, _, _ in PluginHostContext.deny(ctx, "bus_reply", "bus") }
    }

    // MARK: timer

    private static func installTimer(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.timer_start = { ctx, delayMs, intervalMs, function, userData, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let function else { throw .invalid("fn is NULL") }
                guard delayMs <= UInt64(MN_TIMER_DELAY_MS_MAX), intervalMs <= UInt64(MN_TIMER_DELAY_MS_MAX) else {
                    throw .invalid("timer delay \(delayMs) ms / interval \(intervalMs) ms is over the limit of "
                        + "\(MN_TIMER_DELAY_MS_MAX) ms")
                }
                let id = try context.backend.timerStart(
                    context, delayMs: delayMs, intervalMs: intervalMs,
                    callback: TimerCallback(function: function, userData: userData))
                out?.pointee = id
            }
        }
        t.pointee.timer_cancel = { ctx, timer in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                try context.backend.timerCancel(context, timer: timer)
            }
        }
    }

    private static func denyTimer(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.timer_start = { ctx, _, _, _, _, _ in PluginHostContext.deny(ctx, "timer_start", "timer") }
        t.pointee.timer_cancel = { ctx, _ in PluginHostContext.deny(ctx, "timer_cancel", "timer") }
    }

    // MARK: http

    private static func installHTTP(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.http_route = { ctx, method, path, handler, userData in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let method = try Validate.httpMethod(method)
                let path = try Validate.routePath(path)
                guard let handler else { throw .invalid("handler is NULL") }
                try context.backend.httpRoute(
                    context, method: method, path: path, handler: HTTPHandler(function: handler, userData: userData))
            }
        }
        t.pointee.http_request_header = { ctx, request, name, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let request, let out else { throw .invalid("request or out_value is NULL") }
                let name = try Validate.string(name, "name", max: 256).lowercased()
                // Look the request up instead of trusting the pointer: a request kept past its handler is stale.
                let key = UInt(bitPattern: request.pointee.host_private)
                guard let headers = context.handles.withLock({ $0.requests[key] }) else {
                    throw .invalid("not a live request (requests are valid only inside their handler)")
                }
                guard let value = headers.lowercasedHeaders[name] else { throw .notFound("no header '\(name)'") }
                out.pointee = Buffers.view(value)
            }
        }
        t.pointee.http_response_set = { ctx, response, status, contentType, body in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard (100...599).contains(status) else { throw .invalid("HTTP status \(status) is not 100...599") }
                let contentType = try Validate.headerValue(contentType, "content_type")
                let body = try Validate.bytes(body, "body", max: MN_HTTP_BODY_LEN_MAX)
                guard let box = context.response(response) else {
                    throw .invalid("not a live response handle (responses are valid only inside their handler)")
                }
                if let deferral = box.deferral {
                    throw .invalid("this response was deferred (id \(deferral.id)); answer it with "
                        + "http_deferred_respond")
                }
                box.response = HTTPResponseParts(status: status, contentType: contentType, body: Array(body))
            }
        }
        t.pointee.http_response_header = { ctx, response, name, value in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let name = try Validate.headerName(name)
                let value = try Validate.headerValue(value, "value")
                guard let box = context.response(response) else {
                    throw .invalid("not a live response handle (responses are valid only inside their handler)")
                }
                guard box.extraHeaders.count < 64 else { throw HostError(MN_ERR_LIMIT, "at most 64 response headers") }
                box.extraHeaders.append((name, value))
            }
        }
        // ABI 1.2
        t.pointee.http_response_defer = { ctx, response, timeoutMs, outID in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let outID else { throw .invalid("out_id is NULL") }
                guard timeoutMs >= 1, timeoutMs <= MN_HTTP_DEFER_TIMEOUT_MS_MAX else {
                    throw .invalid("timeout_ms is \(timeoutMs); it must be 1...\(MN_HTTP_DEFER_TIMEOUT_MS_MAX)")
                }
                guard let box = context.response(response) else {
                    throw .invalid("not a live response handle (a response is deferred inside its handler)")
                }
                outID.pointee = try context.openDeferral(box, timeoutMs: timeoutMs).id
            }
        }
        t.pointee.http_deferred_respond = { ctx, id, status, contentType, body in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard (100...599).contains(status) else { throw .invalid("HTTP status \(status) is not 100...599") }
                let contentType = try Validate.headerValue(contentType, "content_type")
                let body = try Validate.bytes(body, "body", max: MN_HTTP_BODY_LEN_MAX)
                try context.answerDeferral(
                    id, HTTPResponseParts(status: status, contentType: contentType, body: Array(body)))
            }
        }
    }

    private static func denyHTTP(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.http_route = { ctx, _, _, _, _ in PluginHostContext.deny(ctx, "http_route", "http") }
        t.pointee.http_request_header = { ctx, _, _, _ in PluginHostContext.deny(ctx, "http_request_header", "http") }
        t.pointee.http_response_set = { ctx, _, _, _, _ in PluginHostContext.deny(ctx, "http_response_set", "http") }
        t.pointee.http_response_header = { ctx, _, _, _ in
            PluginHostContext.deny(ctx, "http_response_header", "http")
        }
        t.pointee.http_response_defer = { ctx, _, _, _ in PluginHostContext.deny(ctx, "http_response_defer", "http") }
        t.pointee.http_deferred_respond = { ctx, _, _, _, _ in
            PluginHostContext.deny(ctx, "http_deferred_respond", "http")
        }
    }

    // MARK: service

    private static func installService(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.service_export = { ctx, name, major, minor, table, size in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let name = try Validate.serviceName(name)
                guard name.hasPrefix(context.name + ".") else {
                    throw .invalid("service name '\(name)' must start with '\(context.name).' (a plugin exports "
                        + "only in its own namespace)")
                }
                guard let table else { throw .invalid("table is NULL") }
                guard size >= 4, size <= Int(MN_SERVICE_TABLE_SIZE_MAX) else {
                    throw .invalid("table_size \(size) must be 4...\(MN_SERVICE_TABLE_SIZE_MAX)")
                }
                try context.backend.serviceExport(context, name: name, major: major, minor: minor, table: table,
                                                  size: size)
            }
        }
        t.pointee.service_lookup = { ctx, name, major, minMinor, outTable, outMinor, outSize in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let name = try Validate.serviceName(name)
                guard let outTable else { throw .invalid("out_table is NULL") }
                let found = try context.backend.serviceLookup(context, name: name, major: major, minMinor: minMinor)
                outTable.pointee = found.table
                outMinor?.pointee = found.minor
                outSize?.pointee = found.size
            }
        }
    }

    private static func denyService(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.service_export = { ctx, _, _, _, _, _ in PluginHostContext.deny(ctx, "service_export", "service") }
        t.pointee.service_lookup = { ctx, _, _, _, _, _, _ in
            PluginHostContext.deny(ctx, "service_lookup", "service")
        }
    }

    // MARK: metrics

    private static func installMetrics(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.metric_register = { ctx, kind, name, help, buckets, bucketCount, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let kind = MetricKind(rawValue: kind) else {
                    throw .invalid("metric kind \(kind) is not MN_METRIC_COUNTER, _GAUGE or _HISTOGRAM")
                }
                let name = try Validate.metricName(name)
                let help = try Validate.string(help, "help", max: 1024)
                guard let out else { throw .invalid("out_metric is NULL") }
                var bounds: [Double] = []
                if kind == .histogram {
                    guard bucketCount >= 1, bucketCount <= Int(MN_HISTOGRAM_BUCKETS_MAX), let buckets else {
                        throw .invalid("a histogram needs 1...\(MN_HISTOGRAM_BUCKETS_MAX) buckets")
                    }
                    bounds = Array(UnsafeBufferPointer(start: buckets, count: bucketCount))
                    guard bounds.allSatisfy(\.isFinite), zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 }) else {
                        throw .invalid("histogram buckets must be finite and strictly ascending")
                    }
                }
                out.pointee = try context.backend.metricRegister(context, kind: kind, name: name, help: help,
                                                                 buckets: bounds)
            }
        }
        t.pointee.metric_counter_add = { ctx, metric, delta in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                try context.backend.metricCounterAdd(context, metric: metric, delta: delta)
            }
        }
        t.pointee.metric_gauge_set = { ctx, metric, value in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard value.isFinite else { throw .invalid("gauge value must be finite") }
                try context.backend.metricGaugeSet(context, metric: metric, value: value)
            }
        }
        t.pointee.metric_histogram_observe = { ctx, metric, value in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard value.isFinite else { throw .invalid("observed value must be finite") }
                try context.backend.metricHistogramObserve(context, metric: metric, value: value)
            }
        }
    }

    private static func denyMetrics(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.metric_register = { ctx, _, _, _, _, _, _ in PluginHostContext.deny(ctx, "metric_register", "metrics") }
        t.pointee.metric_counter_add = { ctx, _, _ in PluginHostContext.deny(ctx, "metric_counter_add", "metrics") }
        t.pointee.metric_gauge_set = { ctx, _, _ in PluginHostContext.deny(ctx, "metric_gauge_set", "metrics") }
        t.pointee.metric_histogram_observe = { ctx, _, _ in
            PluginHostContext.deny(ctx, "metric_histogram_observe", "metrics")
        }
    }
}

extension HostVTable {
    // MARK: net (ABI 1.1)

    fileprivate static func installNet(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.net_register = { ctx, name, onReceive, userData in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let name = try Validate.netProtocol(name)
                guard let onReceive else { throw .invalid("on_receive is NULL") }
                try context.backend.netRegister(
                    context, protocol: name, callback: NetReceiveCallback(function: onReceive, userData: userData))
            }
        }
        t.pointee.net_send = { ctx, peer, name, message in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let peer else { throw .invalid("peer is NULL") }
                let name = try Validate.netProtocol(name)
                let message = try Validate.bytes(message, "message", max: MN_NET_MESSAGE_LEN_MAX)
                try context.backend.netSend(context, to: PeerID(pointer: peer), protocol: name, message: message)
            }
        }
        t.pointee.net_broadcast = { ctx, name, message, outSent in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                let name = try Validate.netProtocol(name)
                let message = try Validate.bytes(message, "message", max: MN_NET_MESSAGE_LEN_MAX)
                let sent = try context.backend.netBroadcast(context, protocol: name, message: message)
                outSent?.pointee = sent
            }
        }
        t.pointee.net_peers = { ctx, out, capacity, outCount in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let outCount else { throw .invalid("out_count is NULL") }
                guard capacity == 0 || out != nil else { throw .invalid("out is NULL with capacity \(capacity)") }
                let peers = try context.backend.netPeers(context)
                outCount.pointee = peers.count
                for (index, peer) in peers.prefix(capacity).enumerated() {
                    let element = out! + index
                    // Write no more than the plugin's own struct_size of each element (it may be an older, smaller struct).
                    let room = Int(element.pointee.struct_size)
                    var value = mn_net_peer()
                    value.struct_size = UInt32(MemoryLayout<mn_net_peer>.size)
                    withUnsafeMutableBytes(of: &value.public_key) { $0.copyBytes(from: peer.id.bytes) }
                    value.connected = peer.state == .connected ? 1 : 0
                    value.rtt_us = peer.rttMicros ?? 0
                    guard room >= MemoryLayout<UInt32>.size else {
                        throw .invalid("out[\(index)].struct_size is \(room); set it to sizeof(mn_net_peer)")
                    }
                    withUnsafeBytes(of: &value) { source in
                        UnsafeMutableRawPointer(element).copyMemory(
                            from: source.baseAddress!, byteCount: min(room, source.count))
                    }
                }
            }
        }
        t.pointee.net_watch_peers = { ctx, onEvent, userData in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let onEvent else { throw .invalid("on_event is NULL") }
                try context.backend.netWatchPeers(
                    context, callback: NetPeerEventCallback(function: onEvent, userData: userData))
            }
        }
        t.pointee.net_local_key = { ctx, out in
            PluginHostContext.serve(ctx) { context throws(HostError) in
                guard let out else { throw .invalid("out_public_key is NULL") }
                let key = try context.backend.netLocalKey(context)
                key.bytes.withUnsafeBufferPointer { out.initialize(from: $0.baseAddress!, count: 32) }
            }
        }
    }

    fileprivate static func denyNet(_ t: UnsafeMutablePointer<mn_host_api>) {
        t.pointee.net_register = { ctx, _, _, _ in PluginHostContext.deny(ctx, "net_register", "net") }
        t.pointee.net_send = { ctx, _, _, _ in PluginHostContext.deny(ctx, "net_send", "net") }
        t.pointee.net_broadcast = { ctx, _, _, _ in PluginHostContext.deny(ctx, "net_broadcast", "net") }
        t.pointee.net_peers = { ctx, _, _, _ in PluginHostContext.deny(ctx, "net_peers", "net") }
        t.pointee.net_watch_peers = { ctx, _, _ in PluginHostContext.deny(ctx, "net_watch_peers", "net") }
        t.pointee.net_local_key = { ctx, _ in PluginHostContext.deny(ctx, "net_local_key", "net") }
    }
}

// MARK: - Handle bookkeeping

extension PluginHostContext {
    /// Counts an operation against the batch's limits and returns the backend's batch object.
    func reserveBatch(_ handle: OpaquePointer?, bytes: Int) throws(HostError) -> AnyObject {
        let key = UInt(bitPattern: handle)
        let result: Result<AnyObject, HostError> = handles.withLock { table in
            guard var state = table.batches[key] else { return .failure(.invalid("not a live batch handle")) }
            guard state.operations < Int(MN_KV_BATCH_OPS_MAX) else {
                return .failure(HostError(MN_ERR_TOO_LARGE, "batch has \(state.operations) operations; the limit is "
                    + "\(MN_KV_BATCH_OPS_MAX)"))
            }
            guard state.bytes + bytes <= Int(MN_KV_BATCH_BYTES_MAX) else {
                return .failure(.tooLarge("batch", state.bytes + bytes, max: MN_KV_BATCH_BYTES_MAX))
            }
            state.operations += 1
            state.bytes += bytes
            table.batches[key] = state
            return .success(state.object)
        }
        return try result.get()
    }

    func takeBatch(_ handle: OpaquePointer?) -> BatchState? {
        handles.withLock { $0.batches.removeValue(forKey: UInt(bitPattern: handle)) }
    }

    func snapshot(_ handle: OpaquePointer?) -> AnyObject? {
        handles.withLock { $0.snapshots[UInt(bitPattern: handle)] }
    }

    func response(_ handle: OpaquePointer?) -> HTTPResponseBox? {
        handles.withLock { $0.responses[UInt(bitPattern: handle)] }
    }
}

/// Request headers, kept alive for the duration of a handler call (`host_private` is its handle). Values live in
/// memory this box owns so the views handed to the plugin stay put until the handler returns.
final class HTTPRequestBox {
    private(set) var lowercasedHeaders: [String: UnsafeRawBufferPointer] = [:]

    init(headers: [(name: String, value: String)]) {
        var joined: [String: [UInt8]] = [:]
        for (name, value) in headers {
            let key = name.lowercased()
            if let existing = joined[key] {
                joined[key] = existing + Array(", ".utf8) + Array(value.utf8)
            } else {
                joined[key] = Array(value.utf8)
            }
        }
        for (key, bytes) in joined {
            let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
            storage.copyBytes(from: bytes)
            lowercasedHeaders[key] = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage)[0..<bytes.count])
        }
    }

    deinit {
        for view in lowercasedHeaders.values { UnsafeMutableRawPointer(mutating: view.baseAddress)?.deallocate() }
    }
}

// MARK: - Signature scoping

/// The ABI's signature scoping rule (see ed25519_sign in plugin.h).
public enum Signing {
    public static let scopePrefix: [UInt8] = Array("metanode/plugin-sig/v1".utf8) + [0]

    /// "metanode/plugin-sig/v1" 0x00 <plugin name> 0x00 <message>
    public static func scopedMessage(plugin: [UInt8], message: UnsafeRawBufferPointer) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(scopePrefix.count + plugin.count + 1 + message.count)
        bytes += scopePrefix
        bytes += plugin
        bytes.append(0)
        bytes += message
        return bytes
    }
}

// MARK: - Buffers

enum Buffers {
    /// Copies into a malloc'd mn_buf (freed by buf_free).
    static func malloced(_ bytes: [UInt8]) -> mn_buf {
        guard !bytes.isEmpty, let memory = malloc(bytes.count) else { return mn_buf(ptr: nil, len: 0) }
        bytes.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        return mn_buf(ptr: memory.assumingMemoryBound(to: UInt8.self), len: bytes.count)
    }

    @inline(__always)
    static func view(_ bytes: UnsafeRawBufferPointer) -> mn_bytes {
        mn_bytes(ptr: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), len: bytes.count)
    }

}
