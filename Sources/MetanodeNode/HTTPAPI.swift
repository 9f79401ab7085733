import Foundation
import HTTPTypes
import Hummingbird
import MetanodeABI
import MetanodeCore
import MetanodeHostBridge
import MetanodeKernel
import NIOCore
import ServiceLifecycle

/// The node's HTTP API. Kernel routes are listed in OpenAPIDocument; everything else under /v1/plugins/NAME/ belongs
/// to that plugin.
enum HTTPAPI {
    static let pluginPrefix = "/v1/plugins/"

    /// One SSE event: the payload as its data line when it is one line of UTF-8, else base64 under event "base64".
    static func serverSentEvent(_ payload: [UInt8]) -> String {
        if let text = String(validating: payload, as: UTF8.self), !text.contains("\n"), !text.contains("\r") {
            return "data: \(text)\n\n"
        }
        return "event: base64\ndata: \(Data(payload).base64EncodedString())\n\n"
    }

    static func router(state: NodeState) -> Router<BasicRequestContext> {
        let router = Router()

        router.get("/healthz") { _, _ -> Response in
            state.isReady ? text(.ok, "ok\n") : text(.serviceUnavailable, "starting\n")
        }

        router.get("/v1/node") { _, _ -> Response in
            let runtimes = state.kernel.runtimes
            let running = runtimes.filter { $0.status == .running }.count
            return json(.ok, .object([
                "name": .string(state.config.nodeName),
                "nodeKey": .string(state.nodeKey.base64),
                "nodeKeyId": .string(state.nodeKey.keyIDHex),
                "nodePublicKeyHex": .string(state.nodeKey.key.hex),
                "abi": .string("\(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR)"),
                "version": .string(MetanodeVersion.current),
                "dev": .bool(state.config.dev),
                "safeMode": .bool(state.safeMode),
                "ready": .bool(state.isReady),
                "uptimeMs": .int(Int64(Date().timeIntervalSince(state.startedAt) * 1000)),
                "dataDir": .string(state.data.root),
                "plugins": .object([
                    "running": .int(Int64(running)),
                    "notRunning": .int(Int64(runtimes.count - running + state.notStarted.count)),
                ]),
            ]))
        }

        router.get("/v1/plugins") { _, _ -> Response in
            json(.ok, .array(pluginStatuses(state)))
        }

        router.get("/v1/plugins/:name") { _, context -> Response in
            let name = context.parameters.get("name") ?? ""
            guard let status = pluginStatuses(state).first(where: { $0["name"]?.stringValue == name }) else {
                return errorResponse(MetanodeError(.notFound, "no plugin named '\(name)' on this node"))
            }
            return json(.ok, status)
        }

        router.post("/v1/plugins/:name/call/:function") { request, context -> Response in
            let name = context.parameters.get("name") ?? ""
            let function = context.parameters.get("function") ?? ""
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: Int(MN_HTTP_BODY_LEN_MAX))
            } catch {
                return errorResponse(MetanodeError(.limitExceeded, "request body is over \(MN_HTTP_BODY_LEN_MAX) bytes"))
            }
            do throws(MetanodeError) {
                let arguments = try callArguments(Array(buffer: body))
                let result = try await state.kernel.call(plugin: name, function: function, arguments: arguments)
                return json(.ok, .object(["result": result.jsonValue]))
            } catch {
                return errorResponse(error)
            }
        }

        router.get("/v1/net/peers") { _, _ -> Response in
            let peers = state.kernel.peerTransport?.peerStatus() ?? []
            return json(.ok, .array(peers.map(peerJSON)))
        }

        router.get("/v1/net") { _, _ -> Response in
            guard let transport = state.kernel.peerTransport else {
                return json(.ok, .object(["enabled": .bool(false)]))
            }
            let peers = transport.peerStatus()
            return json(.ok, .object([
                "enabled": .bool(true), "nodeKey": .string(transport.localID.hex),
                "listen": (state.config.net?.listen?.description).map(JSONValue.string) ?? .null,
                "peers": .int(Int64(peers.count)),
                "connected": .int(Int64(peers.filter { $0.state == .connected }.count)),
            ]))
        }

        // Server-sent events: every message plugin :plugin publishes on bus topic "<plugin>.stream.<stream>", as one
        // event each (the payload as the data line if it is one line of UTF-8, else base64 in a "base64" event).
        router.get("/v1/streams/:plugin/:stream") { _, context -> Response in
            let plugin = context.parameters.get("plugin") ?? "", name = context.parameters.get("stream") ?? ""
            guard state.kernel.runtime(named: plugin) != nil else {
                return errorResponse(MetanodeError(.notFound, "no plugin named '\(plugin)' on this node"))
            }
            let (events, stop) = state.kernel.stream(plugin: plugin, name: name)
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-cache"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await writer.write(ByteBuffer(string: ": \(plugin) \(name)\n\n"))
                // Ends when the node shuts down (the stream would otherwise hold the HTTP server open) or when a
                // write fails because the client went away (the kernel sends an empty keepalive now and then).
                try await withGracefulShutdownHandler {
                    for await payload in events {
                        try await writer.write(ByteBuffer(string: payload.isEmpty ? ": keepalive\n\n"
                                                                                   : serverSentEvent(payload)))
                    }
                } onGracefulShutdown: {
                    stop()
                }
                try? await writer.finish(nil)
            })
        }

        router.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: state.kernel.metricsText())))
        }

        router.get("/openapi.json") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }

        for method in [HTTPRequest.Method.get, .post, .put, .delete, .patch, .head, .options] {
            router.on("/v1/plugins/:name/**", method: method) { request, context -> Response in
                await dispatchToPlugin(request, context: context, state: state)
            }
        }
        return router
    }

    static func dispatchToPlugin(_ request: Request, context: BasicRequestContext, state: NodeState) async -> Response {
        let name = context.parameters.get("name") ?? ""
        // The path after /v1/plugins/NAME exactly as received: trailing slashes and empty segments are the plugin's.
        let prefix = pluginPrefix + name
        let raw = request.uri.path
        let path = raw.hasPrefix(prefix) && raw.count > prefix.count ? String(raw.dropFirst(prefix.count))
            : "/" + context.parameters.getCatchAll().joined(separator: "/")
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Int(MN_HTTP_BODY_LEN_MAX))
        } catch {
            return text(.contentTooLarge, "request body is over \(MN_HTTP_BODY_LEN_MAX) bytes\n")
        }
        let parts = HTTPRequestParts(
            method: request.method.rawValue, path: path, query: request.uri.query ?? "",
            headers: request.headers.map { ($0.name.canonicalName, $0.value) }, body: Array(buffer: body))
        let answer = await state.kernel.handleHTTP(plugin: name, request: parts)
        var headers = HTTPFields()
        headers[.contentType] = answer.contentType
        for (name, value) in answer.headers {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        return Response(status: .init(code: Int(answer.status)), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// `[args…]` or `{"args": [args…]}` (JSON values), or `{"argv": ["…"]}` (command-line strings, as the CLI sends).
    static func callArguments(_ body: [UInt8]) throws(MetanodeError) -> Kernel.CallArguments {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) { return .json([]) }
        let value = try JSONValue.parse(body)
        if let array = value.arrayValue { return .json(array) }
        if let array = value["args"]?.arrayValue { return .json(array) }
        if let argv = value["argv"]?.arrayValue {
            let strings = argv.compactMap(\.stringValue)
            guard strings.count == argv.count else {
                throw MetanodeError(.invalidArgument, "\"argv\" must be an array of strings")
            }
            return .commandLine(strings)
        }
        throw MetanodeError(.invalidArgument,
                            "the body must be a JSON array of arguments, {\"args\": [...]} or {\"argv\": [\"...\"]}")
    }

    static func peerJSON(_ peer: PeerStatus) -> JSONValue {
        var object: [String: JSONValue] = [
            "key": .string(peer.id.hex), "address": .string(peer.address), "state": .string(peer.state.rawValue),
            "messagesSent": .int(Int64(clamping: peer.messagesSent)), "messagesReceived": .int(Int64(clamping: peer.messagesReceived)),
            "bytesSent": .int(Int64(clamping: peer.bytesSent)), "bytesReceived": .int(Int64(clamping: peer.bytesReceived)),
            "queuedMessages": .int(Int64(peer.queuedMessages)), "droppedMessages": .int(Int64(clamping: peer.droppedMessages)),
        ]
        if let rtt = peer.rttMicros { object["rttMicros"] = .int(Int64(rtt)) }
        if let error = peer.lastError { object["lastError"] = .string(error) }
        return .object(object)
    }

    static func pluginStatuses(_ state: NodeState) -> [JSONValue] {
        var statuses: [JSONValue] = state.kernel.runtimes.map { runtime in
            var object: [String: JSONValue] = [
                "name": .string(runtime.name), "version": .string(runtime.version.description),
                "status": .string(runtime.status.name), "bundled": .bool(runtime.bundled),
                "grants": .array(runtime.grants.nameList.map(JSONValue.string)),
                "exports": .array(runtime.package.manifest.exports.map { .string($0.name) }),
            ]
            if let reason = runtime.status.reason { object["reason"] = .string(reason) }
            return .object(object)
        }
        for (name, error) in state.notStarted.sorted(by: { $0.key < $1.key }) {
            statuses.append(.object([
                "name": .string(name), "status": .string(error.code == .quarantined ? "quarantined" : "not started"),
                "reason": .string(error.message),
            ]))
        }
        return statuses
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: value.serializedBytes(pretty: false) + [0x0a])))
    }

    /// Errors as {"error": {"code": …, "message": …}} with a status that fits the code.
    static func errorResponse(_ error: MetanodeError) -> Response {
        let status: HTTPResponse.Status = switch error.code {
        case .notFound: .notFound
        case .invalidArgument, .invalidJSON, .invalidConfig, .invalidVersion: .badRequest
        case .limitExceeded: .contentTooLarge
        case .stopped: .serviceUnavailable
        case .denied: .forbidden
        case .timeout: .gatewayTimeout
        default: .internalServerError
        }
        return json(status, .object(["error": .object([
            "code": .string(error.code.description), "message": .string(error.message),
        ])]))
    }
}

public enum MetanodeVersion {
    public static let current = "0.1.0"
}
