import DockLockCore
import Foundation

// The image store's system calls, all through one funnel that retries EINTR and turns -1 into a DockLockError
// naming the call, the path and the errno text. Paths inside a rootfs are only ever reached with *at() calls and
// O_NOFOLLOW from a directory descriptor, so no symlink an image placed is followed on the host.

enum ImageSys {
    /// Runs `body`, retrying while it fails with EINTR; a negative result throws, naming `what`.
    @discardableResult
    static func call<T: BinaryInteger>(_ what: @autoclosure () -> String, _ body: () -> T) throws(DockLockError) -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            throw failure(what(), code)
        }
    }

    static func failure(_ what: String, _ code: Int32) -> DockLockError {
        let kind: DockLockError.Code = switch code {
        case ENOENT: .notFound
        case EEXIST: .exists
        case ENOSPC, EDQUOT, EMFILE, ENFILE: .limit
        default: .system
        }
        return DockLockError(kind, "\(what): \(String(cString: strerror(code)))")
    }

    static var isRoot: Bool { geteuid() == 0 }

    /// syncfs(2) on the file system holding `fd`: one call makes a whole unpacked tree durable. glibc has it, but
    /// Swift's Glibc module does not declare it (it is _GNU_SOURCE), so it is looked up at run time; sync(2) if not.
    static func syncFileSystem(_ fd: Int32, what: @autoclosure () -> String) throws(DockLockError) {
        typealias SyncFS = @convention(c) (Int32) -> Int32
        guard let symbol = dlsym(nil, "syncfs") else {  // nil is RTLD_DEFAULT
            sync()
            return
        }
        let syncfs = unsafeBitCast(symbol, to: SyncFS.self)
        try call(what()) { syncfs(fd) }
    }

    /// Runs `body` (a closure passed through an untyped-rethrows API such as `withUnsafeBytes`) and gives back the
    /// DockLockError it threw as a typed error.
    static func typed<T>(_ body: () throws -> T) throws(DockLockError) -> T {
        do { return try body() } catch let error as DockLockError { throw error } catch {
            throw DockLockError(.system, "\(error)")
        }
    }

    /// A name for temporary files no other process picks: the pid and a per-process counter.
    static func uniqueSuffix() -> String { "\(getpid())-\(counter.next())" }

    private static let counter = Counter()

    private final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func next() -> Int { lock.withLock { value += 1; return value } }
    }
}

/// An open file descriptor, closed when the last reference goes.
final class ImageFD {
    let fd: Int32
    /// Names the file in errors.
    let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(DockLockError) -> ImageFD {
        let fd = try ImageSys.call("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return ImageFD(fd: fd, path: path)
    }

    /// `name` (one component) in this directory, never following a symlink at `name`.
    func openAt(_ name: String, _ flags: Int32, mode: mode_t = 0) throws(DockLockError) -> ImageFD {
        let fd = try ImageSys.call("open \(path)/\(name)") { openat(self.fd, name, flags | O_CLOEXEC | O_NOFOLLOW, mode) }
        return ImageFD(fd: fd, path: "\(path)/\(name)")
    }

    func openDirectory(_ name: String) throws(DockLockError) -> ImageFD {
        try openAt(name, O_RDONLY | O_DIRECTORY)
    }

    /// The file status of `name` in this directory (not following a symlink), or nil if there is none.
    func stat(_ name: String) throws(DockLockError) -> stat? {
        var info = Glibc.stat()
        if fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 { return info }
        let code = errno
        if code == ENOENT { return nil }
        throw ImageSys.failure("stat \(path)/\(name)", code)
    }

    func stat() throws(DockLockError) -> stat {
        var info = Glibc.stat()
        try ImageSys.call("stat \(path)") { fstat(fd, &info) }
        return info
    }

    /// Reads up to `buffer.count` bytes; 0 at the end of the file.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DockLockError) -> Int {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
        return try ImageSys.call("read \(path)") { Glibc.read(fd, base, buffer.count) }
    }

    func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DockLockError) -> Int {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
        return try ImageSys.call("read \(path)") { Glibc.pread(fd, base, buffer.count, off_t(offset)) }
    }

    func write(_ buffer: UnsafeRawBufferPointer) throws(DockLockError) {
        var done = 0
        while done < buffer.count {
            let base = buffer.baseAddress! + done
            let remaining = buffer.count - done
            done += try ImageSys.call("write \(path)") { Glibc.write(fd, base, remaining) }
        }
    }

    func write(_ bytes: [UInt8]) throws(DockLockError) {
        try ImageSys.typed { try bytes.withUnsafeBytes { try write($0) } }
    }

    func sync() throws(DockLockError) { try ImageSys.call("fsync \(path)") { fsync(fd) } }

    /// Directory entries other than "." and "..", sorted by their bytes (so walks are deterministic).
    func entries() throws(DockLockError) -> [String] {
        // fdopendir takes the descriptor over; give it a duplicate so this one stays ours.
        let copy = try ImageSys.call("dup \(path)") { fcntl(fd, F_DUPFD_CLOEXEC, 0) }
        guard let directory = fdopendir(copy) else {
            let code = errno
            close(copy)
            throw ImageSys.failure("opendir \(path)", code)
        }
        defer { closedir(directory) }
        rewinddir(directory)
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// Removes `name` from this directory, and everything under it if it is a directory, without following links.
    func removeTree(_ name: String) throws(DockLockError) {
        guard let info = try stat(name) else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            let child = try openDirectory(name)
            for entry in try child.entries() { try child.removeTree(entry) }
            try ImageSys.call("rmdir \(path)/\(name)") { unlinkat(fd, name, AT_REMOVEDIR) }
        } else {
            try ImageSys.call("unlink \(path)/\(name)") { unlinkat(fd, name, 0) }
        }
    }
}

/// Whole-file helpers for the store's own small files (records, tags, manifests, configs).
enum ImageFiles {
    static func exists(_ path: String) -> Bool {
        var info = Glibc.stat()
        return lstat(path, &info) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = Glibc.stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }

    /// The file at `path`, refused if larger than `bytesMax`.
    static func read(_ path: String, bytesMax: Int, what: String) throws(DockLockError) -> [UInt8] {
        let file = try ImageFD.open(path, O_RDONLY)
        return try read(file, bytesMax: bytesMax, what: what)
    }

    static func read(_ file: ImageFD, bytesMax: Int, what: String) throws(DockLockError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = try ImageSys.typed { try chunk.withUnsafeMutableBytes { try file.read(into: $0) } }
            if count == 0 { return out }
            guard out.count + count <= bytesMax else {
                throw DockLockError(.limit, "\(what) is larger than \(bytesMax) bytes; it is refused unread")
            }
            out.append(contentsOf: chunk[..<count])
        }
    }

    /// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`: readers see the old
    /// file or the new one, never a part.
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(DockLockError) {
        let temporary = "\(path).tmp-\(ImageSys.uniqueSuffix())"
        do {
            let file = try ImageFD.open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode: mode)
            try file.write(bytes)
            try file.sync()
            try ImageSys.call("rename \(temporary) to \(path)") { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw error
        }
        syncDirectory(of: path)
    }

    /// Makes a rename durable. Best effort: a failure here loses nothing that was not already at risk.
    static func syncDirectory(of path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = Glibc.open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws(DockLockError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if Glibc.mkdir(prefix, mode) != 0 && errno != EEXIST {
                throw ImageSys.failure("mkdir \(prefix)", errno)
            }
        }
        guard isDirectory(path) else { throw DockLockError(.system, "\(path) exists and is not a directory") }
    }

    /// Removes `path` and everything under it, following no symlinks; nothing there is fine.
    static func removeTree(_ path: String) throws(DockLockError) {
        let parent = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let directory = try ImageFD.open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY)
        try directory.removeTree(name)
    }

    /// Names in a directory; empty if it does not exist.
    static func list(_ path: String) throws(DockLockError) -> [String] {
        let directory: ImageFD
        do { directory = try ImageFD.open(path, O_RDONLY | O_DIRECTORY) } catch let error where error.code == .notFound {
            return []
        }
        return try directory.entries()
    }
}

/// An exclusive flock on a file, held until released or the descriptor closes (also when the process dies, so a
/// crashed writer never leaves the store locked).
final class ImageStoreLock {
    private let file: ImageFD

    init(path: String) throws(DockLockError) {
        file = try ImageFD.open(path, O_RDWR | O_CREAT, mode: 0o600)
        try ImageSys.call("flock \(path)") { flock(file.fd, LOCK_EX) }
    }

    deinit { flock(file.fd, LOCK_UN) }
}
