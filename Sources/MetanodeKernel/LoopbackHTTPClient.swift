import Foundation
import MetanodeCore

/// A small blocking HTTP/1.1 client for talking to a node's API on this machine (the CLI and tests). One request
/// per connection (`Connection: close`); responses are bounded.
public enum LoopbackHTTPClient {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public static let responseBytesMax = 64 << 20

    public static func request(_ method: String, _ address: String, _ path: String, body: [UInt8] = [],
                               contentType: String = "application/json", timeoutSeconds: Int = 30)
        throws(MetanodeError) -> Response
    {
        let target = try HostPort.parse(address)
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(target.host, String(target.port), &hints, &info) == 0, let first = info else {
            throw MetanodeError(.io, "cannot resolve \(target.host)")
        }
        defer { freeaddrinfo(info) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { throw MetanodeError(.io, "socket failed: \(FileIO.errnoText())") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            throw MetanodeError(.io, "cannot connect to the node at \(address): \(FileIO.errnoText()) — is it running?")
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n"
        head += "Content-Length: \(body.count)\r\n"
        if !body.isEmpty { head += "Content-Type: \(contentType)\r\n" }
        head += "\r\n"
        try sendAll(fd, Array(head.utf8) + body, address: address)

        var received = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw MetanodeError(.timeout, "no answer from \(address)\(path): \(FileIO.errnoText())")
            }
            if count == 0 { break }
            received += chunk[0..<count]
            guard received.count <= responseBytesMax else {
                throw MetanodeError(.limitExceeded, "response from \(address)\(path) is over \(responseBytesMax) bytes")
            }
        }
        return try parse(received, source: "\(address)\(path)")
    }

    private static func sendAll(_ fd: Int32, _ bytes: [UInt8], address: String) throws(MetanodeError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EINTR { continue }
                throw MetanodeError(.io, "cannot send to \(address): \(FileIO.errnoText())")
            }
            offset += sent
        }
    }

    static func parse(_ bytes: [UInt8], source: String) throws(MetanodeError) -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.firstRange(of: separator) else {
            throw MetanodeError(.io, "malformed HTTP response from \(source)")
        }
        let lines = String(decoding: bytes[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw MetanodeError(.io, "malformed HTTP status line from \(source): \(lines[0])")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(bytes[end.upperBound...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" { body = try dechunk(body, source: source) }
        return Response(status: status, headers: headers, body: body)
    }

    private static func dechunk(_ bytes: [UInt8], source: String) throws(MetanodeError) -> [UInt8] {
        var output = [UInt8]()
        var index = 0
        while index < bytes.count {
            guard let lineEnd = bytes[index...].firstRange(of: [13, 10]) else { break }
            let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16)
            else { throw MetanodeError(.io, "malformed chunked body from \(source)") }
            if size == 0 { break }
            let start = lineEnd.upperBound
            guard start + size <= bytes.count else { throw MetanodeError(.io, "truncated chunked body from \(source)") }
            output += bytes[start..<start + size]
            index = start + size + 2
        }
        return output
    }
}
