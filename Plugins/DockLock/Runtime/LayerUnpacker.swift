import DockLockCore
import Foundation

/// Applies an image's layers, bottom first, to a directory that becomes its root filesystem.
///
/// Each layer is read twice. The first pass runs every entry through `LayerEntryPolicy` on a copy and collects the
/// whiteouts, writing nothing; the second applies the whiteouts (which remove what the *lower* layers left, whatever
/// the order of the tar) and then places the entries. Every path is reached from the rootfs descriptor one
/// component at a time with O_NOFOLLOW, and an existing parent must be a real directory: an entry can never be
/// written through a symlink an earlier entry (or layer) placed.
///
/// Ownership comes from the tar when running as root; otherwise files belong to the caller and directories are
/// kept owner-writable (mode | 0o700) so later entries can be written into them.
struct LayerUnpacker {
    static let copyBufferBytes = 1 << 20
    /// Tar headers and skipped data a layer may add to its file bytes before its gzip stream counts as a bomb.
    static let inflatedOverheadBytesPerEntry: UInt64 = 8 << 10

    let root: ImageFD
    private(set) var policy: LayerEntryPolicy
    private let isRoot = ImageSys.isRoot
    /// The last parent directory walked to: tar entries come grouped by directory, so most walks are one lookup.
    /// Dropped whenever anything is removed, since a removal can unlink a directory on its path.
    private var cachedParent: (path: ArraySlice<String>, directory: ImageFD)?

    init(root: ImageFD, policy: LayerEntryPolicy) {
        self.root = root
        self.policy = policy
    }

    /// Applies the layer blob at `path`; `what` names it in errors ("layer 2/3 (sha256:…)").
    mutating func apply(layerAt path: String, what: String) throws(DockLockError) {
        do {
            var check = policy
            check.beginLayer()
            var deletions: [LayerAction] = []
            let first = TarReader(try open(path, what: what), what: what)
            while let entry = try first.next() {
                let action = try check.admit(entry)
                switch action {
                case .whiteout, .opaque: deletions.append(action)
                default: break
                }
            }

            for deletion in deletions { try delete(deletion) }
            policy.beginLayer()
            let second = TarReader(try open(path, what: what), what: what)
            while let entry = try second.next() {
                try place(try policy.admit(entry), entry, data: second)
            }
        } catch {
            throw error.message.hasPrefix(what) ? error : DockLockError(error.code, "\(what): \(error.message)")
        }
    }

    /// The layer as a tar stream: gzip is recognised by its magic bytes, whatever the media type said.
    private func open(_ path: String, what: String) throws(DockLockError) -> any TarSource {
        let file = try ImageFD.open(path, O_RDONLY)
        var magic = [UInt8](repeating: 0, count: 4)
        let count = try ImageSys.typed { try magic.withUnsafeMutableBytes { try file.pread(into: $0, at: 0) } }
        let raw = TarFileSource(file: file)
        if GzipSource.hasMagic(magic.prefix(count)) {
            let entries = UInt64(policy.limits.entriesMax)
            let bound = policy.limits.unpackedBytesMax.addingReportingOverflow(
                entries.multipliedReportingOverflow(by: Self.inflatedOverheadBytesPerEntry).partialValue)
            return try GzipSource(raw, outputBytesMax: bound.overflow ? .max : bound.partialValue, what: what)
        }
        if magic == [0x28, 0xB5, 0x2F, 0xFD] {
            throw DockLockError(.unsupported, "\(what) is zstd-compressed; DockLock unpacks tar and tar+gzip layers "
                + "only (re-export the image with gzip)")
        }
        return raw
    }

    // MARK: Whiteouts

    private mutating func delete(_ deletion: LayerAction) throws(DockLockError) {
        cachedParent = nil
        switch deletion {
        case .whiteout(let path):
            // Under a parent that is missing or not a real directory there is nothing of the lower layers to hide.
            guard let parent = try directory(path.dropLast(), create: nil) else { return }
            try parent.removeTree(path.last!)
        case .opaque(let path):
            guard let directory = try directory(path[...], create: nil) else { return }
            for name in try directory.entries() { try directory.removeTree(name) }
        default:
            preconditionFailure("only whiteouts are deletions")
        }
        cachedParent = nil
    }

    // MARK: Entries

    private mutating func place(_ action: LayerAction, _ entry: LayerEntry, data: TarReader) throws(DockLockError) {
        switch action {
        case .skip, .whiteout, .opaque:
            return  // whiteouts were applied before this pass
        case .directory(let path, let mode):
            let parent = try directory(path.dropLast(), create: entry)!
            let name = path.last!
            if let existing = try parent.stat(name), existing.st_mode & S_IFMT != S_IFDIR {
                try remove(name, in: parent)
            }
            if try parent.stat(name) == nil {
                try ImageSys.call("mkdir \(parent.path)/\(name)") { mkdirat(parent.fd, name, 0o700) }
            }
            let made = try parent.openDirectory(name)
            try own(made, entry)
            try ImageSys.call("chmod \(made.path)") { fchmod(made.fd, mode_t(isRoot ? mode : mode | 0o700)) }
        case .file(let path, let mode, let size):
            let parent = try directory(path.dropLast(), create: entry)!
            let name = path.last!
            if try parent.stat(name) != nil { try remove(name, in: parent) }
            let file = try parent.openAt(name, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
            try copy(data, to: file, size: size)
            try own(file, entry)
            try ImageSys.call("chmod \(file.path)") { fchmod(file.fd, mode_t(mode)) }
            let times = Self.times(entry.mtimeSeconds)
            try ImageSys.call("utimens \(file.path)") { futimens(file.fd, times) }
        case .symlink(let path, let target):
            let parent = try directory(path.dropLast(), create: entry)!
            let name = path.last!
            if try parent.stat(name) != nil { try remove(name, in: parent) }
            try ImageSys.call("symlink \(parent.path)/\(name)") { symlinkat(target, parent.fd, name) }
            if isRoot {
                try ImageSys.call("chown \(parent.path)/\(name)") {
                    fchownat(parent.fd, name, entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW)
                }
            }
            let times = Self.times(entry.mtimeSeconds)
            try ImageSys.call("utimens \(parent.path)/\(name)") {
                utimensat(parent.fd, name, times, AT_SYMLINK_NOFOLLOW)
            }
        case .hardLink(let path, let target):
            let shown = LayerEntryPolicy.shown(entry.path)
            guard let targetParent = try directory(target.dropLast(), create: nil),
                  let targetInfo = try targetParent.stat(target.last!), targetInfo.st_mode & S_IFMT == S_IFREG else {
                throw DockLockError(.invalid, "layer entry '\(shown)': its hard-link target "
                    + "'\(LayerEntryPolicy.shown(entry.linkTarget))' is no longer a regular file; the layer is refused")
            }
            let parent = try directory(path.dropLast(), create: entry)!
            let name = path.last!
            if let existing = try parent.stat(name) {
                if existing.st_ino == targetInfo.st_ino && existing.st_dev == targetInfo.st_dev { return }
                try remove(name, in: parent)
            }
            try ImageSys.call("link \(parent.path)/\(name)") {
                linkat(targetParent.fd, target.last!, parent.fd, name, 0)
            }
        }
    }

    /// The directory at `path` below the root. Components that are missing are created (0o755, owned by the
    /// caller) when `create` names the entry being placed; otherwise a missing one gives nil, and so does one that
    /// is not a real directory. Placing an entry under a symlink or a file is refused, naming both.
    private mutating func directory(_ path: ArraySlice<String>, create entry: LayerEntry?) throws(DockLockError)
        -> ImageFD? {
        if path.isEmpty { return root }
        if let cachedParent, cachedParent.path == path { return cachedParent.directory }
        var current = root
        for (depth, name) in path.enumerated() {
            do {
                current = try current.openDirectory(name)
                continue
            } catch let error where error.code == .notFound {
                guard entry != nil else { return nil }
                try ImageSys.call("mkdir \(current.path)/\(name)") { mkdirat(current.fd, name, 0o755) }
                current = try current.openDirectory(name)
                continue
            } catch {
                // ELOOP (a symlink) or ENOTDIR (a file): not a real directory. Anything else is the host's failure.
                let kind = try current.stat(name).map { $0.st_mode & S_IFMT }
                guard kind != S_IFDIR else { throw error }
                guard let entry else { return nil }
                let what = kind == S_IFLNK ? "a symlink" : "not a directory"
                let parent = path.prefix(depth + 1).joined(separator: "/")
                throw DockLockError(.invalid, "layer entry '\(LayerEntryPolicy.shown(entry.path))': its parent "
                    + "'\(LayerEntryPolicy.shown(parent))' is \(what), placed by an earlier entry or layer; writing "
                    + "through it is refused, so the layer is refused")
            }
        }
        cachedParent = (path, current)
        return current
    }

    private mutating func remove(_ name: String, in parent: ImageFD) throws(DockLockError) {
        cachedParent = nil
        try parent.removeTree(name)
    }

    private func own(_ file: ImageFD, _ entry: LayerEntry) throws(DockLockError) {
        guard isRoot else { return }
        try ImageSys.call("chown \(file.path)") { fchown(file.fd, entry.uid, entry.gid) }
    }

    private func copy(_ data: TarReader, to file: ImageFD, size: UInt64) throws(DockLockError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.copyBufferBytes, alignment: 16)
        defer { buffer.deallocate() }
        var left = size
        while left > 0 {
            let count = try data.read(into: buffer)
            precondition(count > 0, "TarReader returned no data before the entry's end")
            try file.write(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
            left -= UInt64(count)
        }
    }

    /// Access and modification times for futimens/utimensat.
    private static func times(_ seconds: Int64) -> [timespec] {
        let time = timespec(tv_sec: Int(clamping: max(0, seconds)), tv_nsec: 0)
        return [time, time]
    }
}
