// The rules a layer's tar entries must follow before anything is written, and what each entry means for the root
// filesystem: a directory, file, link or whiteout at a path of checked components. Pure: the unpacker
// (DockLockRuntime) turns a `LayerAction` into openat/mkdirat/symlinkat calls, relative to the rootfs and never
// following a symlink, so what is decided here is also what happens.
//
// Symlink targets. A symlink is stored as written; it is only ever followed by the container, whose root is the
// rootfs, so an absolute target ("/etc/passwd", "/") names a path inside the image and is accepted. A relative
// target is resolved lexically from the link's directory and must not climb above the root ("../../etc" at
// "usr/x" is refused): the container could not escape through it either, but a host tool that follows links in the
// rootfs (and none in DockLock does) would. Host code must never follow symlinks inside a rootfs path.

/// One tar entry, as the reader decodes it (ustar/GNU/pax fields already merged).
public struct LayerEntry: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case file, directory, symlink, hardLink, characterDevice, blockDevice, fifo
    }

    public var kind: Kind
    /// The entry's name in the archive, as written ("./usr/bin/env", "etc/").
    public var path: String
    /// A symlink's target, or a hard link's (earlier) entry name; empty otherwise.
    public var linkTarget: String
    /// Permission bits, including setuid (0o4000), setgid (0o2000) and sticky (0o1000).
    public var mode: UInt32
    /// Bytes of data that follow the header (only a file's are kept).
    public var size: UInt64
    public var uid: UInt32
    public var gid: UInt32
    public var mtimeSeconds: Int64

    public init(kind: Kind, path: String, linkTarget: String = "", mode: UInt32 = 0o644, size: UInt64 = 0,
                uid: UInt32 = 0, gid: UInt32 = 0, mtimeSeconds: Int64 = 0) {
        self.kind = kind
        self.path = path
        self.linkTarget = linkTarget
        self.mode = mode
        self.size = size
        self.uid = uid
        self.gid = gid
        self.mtimeSeconds = mtimeSeconds
    }
}

/// Bounds on what one image may unpack to. Units last in the names.
public struct LayerLimits: Equatable, Sendable {
    /// The largest single file.
    public var entryBytesMax: UInt64
    /// All regular-file bytes of all layers together.
    public var unpackedBytesMax: UInt64
    /// Entries (of every kind, whiteouts included) in all layers together.
    public var entriesMax: Int
    /// A path inside the image (Linux PATH_MAX is 4096 with its NUL).
    public var pathBytesMax: Int
    /// One path component (NAME_MAX).
    public var componentBytesMax: Int
    public var linkTargetBytesMax: Int

    public init(entryBytesMax: UInt64 = 8 << 30, unpackedBytesMax: UInt64 = 64 << 30, entriesMax: Int = 2_000_000,
                pathBytesMax: Int = 4095, componentBytesMax: Int = 255, linkTargetBytesMax: Int = 4095) {
        self.entryBytesMax = entryBytesMax
        self.unpackedBytesMax = unpackedBytesMax
        self.entriesMax = entriesMax
        self.pathBytesMax = pathBytesMax
        self.componentBytesMax = componentBytesMax
        self.linkTargetBytesMax = linkTargetBytesMax
    }

    public static let standard = LayerLimits()
}

/// What an accepted entry does. Paths are components below the rootfs: never empty, ".", ".." or containing "/".
public enum LayerAction: Equatable, Sendable {
    case directory(path: [String], mode: UInt32)
    case file(path: [String], mode: UInt32, size: UInt64)
    /// `target` as written; checked not to climb out of the root (see the file comment).
    case symlink(path: [String], target: String)
    /// A second name for the regular file an earlier entry of the same layer put at `target`.
    case hardLink(path: [String], target: [String])
    /// `.wh.<name>`: remove `path` as the lower layers left it.
    case whiteout(path: [String])
    /// `.wh..wh..opq`: `directory` keeps nothing from the lower layers (`[]` is the root).
    case opaque(directory: [String])
    /// The root directory itself ("./"): the rootfs root keeps its own mode.
    case skip
}

/// Admits one image's entries, layer by layer, in order: checks each against the rules and limits, and says what it
/// does. A value, so the unpacker can check a whole layer on a copy before it writes anything.
public struct LayerEntryPolicy: Sendable {
    public static let whiteoutPrefix = ".wh."
    public static let opaqueMarker = ".wh..wh..opq"

    public let limits: LayerLimits
    /// Whether setuid/setgid files are accepted (the bits are kept). Off, such a file refuses the layer.
    public let allowSetuid: Bool
    public private(set) var entryCount = 0
    public private(set) var unpackedBytes: UInt64 = 0
    /// Regular files (and hard links to them) placed so far in this layer: the only valid hard-link targets.
    private var layerFiles: Set<[String]> = []

    public init(limits: LayerLimits = .standard, allowSetuid: Bool = false) {
        self.limits = limits
        self.allowSetuid = allowSetuid
    }

    /// Starts the next layer: hard links reach only into their own layer.
    public mutating func beginLayer() { layerFiles = [] }

    public mutating func admit(_ entry: LayerEntry) throws(DockLockError) -> LayerAction {
        let name = Self.shown(entry.path)
        entryCount += 1
        guard entryCount <= limits.entriesMax else {
            throw DockLockError(.limit, "layer entry '\(name)': the image has more than \(limits.entriesMax) entries "
                + "(entriesMax)")
        }
        let path = try components(entry.path, entry: name)

        // Whiteouts first: their kind and data do not matter, only their name.
        if let last = path.last, last.hasPrefix(Self.whiteoutPrefix) {
            let parent = Array(path.dropLast())
            if last == Self.opaqueMarker { return .opaque(directory: parent) }
            let hidden = String(last.dropFirst(Self.whiteoutPrefix.count))
            guard !hidden.isEmpty, !hidden.hasPrefix(Self.whiteoutPrefix) else {
                throw DockLockError(.invalid, "layer entry '\(name)': '\(Self.shown(last))' is not a whiteout DockLock "
                    + "knows (.wh.<name> or \(Self.opaqueMarker)); the layer is refused")
            }
            return .whiteout(path: parent + [hidden])
        }

        guard !path.isEmpty else {
            guard entry.kind == .directory else {
                throw DockLockError(.invalid, "layer entry '\(name)' names the root directory but is not a directory")
            }
            return .skip
        }
        let mode = entry.mode & 0o7777
        switch entry.kind {
        case .directory:
            // setgid on a directory only makes new files inherit its group (Debian's /var/mail): harmless, kept.
            forget(path)
            return .directory(path: path, mode: mode)
        case .file:
            guard entry.size <= limits.entryBytesMax else {
                throw DockLockError(.limit, "layer entry '\(name)' is \(entry.size) bytes; a file may be at most "
                    + "\(limits.entryBytesMax) (entryBytesMax)")
            }
            let (total, overflow) = unpackedBytes.addingReportingOverflow(entry.size)
            guard !overflow, total <= limits.unpackedBytesMax else {
                throw DockLockError(.limit, "layer entry '\(name)': the image unpacks to more than "
                    + "\(limits.unpackedBytesMax) bytes (unpackedBytesMax)")
            }
            if mode & 0o6000 != 0 && !allowSetuid {
                let bit = mode & 0o4000 != 0 ? "setuid" : "setgid"
                throw DockLockError(.invalid, "layer entry '\(name)' is \(bit) (mode \(String(mode, radix: 8))); "
                    + "setuid/setgid files are refused unless the import allows them (--allow-setuid)")
            }
            unpackedBytes = total
            layerFiles.insert(path)
            return .file(path: path, mode: mode, size: entry.size)
        case .symlink:
            try checkSymlink(entry.linkTarget, at: path, entry: name)
            forget(path)
            return .symlink(path: path, target: entry.linkTarget)
        case .hardLink:
            let target = try components(entry.linkTarget, entry: name, what: "hard link target")
            guard layerFiles.contains(target) else {
                throw DockLockError(.invalid, "layer entry '\(name)': a hard link to '\(Self.shown(entry.linkTarget))',"
                    + " which is not a regular file placed by an earlier entry of this layer; the layer is refused")
            }
            layerFiles.insert(path)
            return .hardLink(path: path, target: target)
        case .characterDevice, .blockDevice:
            throw DockLockError(.invalid, "layer entry '\(name)' is a \(entry.kind == .blockDevice ? "block" : "character") "
                + "device; device nodes are refused (the runtime provides /dev)")
        case .fifo:
            throw DockLockError(.invalid, "layer entry '\(name)' is a fifo; fifos are refused (create them at run "
                + "time)")
        }
    }

    /// `path` as components: a leading "./" and empty or "." parts dropped; absolute paths, ".." and NUL refused.
    public func components(_ path: String, entry: String, what: String = "path") throws(DockLockError) -> [String] {
        guard path.utf8.count <= limits.pathBytesMax else {
            throw DockLockError(.limit, "layer entry '\(entry)': the \(what) is \(path.utf8.count) bytes; at most "
                + "\(limits.pathBytesMax) (pathBytesMax)")
        }
        guard !path.utf8.contains(0) else {
            throw DockLockError(.invalid, "layer entry '\(entry)': the \(what) contains a NUL byte")
        }
        guard !path.hasPrefix("/") else {
            throw DockLockError(.invalid, "layer entry '\(entry)': the \(what) is absolute; layer entries are relative "
                + "to the image root, so the layer is refused")
        }
        var out: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            guard part != ".." else {
                throw DockLockError(.invalid, "layer entry '\(entry)': the \(what) has a '..' component, which could "
                    + "reach outside the image root; the layer is refused")
            }
            guard part.utf8.count <= limits.componentBytesMax else {
                throw DockLockError(.limit, "layer entry '\(entry)': a component of the \(what) is "
                    + "\(part.utf8.count) bytes; at most \(limits.componentBytesMax) (componentBytesMax)")
            }
            out.append(String(part))
        }
        return out
    }

    private func checkSymlink(_ target: String, at path: [String], entry: String) throws(DockLockError) {
        guard !target.isEmpty, target.utf8.count <= limits.linkTargetBytesMax, !target.utf8.contains(0) else {
            throw DockLockError(.invalid, "layer entry '\(entry)': a symlink target is 1-\(limits.linkTargetBytesMax) "
                + "bytes with no NUL")
        }
        guard Self.resolve(target, from: path.dropLast()) != nil else {
            throw DockLockError(.invalid, "layer entry '\(entry)': symlink target '\(Self.shown(target))' climbs above "
                + "the image root; the layer is refused")
        }
    }

    /// `target` resolved lexically from `directory` (components below the root); nil if a ".." would climb above
    /// the root. An absolute target starts from the root.
    public static func resolve(_ target: String, from directory: some Collection<String>) -> [String]? {
        var out = target.hasPrefix("/") ? [] : Array(directory)
        for part in target.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            if part == ".." {
                guard !out.isEmpty else { return nil }
                out.removeLast()
            } else {
                out.append(String(part))
            }
        }
        return out
    }

    /// A path replaced by something that is not a regular file is no longer a hard-link target. (Whiteouts do not
    /// count: they remove what the lower layers left, not this layer's entries.)
    private mutating func forget(_ path: [String]) { layerFiles.remove(path) }

    /// An untrusted name, cut and with control characters escaped, fit for an error message.
    public static func shown(_ text: String) -> String {
        let clipped = text.unicodeScalars.count <= 200 ? text : String(text.unicodeScalars.prefix(200)) + "…"
        return clipped.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? $0.escaped(asASCII: true) : String($0) }
            .joined()
    }
}
