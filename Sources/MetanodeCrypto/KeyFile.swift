#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MetanodeCore

/// Key files on disk: written atomically with the right mode, and secret ones refused when others could read them.
public enum KeyFile {
    /// minisign key files are under 1.3 KiB; anything much larger is not a key file.
    public static let fileMaxBytes = 4096

    /// Creates a secret key file with mode 0600: written to a 0600 temporary file in the same directory, synced, then
    /// moved into place, so the key is never briefly readable by others nor ever half-written.
    public static func writeSecret(_ contents: String, to path: String, overwrite: Bool = false)
        throws(MetanodeError)
    {
        try writeAtomically(contents, to: path, mode: 0o600, overwrite: overwrite)
    }

    /// Creates a public key file with mode 0644, the same way.
    public static func writePublic(_ contents: String, to path: String, overwrite: Bool = false)
        throws(MetanodeError)
    {
        try writeAtomically(contents, to: path, mode: 0o644, overwrite: overwrite)
    }

    /// Reads a secret key file, refusing one that group or others can read or write.
    public static func readSecret(at path: String) throws(MetanodeError) -> String {
        try readBounded(path, secret: true)
    }

    public static func readPublic(at path: String) throws(MetanodeError) -> String {
        try readBounded(path, secret: false)
    }

    // MARK: -

    private static func writeAtomically(_ contents: String, to path: String, mode: mode_t, overwrite: Bool)
        throws(MetanodeError)
    {
        let bytes = Array(contents.utf8)
        guard bytes.count <= fileMaxBytes else {
            throw MetanodeError(
                .limitExceeded, "key file contents are \(bytes.count) bytes; the limit is \(fileMaxBytes)")
        }
        var status = stat()
        if !overwrite, lstat(path, &status) == 0 {
            throw MetanodeError(.alreadyExists, "key file \(path) already exists")
        }
        // mkstemp creates the file with mode 0600 before any byte is written.
        var template = Array("\(path).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw failure("cannot create a temporary file for key file", path) }
        let temporaryPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var placed = false
        defer { if !placed { unlink(temporaryPath) } }
        do {
            defer { close(fd) }
            // fchmod ignores the umask: public keys are meant to be world-readable.
            guard fchmod(fd, mode) == 0 else { throw failure("cannot set the mode of key file", path) }
            var written = 0
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw failure("cannot write key file", path) }
                written += n
            }
            guard fsync(fd) == 0 else { throw failure("cannot sync key file", path) }
        }
        if overwrite {
            guard rename(temporaryPath, path) == 0 else { throw failure("cannot move into place key file", path) }
        } else {
            // link() fails with EEXIST if the name appeared meanwhile: no-overwrite without a race.
            guard link(temporaryPath, path) == 0 else {
                if errno == EEXIST { throw MetanodeError(.alreadyExists, "key file \(path) already exists") }
                throw failure("cannot move into place key file", path)
            }
            unlink(temporaryPath)
        }
        placed = true
        syncDirectory(of: path)
    }

    /// Makes the new directory entry durable. Some file systems cannot sync a directory; the file itself is synced.
    private static func syncDirectory(of path: String) {
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    private static func readBounded(_ path: String, secret: Bool) throws(MetanodeError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw failure("cannot open key file", path) }
        defer { close(fd) }
        // fstat on the open descriptor checks the very file we read, not whatever the path names later.
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw failure("cannot stat key file", path) }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw MetanodeError(.invalidArgument, "key file \(path) is not a regular file")
        }
        let mode = status.st_mode & 0o7777
        if secret, mode & 0o077 != 0 {
            let access = mode & 0o044 != 0 ? "readable" : "writable"
            throw MetanodeError(
                .denied,
                "key file \(path) has mode \(octal(mode)); it must not be \(access) by others — run chmod 600 \(path)")
        }
        guard status.st_size <= fileMaxBytes else {
            throw MetanodeError(
                .limitExceeded, "key file \(path) is \(status.st_size) bytes; a key file is at most \(fileMaxBytes)")
        }
        // Read one byte past the limit so a file that grew after fstat is still caught.
        var bytes = [UInt8](repeating: 0, count: fileMaxBytes + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw failure("cannot read key file", path) }
            if n == 0 { break }
            count += n
        }
        defer { if secret { wipe(&bytes) } }
        guard count <= fileMaxBytes else {
            throw MetanodeError(
                .limitExceeded, "key file \(path) grew past \(fileMaxBytes) bytes; a key file is at most that")
        }
        guard let text = String(validating: bytes[..<count], as: UTF8.self) else {
            throw MetanodeError(.invalidArgument, "key file \(path) is not UTF-8 text")
        }
        return text
    }

    private static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// The errno of the failed call, as a typed error naming the file.
    private static func failure(_ operation: String, _ path: String) -> MetanodeError {
        let code = errno
        let reason = String(cString: strerror(code))
        let kind: MetanodeError.Code =
            switch code {
            case ENOENT: .notFound
            case EACCES, EPERM: .denied
            default: .io
            }
        return MetanodeError(kind, "\(operation) \(path): \(reason)")
    }
}
