import MetanodeABI

/// Checks of what a plugin passes across the ABI. Each failure names the argument and the rule it broke.
enum Validate {
    @inline(__always)
    static func bytes(_ value: mn_bytes, _ what: String, max: UInt32 = .max) throws(HostError) -> UnsafeRawBufferPointer {
        if value.len == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
        guard let pointer = value.ptr else { throw .invalid("\(what) has length \(value.len) but a NULL pointer") }
        guard value.len <= Int(max) else { throw .tooLarge(what, value.len, max: max) }
        return UnsafeRawBufferPointer(start: pointer, count: value.len)
    }

    @inline(__always)
    static func key(_ value: mn_bytes) throws(HostError) -> UnsafeRawBufferPointer {
        let key = try bytes(value, "kv key", max: MN_KV_KEY_LEN_MAX)
        guard key.count > 0 else { throw .invalid("kv key is empty") }
        return key
    }

    @inline(__always)
    static func value(_ value: mn_bytes) throws(HostError) -> UnsafeRawBufferPointer {
        try bytes(value, "kv value", max: MN_KV_VALUE_LEN_MAX)
    }

    static func string(_ value: mn_str, _ what: String, max: UInt32) throws(HostError) -> String {
        let raw = try bytes(value, what, max: max)
        guard let string = String(validating: raw, as: UTF8.self) else { throw .invalid("\(what) is not valid UTF-8") }
        return string
    }

    static func keyID(_ value: mn_str) throws(HostError) -> String {
        let id = try string(value, "key_id", max: MN_KEY_ID_LEN_MAX)
        guard !id.isEmpty else { throw .invalid("key_id is empty") }
        return id
    }

    /// Dot-separated segments of [A-Za-z0-9_-]; subscriptions may end in ".*". Checked byte by byte without
    /// allocating: publish runs this on every message.
    static func topic(_ value: mn_str, allowWildcard: Bool) throws(HostError) -> String {
        let raw = try bytes(value, "topic", max: MN_BUS_TOPIC_LEN_MAX)
        var body = raw
        if allowWildcard, raw.count > 2, raw[raw.count - 2] == UInt8(ascii: "."), raw[raw.count - 1] == UInt8(ascii: "*") {
            body = UnsafeRawBufferPointer(rebasing: raw[..<(raw.count - 2)])
        }
        var valid = !body.isEmpty
        var segmentLength = 0
        for byte in body where valid {
            if byte == UInt8(ascii: ".") {
                valid = segmentLength > 0
                segmentLength = 0
            } else {
                valid = isAlphanumeric(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
                segmentLength += 1
            }
        }
        guard valid, segmentLength > 0 else {
            throw .invalid("topic '\(String(decoding: raw, as: UTF8.self))' is not dot-separated [A-Za-z0-9_-] segments"
                + (allowWildcard ? " (optionally ending in '.*')" : ""))
        }
        return String(decoding: raw, as: UTF8.self)  // ASCII, checked above
    }

    /// A plugin's network protocol name: [a-z0-9_.-], 1...MN_NET_PROTOCOL_LEN_MAX bytes.
    static func netProtocol(_ value: mn_str) throws(HostError) -> String {
        let name = try string(value, "protocol", max: MN_NET_PROTOCOL_LEN_MAX)
        guard !name.isEmpty, name.utf8.allSatisfy({ isLowercaseLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_")
            || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") })
        else {
            throw .invalid("protocol '\(name)' must be 1...\(MN_NET_PROTOCOL_LEN_MAX) characters of [a-z0-9_.-]")
        }
        return name
    }

    static let httpMethods: Set<String> = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "*"]

    static func httpMethod(_ value: mn_str) throws(HostError) -> String {
        let method = try string(value, "method", max: 16).uppercased()
        guard httpMethods.contains(method) else {
            throw .invalid("HTTP method '\(method)' is not one of \(httpMethods.sorted().joined(separator: ", "))")
        }
        return method
    }

    /// "/" followed by URL path characters, optionally ending in "/*"; "/call" is the kernel's.
    static func routePath(_ value: mn_str) throws(HostError) -> String {
        let path = try string(value, "path", max: 1024)
        guard path.hasPrefix("/") else { throw .invalid("route path '\(path)' must start with '/'") }
        var body = Substring(path)
        if body.hasSuffix("/*") { body = body.dropLast() }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()+,;=:@%/".utf8)
        guard body.utf8.allSatisfy({ allowed.contains($0) }) else {
            throw .invalid("route path '\(path)' has characters outside the URL path set (a final '/*' is allowed)")
        }
        guard path != "/" else {
            throw .invalid("route path '/' is reserved: GET /v1/plugins/NAME/ is the kernel's status of the plugin; "
                + "use a path such as /index")
        }
        guard path != "/call", !path.hasPrefix("/call/") else {
            throw .invalid("route path '\(path)' is reserved: /v1/plugins/NAME/call/ invokes exported functions")
        }
        return path
    }

    static func headerName(_ value: mn_str) throws(HostError) -> String {
        let name = try string(value, "header name", max: 256)
        let token = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~".utf8)
        guard !name.isEmpty, name.utf8.allSatisfy({ token.contains($0) }) else {
            throw .invalid("header name '\(name)' is not an HTTP token")
        }
        return name
    }

    static func headerValue(_ value: mn_str, _ what: String) throws(HostError) -> String {
        let text = try string(value, what, max: MN_HTTP_HEADER_LEN_MAX)
        guard !text.utf8.contains(where: { $0 == 0x0d || $0 == 0x0a || $0 == 0 }) else {
            throw .invalid("\(what) contains CR, LF or NUL")
        }
        return text
    }

    /// "<plugin>.<name>": [a-z0-9_.-], starting with a letter.
    static func serviceName(_ value: mn_str) throws(HostError) -> String {
        let name = try string(value, "service name", max: MN_SERVICE_NAME_LEN_MAX)
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789_.-".utf8)
        guard let first = name.utf8.first, isLowercaseLetter(first), name.contains("."),
              name.utf8.allSatisfy({ allowed.contains($0) }), !name.hasSuffix(".")
        else {
            throw .invalid("service name '\(name)' must look like '<plugin>.<service>' using [a-z0-9_.-]")
        }
        return name
    }

    /// [a-z_][a-z0-9_]*
    static func metricName(_ value: mn_str) throws(HostError) -> String {
        let name = try string(value, "metric name", max: MN_METRIC_NAME_LEN_MAX)
        guard let first = name.utf8.first, isLowercaseLetter(first) || first == UInt8(ascii: "_"),
              name.utf8.allSatisfy({ isLowercaseLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") })
        else {
            throw .invalid("metric name '\(name)' must match [a-z_][a-z0-9_]*")
        }
        return name
    }

    @inline(__always) static func isLowercaseLetter(_ c: UInt8) -> Bool { c >= 0x61 && c <= 0x7a }
    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    @inline(__always) static func isAlphanumeric(_ c: UInt8) -> Bool {
        isLowercaseLetter(c) || isDigit(c) || (c >= 0x41 && c <= 0x5a)
    }
}
