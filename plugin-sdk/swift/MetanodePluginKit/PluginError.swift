import MetanodeABI

/// A failed host call (or a bus request that ended without a reply): the ABI status and the host's message.
public struct PluginError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `mn_status` the host answered; compare with the constants in `PluginStatus`.
    public let status: mn_status
    /// What was wrong, as the host's `last_error` said it (or, for bus replies, what happened to the request).
    public let message: String
    /// The host function that failed ("kv_put", "bus_request", ...).
    public let function: String

    public init(_ status: mn_status, _ message: String, function: String = "") {
        self.status = status
        self.message = message
        self.function = function
    }

    /// The status' name, e.g. "MN_ERR_DENIED".
    public var statusName: String { PluginStatus.name(status) }

    public var description: String {
        function.isEmpty ? "\(statusName): \(message)" : "\(function) failed with \(statusName): \(message)"
    }
}

/// The ABI's status codes, so plugin code and tests need not import the C module.
public enum PluginStatus {
    public static let ok: mn_status = MN_OK
    public static let denied: mn_status = MN_ERR_DENIED
    public static let invalidArgument: mn_status = MN_ERR_INVALID_ARGUMENT
    public static let notFound: mn_status = MN_ERR_NOT_FOUND
    public static let tooLarge: mn_status = MN_ERR_TOO_LARGE
    public static let stopped: mn_status = MN_ERR_STOPPED
    public static let timeout: mn_status = MN_ERR_TIMEOUT
    public static let exists: mn_status = MN_ERR_EXISTS
    public static let io: mn_status = MN_ERR_IO
    public static let version: mn_status = MN_ERR_VERSION
    public static let `internal`: mn_status = MN_ERR_INTERNAL
    public static let noResponder: mn_status = MN_ERR_NO_RESPONDER
    public static let limit: mn_status = MN_ERR_LIMIT
    public static let badSignature: mn_status = MN_ERR_BAD_SIGNATURE

    /// "MN_OK", "MN_ERR_DENIED", ...; "status N" for a code this SDK does not know.
    public static func name(_ status: mn_status) -> String {
        switch status {
        case MN_OK: "MN_OK"
        case MN_ERR_DENIED: "MN_ERR_DENIED"
        case MN_ERR_INVALID_ARGUMENT: "MN_ERR_INVALID_ARGUMENT"
        case MN_ERR_NOT_FOUND: "MN_ERR_NOT_FOUND"
        case MN_ERR_TOO_LARGE: "MN_ERR_TOO_LARGE"
        case MN_ERR_STOPPED: "MN_ERR_STOPPED"
        case MN_ERR_TIMEOUT: "MN_ERR_TIMEOUT"
        case MN_ERR_EXISTS: "MN_ERR_EXISTS"
        case MN_ERR_IO: "MN_ERR_IO"
        case MN_ERR_VERSION: "MN_ERR_VERSION"
        case MN_ERR_INTERNAL: "MN_ERR_INTERNAL"
        case MN_ERR_NO_RESPONDER: "MN_ERR_NO_RESPONDER"
        case MN_ERR_LIMIT: "MN_ERR_LIMIT"
        case MN_ERR_BAD_SIGNATURE: "MN_ERR_BAD_SIGNATURE"
        default: "status \(status)"
        }
    }
}
