/// The one error type of the kernel's libraries: a code to branch on, a message for people, and an optional cause.
///
/// Messages say what was wrong and what to do about it, e.g.
/// "plugin court 0.3.0 needs ABI 1.4; this kernel has 1.2 — upgrade the node or install an older court".
public struct MetanodeError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is. A struct over a private enum so codes can be added without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidArgument, invalidManifest, invalidConfig, invalidSchema, invalidJSON, invalidVersion
            case notFound, alreadyExists, limitExceeded, denied, stopped
            case signature, untrusted, integrity, dependency, abi, quarantined
            case storage, crypto, io, timeout, `internal`
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        public static let invalidArgument = Code(.invalidArgument)
        public static let invalidManifest = Code(.invalidManifest)
        public static let invalidConfig = Code(.invalidConfig)
        public static let invalidSchema = Code(.invalidSchema)
        public static let invalidJSON = Code(.invalidJSON)
        public static let invalidVersion = Code(.invalidVersion)
        public static let notFound = Code(.notFound)
        public static let alreadyExists = Code(.alreadyExists)
        public static let limitExceeded = Code(.limitExceeded)
        public static let denied = Code(.denied)
        public static let stopped = Code(.stopped)
        /// A signature is missing, malformed or does not verify.
        public static let signature = Code(.signature)
        /// A signature verifies but its key is not in the trust store.
        public static let untrusted = Code(.untrusted)
        /// A file's content does not match the hash its manifest records.
        public static let integrity = Code(.integrity)
        public static let dependency = Code(.dependency)
        public static let abi = Code(.abi)
        public static let quarantined = Code(.quarantined)
        public static let storage = Code(.storage)
        public static let crypto = Code(.crypto)
        public static let io = Code(.io)
        public static let timeout = Code(.timeout)
        public static let `internal` = Code(.internal)

        public var description: String { base.rawValue }

        /// The code a `description` names (for errors that crossed the HTTP API as JSON).
        public init?(name: String) {
            guard let base = Base(rawValue: name) else { return nil }
            self.base = base
        }
    }

    public var code: Code
    public var message: String
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
