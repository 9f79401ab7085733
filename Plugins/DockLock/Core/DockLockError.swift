/// DockLock's one error type: a code a caller can branch on, and a message that says what was wrong and, where it
/// helps, what to do ("image busybox:1 is not in the store; import it with `metanode docklock image import`").
public struct DockLockError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, Equatable {
        /// A reference, receipt or container that is not there.
        case notFound
        /// Input that breaks a rule: a malformed manifest, a hostile layer entry, a bad flag.
        case invalid
        /// A name or digest that is taken.
        case exists
        /// Content whose digest or signature does not match what was recorded.
        case integrity
        /// A bound was reached (sizes, counts, lengths).
        case limit
        /// The host refused or failed a system call; the message names it and the errno text.
        case system
        /// The operation is not possible on this host (for example, no usable cgroup hierarchy).
        case unsupported
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
