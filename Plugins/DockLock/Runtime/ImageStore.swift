import DockLockCore
import Foundation
import MetanodeWire

/// What `remove` did: the tags it dropped, and the image it deleted (nil when the image keeps other tags).
public struct ImageRemoval: Sendable, Equatable {
    public var untagged: [String]
    public var deleted: ImageDigest?
}

/// DockLock's images on disk: imported from OCI layouts and `docker save` tarballs, or built from a directory;
/// each unpacked once into a root filesystem the runtime mounts read-only.
///
///     <root>/                 <node data dir>/docklock
///       lock                  flock'd by every writer: imports, builds and removals run one at a time
///       tags.json             {"version": 1, "tags": {"busybox:latest": "sha256:…"}}: the one truth for tags
///       blobs/sha256/<hex>    manifests, configs and layers, by content; each checked against its digest on the way in
///       images/<hex>.json     an ImageRecord per image (hex = the manifest digest's)
///       rootfs/<hex>/         the unpacked root filesystem
///       tmp/                  work in progress, emptied by each writer when it takes the lock
///
/// Every file is written to a temporary name and renamed into place, and a rootfs is unpacked under `tmp/` and
/// renamed to `rootfs/<hex>` only when every layer applied; the record is written after it, so an image is visible
/// (listed, resolvable) only when it is complete. A crash mid-import leaves work in `tmp/` and perhaps unreferenced
/// blobs, which the next writer clears. Readers (the daemon) take no lock: records and tags.json are replaced by
/// rename, so they always read a whole file.
///
/// Removing: a tag reference ("busybox") drops that tag, and the image with it when no tag is left; a digest
/// reference removes the image and all its tags. The image's record, rootfs and blobs no other image uses go.
/// Whether a container still runs on the image is the caller's to check (the store does not know containers).
public struct ImageStore: Sendable {
    public static let recordBytesMax = 1 << 20
    public static let tagIndexBytesMax = 16 << 20
    public static let tagsMax = 100_000

    public let root: String
    public let limits: LayerLimits
    /// Shared by copies of this store: the daemon resolves an image for every run.
    let resolved = ResolvedRecords()
    /// Told one line per step of a long import (per layer), for a CLI's stderr.
    public let progress: (@Sendable (String) -> Void)?

    public init(root: String, limits: LayerLimits = .standard, progress: (@Sendable (String) -> Void)? = nil) {
        self.root = root
        self.limits = limits
        self.progress = progress
    }

    var blobsDirectory: String { "\(root)/blobs/sha256" }
    var imagesDirectory: String { "\(root)/images" }
    var rootfsDirectory: String { "\(root)/rootfs" }
    var tmpDirectory: String { "\(root)/tmp" }
    var tagsPath: String { "\(root)/tags.json" }

    func blobPath(_ digest: ImageDigest) -> String { "\(blobsDirectory)/\(digest.hex)" }
    func recordPath(_ digest: ImageDigest) -> String { "\(imagesDirectory)/\(digest.hex).json" }

    /// The unpacked root filesystem of `record`, to be mounted read-only as a container's root. Never follow
    /// symlinks inside it on the host: they are the image's, meant to resolve inside the container.
    public func rootfsPath(of record: ImageRecord) -> String { "\(rootfsDirectory)/\(record.digest.hex)" }

    // MARK: Import and build

    /// Imports the image at `path`: an OCI image layout directory, or a `docker save` tarball (either format).
    /// It is tagged `tag` if given, else with the name the source gives (RepoTags, or the index annotations), else
    /// not at all (it is then reached by digest). Layers with setuid/setgid files are refused unless `allowSetuid`.
    public func importImage(from path: String, tag: String? = nil, allowSetuid: Bool = false) throws(DockLockError)
        -> ImageRecord {
        let wanted = try tag.map { (tag) throws(DockLockError) in try ImageReference.normalizeTag(tag) }
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw DockLockError(.notFound, "\(path) does not exist; give an OCI image layout directory or a "
                + "`docker save` tarball")
        }
        let files: any ImageSourceFiles = info.st_mode & S_IFMT == S_IFDIR
            ? ImageDirectorySource(root: path) : try ImageTarballSource(path: path)
        let plan = try ImagePlan.load(files, tag: wanted)
        let lock = try takeLock()
        return try cleaningUp(lock) { () throws(DockLockError) in
            try importLocked(plan, from: files, tag: wanted, allowSetuid: allowSetuid, lock: lock)
        }
    }

    private func importLocked(_ plan: ImagePlan, from files: any ImageSourceFiles, tag wanted: String?,
                              allowSetuid: Bool, lock: ImageStoreLock) throws(DockLockError) -> ImageRecord {
        // Blobs first, each checked as it is copied in.
        var layerDescriptors: [ImageDescriptor] = []
        for (number, layer) in plan.layers.enumerated() {
            let label = "layer \(number + 1)/\(plan.layers.count)"
            let digest = layer.expected.map { "\($0.digest.short)" } ?? layer.name
            progress?("\(label) \(digest): copying from \(files.what)")
            let stored = try ingest(layer.name, from: files, expected: layer.expected)
            if layer.expected == nil, let diffID = plan.config.rootfs?.diff_ids[number], diffID != stored.digest {
                throw DockLockError(.integrity, "\(layer.name) in \(files.what) has digest \(stored.digest), not the "
                    + "\(diffID) its config lists for layer \(number + 1); the tarball is corrupt or was altered")
            }
            layerDescriptors.append(layer.expected ?? ImageDescriptor(
                mediaType: ImageMediaType.ociLayer, digest: stored.digest, size: Int64(stored.size)))
        }
        // An old `docker save` has no manifest; one is made, in OCI form, from what was stored.
        let manifestBytes = plan.manifestBytes ?? ImageManifest(
            config: ImageDescriptor(mediaType: ImageMediaType.ociConfig, digest: plan.configDigest,
                                    size: Int64(plan.configBytes.count)),
            layers: layerDescriptors).canonicalBytes()
        try storeBlob(plan.configBytes, digest: plan.configDigest)
        return try commit(manifestBytes: manifestBytes, configDigest: plan.configDigest, config: plan.config,
                          layers: layerDescriptors.map(\.digest), tag: wanted ?? plan.sourceTag,
                          allowSetuid: allowSetuid, lock: lock)
    }

    /// Makes a one-layer image of the tree at `directory` (see `LayerTarWriter`: the same tree always gives the
    /// same digest) and stores it tagged `tag`. Its config sets only PATH; a container gives its own command.
    public func build(from directory: String, tag: String, allowSetuid: Bool = false) throws(DockLockError)
        -> ImageRecord {
        let tag = try ImageReference.normalizeTag(tag)
        guard ImageFiles.isDirectory(directory) else {
            throw DockLockError(.notFound, "\(directory) is not a directory; build makes an image from one")
        }
        let lock = try takeLock()
        return try cleaningUp(lock) { () throws(DockLockError) in
            try buildLocked(from: directory, tag: tag, allowSetuid: allowSetuid, lock: lock)
        }
    }

    private func buildLocked(from directory: String, tag: String, allowSetuid: Bool, lock: ImageStoreLock)
        throws(DockLockError) -> ImageRecord {
        let temporary = "\(tmpDirectory)/build-\(ImageSys.uniqueSuffix()).tar"
        defer { unlink(temporary) }
        let out = ImageBlobWriter(try ImageFD.open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600))
        var writer = LayerTarWriter(limits: limits, out: out)
        progress?("build: writing a layer of \(directory)")
        try writer.write(directory: directory)
        let layer = ImageDescriptor(mediaType: ImageMediaType.ociLayer, digest: try out.finish(),
                                    size: Int64(out.byteCount))
        try moveIntoBlobs(temporary, digest: layer.digest)

        let config = ImageConfigFile(
            architecture: ImagePlatform.host.architecture, os: "linux",
            config: .init(Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
            rootfs: .init(diffIDs: [layer.digest]))
        let configBytes = config.canonicalBytes()
        let configDigest = ImageDigest(sha256: SHA256Hasher.hash(configBytes))
        try storeBlob(configBytes, digest: configDigest)
        let manifest = ImageManifest(
            config: ImageDescriptor(mediaType: ImageMediaType.ociConfig, digest: configDigest,
                                    size: Int64(configBytes.count)),
            layers: [layer])
        return try commit(manifestBytes: manifest.canonicalBytes(), configDigest: configDigest, config: config,
                          layers: [layer.digest], tag: tag, allowSetuid: allowSetuid, lock: lock)
    }

    /// Runs a write under `lock`; if it fails, the blobs it stored that no image uses are deleted again.
    private func cleaningUp(_ lock: ImageStoreLock, _ body: () throws(DockLockError) -> ImageRecord)
        throws(DockLockError) -> ImageRecord {
        do {
            return try body()
        } catch {
            try? collectGarbage()
            throw error
        }
    }

    /// Stores the manifest, unpacks the layers (unless this image is already here) and writes the record and tag.
    private func commit(manifestBytes: [UInt8], configDigest: ImageDigest, config: ImageConfigFile,
                        layers: [ImageDigest], tag: String?, allowSetuid: Bool, lock: ImageStoreLock)
        throws(DockLockError) -> ImageRecord {
        let digest = ImageDigest(sha256: SHA256Hasher.hash(manifestBytes))
        try storeBlob(manifestBytes, digest: digest)
        var record: ImageRecord
        if let existing = try loadRecord(digest) {
            record = existing
            progress?("\(digest.short): already in the store")
        } else {
            let unpackedBytes = try unpack(digest, layers: layers, allowSetuid: allowSetuid)
            record = ImageRecord(digest: digest, tags: [], configDigest: configDigest, layers: layers,
                                 config: config.runConfig, sizeBytes: unpackedBytes,
                                 importedAtMs: Int64(Date().timeIntervalSince1970 * 1000))
        }
        var index = try loadTags()
        if let tag {
            guard index.tags[tag] != nil || index.tags.count < Self.tagsMax else {
                throw DockLockError(.limit, "the store has \(Self.tagsMax) tags; remove some images first")
            }
            index.tags[tag] = digest
        }
        record.tags = index.tags(of: digest)
        try ImageFiles.writeAtomically(record.jsonBytes(), to: recordPath(digest))
        if tag != nil { try ImageFiles.writeAtomically(index.jsonBytes(), to: tagsPath) }
        withExtendedLifetime(lock) {}
        return record
    }

    /// Unpacks the layers into `tmp/`, then renames the tree to `rootfs/<hex>`; on any failure nothing is left.
    /// Returns the bytes of file content unpacked.
    private func unpack(_ digest: ImageDigest, layers: [ImageDigest], allowSetuid: Bool) throws(DockLockError)
        -> UInt64 {
        let temporary = "\(tmpDirectory)/rootfs-\(digest.short)-\(ImageSys.uniqueSuffix())"
        let final = "\(rootfsDirectory)/\(digest.hex)"
        do {
            try ImageSys.call("mkdir \(temporary)") { mkdir(temporary, 0o755) }
            let root = try ImageFD.open(temporary, O_RDONLY | O_DIRECTORY)
            var unpacker = LayerUnpacker(root: root, policy: LayerEntryPolicy(limits: limits, allowSetuid: allowSetuid))
            for (number, layer) in layers.enumerated() {
                let what = "layer \(number + 1)/\(layers.count) (\(layer))"
                progress?("layer \(number + 1)/\(layers.count) \(layer.short): unpacking")
                try unpacker.apply(layerAt: blobPath(layer), what: what)
            }
            try ImageSys.syncFileSystem(root.fd, what: "syncfs \(temporary)")
            // A tree left by a crash between this rename and the record is complete, but is replaced anyway.
            try ImageFiles.removeTree(final)
            try ImageSys.call("rename \(temporary) to \(final)") { rename(temporary, final) }
            ImageFiles.syncDirectory(of: final)
            return unpacker.policy.unpackedBytes
        } catch {
            try? ImageFiles.removeTree(temporary)
            throw error
        }
    }

    // MARK: Blobs

    /// Copies blob `name` from `files` into the store, hashing it on the way: refused, and nothing kept, if it
    /// differs from `expected`. With `expected` already stored the copy is skipped (the store's copy was checked).
    private func ingest(_ name: String, from files: any ImageSourceFiles, expected: ImageDescriptor?)
        throws(DockLockError) -> (digest: ImageDigest, size: UInt64) {
        if let expected, ImageFiles.exists(blobPath(expected.digest)) {
            return (expected.digest, UInt64(expected.size))
        }
        let (source, size) = try files.open(name)
        let bytesMax = blobBytesMax
        guard size <= bytesMax else {
            throw DockLockError(.limit, "\(name) in \(files.what) is \(size) bytes; a layer may be at most \(bytesMax)")
        }
        let temporary = "\(tmpDirectory)/blob-\(ImageSys.uniqueSuffix())"
        defer { unlink(temporary) }
        let out = ImageBlobWriter(try ImageFD.open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = try source.read(into: buffer)
            if count == 0 { break }
            try out.write(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
        }
        let digest = try out.finish()
        if let expected {
            guard digest == expected.digest else {
                throw DockLockError(.integrity, "blob \(name) in \(files.what) has digest \(digest), not the "
                    + "\(expected.digest) its manifest names; the image is corrupt or was altered, so it is refused")
            }
            guard out.byteCount == UInt64(expected.size) else {
                throw DockLockError(.integrity, "blob \(name) in \(files.what) is \(out.byteCount) bytes, not the "
                    + "\(expected.size) its manifest says")
            }
        }
        try moveIntoBlobs(temporary, digest: digest)
        return (digest, out.byteCount)
    }

    /// The largest layer blob accepted: its unpacked bytes plus room for tar headers.
    private var blobBytesMax: UInt64 {
        let overhead = UInt64(limits.entriesMax).multipliedReportingOverflow(by: LayerUnpacker.inflatedOverheadBytesPerEntry)
        let total = limits.unpackedBytesMax.addingReportingOverflow(overhead.partialValue)
        return overhead.overflow || total.overflow ? .max : total.partialValue
    }

    private func moveIntoBlobs(_ temporary: String, digest: ImageDigest) throws(DockLockError) {
        let path = blobPath(digest)
        guard !ImageFiles.exists(path) else { return }
        try ImageSys.call("rename \(temporary) to \(path)") { rename(temporary, path) }
        ImageFiles.syncDirectory(of: path)
    }

    private func storeBlob(_ bytes: [UInt8], digest: ImageDigest) throws(DockLockError) {
        guard !ImageFiles.exists(blobPath(digest)) else { return }
        try ImageFiles.writeAtomically(bytes, to: blobPath(digest))
    }

    // MARK: Reading

    /// Every image, newest first.
    public func list() throws(DockLockError) -> [ImageRecord] {
        let index = try loadTags()
        var records: [ImageRecord] = []
        for name in try ImageFiles.list(imagesDirectory) where name.hasSuffix(".json") {
            let hex = String(name.dropLast(5))
            guard ImageDigest.isHex(hex, count: ImageDigest.hexCount),
                  var record = try loadRecord(try ImageDigest(parsing: ImageDigest.prefix + hex)) else { continue }
            record.tags = index.tags(of: record.digest)
            records.append(record)
        }
        return records.sorted { ($0.importedAtMs, $0.digest) > ($1.importedAtMs, $1.digest) }
    }

    /// The image `reference` names: a tag ("busybox", "busybox:1.36"; the tag defaults to "latest"), a digest
    /// ("sha256:<64 hex>"), or a unique prefix of one of at least 12 hex digits (with or without "sha256:").
    public func resolve(_ reference: String) throws(DockLockError) -> ImageRecord {
        // Versions first, then the reads: a file replaced in between is read again next time, never cached stale.
        let tagsVersion = FileVersion(of: tagsPath)
        if let hit = resolved.lookup(reference, tags: tagsVersion) { return hit }
        let index = try loadTags()
        var record: ImageRecord?
        var cacheable = false // a tag in the index or a whole digest; not a prefix, which a new image can make ambiguous
        var recordVersion: FileVersion?
        let hexPart = reference.hasPrefix(ImageDigest.prefix) ? String(reference.dropFirst(ImageDigest.prefix.count))
            : reference
        if reference.hasPrefix(ImageDigest.prefix) {
            guard ImageDigest.isHex(hexPart), hexPart.count >= ImageReference.digestPrefixMin,
                  hexPart.count <= ImageDigest.hexCount else {
                throw DockLockError(.invalid, "'\(LayerEntryPolicy.shown(reference))' is not a digest: write sha256: "
                    + "and \(ImageReference.digestPrefixMin)-\(ImageDigest.hexCount) lowercase hex digits")
            }
            cacheable = hexPart.count == ImageDigest.hexCount
        } else if let tag = try? ImageReference.normalizeTag(reference), let digest = index.tags[tag] {
            recordVersion = FileVersion(of: recordPath(digest))
            record = try loadRecord(digest)
            cacheable = true
        }
        if record == nil, ImageDigest.isHex(hexPart), hexPart.count >= ImageReference.digestPrefixMin,
           hexPart.count <= ImageDigest.hexCount {
            let matches = try ImageFiles.list(imagesDirectory).filter { $0.hasPrefix(hexPart) && $0.hasSuffix(".json") }
                .map { String($0.dropLast(5)) }.filter { ImageDigest.isHex($0, count: ImageDigest.hexCount) }
            guard matches.count <= 1 else {
                throw DockLockError(.invalid, "'\(reference)' is the start of \(matches.count) image digests "
                    + "(\(matches.map { String($0.prefix(16)) }.joined(separator: ", "))); give more digits")
            }
            if let hex = matches.first {
                let digest = try ImageDigest(parsing: ImageDigest.prefix + hex)
                recordVersion = FileVersion(of: recordPath(digest))
                record = try loadRecord(digest)
            }
        }
        guard var record else {
            throw DockLockError(.notFound, "no image '\(LayerEntryPolicy.shown(reference))' in the store (\(root)); "
                + "`metanode docklock image list` shows what is there, `metanode docklock image import PATH` adds one")
        }
        record.tags = index.tags(of: record.digest)
        if cacheable, let recordVersion {
            resolved.store(reference, tags: tagsVersion, recordPath: recordPath(record.digest), recordVersion: recordVersion,
                           record: record)
        }
        return record
    }

    /// The record of the image `reference` names (see `resolve`).
    public func inspect(_ reference: String) throws(DockLockError) -> ImageRecord { try resolve(reference) }

    /// The record of `digest`, or nil if the store has none. Tags are as of the record's last write.
    func loadRecord(_ digest: ImageDigest) throws(DockLockError) -> ImageRecord? {
        let path = recordPath(digest)
        guard ImageFiles.exists(path) else { return nil }
        let record = try ImageRecord.parse(try ImageFiles.read(path, bytesMax: Self.recordBytesMax, what: path),
                                           what: path)
        guard record.digest == digest else {
            throw DockLockError(.integrity, "\(path) holds the record of \(record.digest); the store is damaged "
                + "(remove the file and import the image again)")
        }
        return record
    }

    // MARK: Removal

    public func remove(_ reference: String) throws(DockLockError) -> ImageRemoval {
        let lock = try takeLock()
        var index = try loadTags()
        let record = try resolve(reference)
        var removal = ImageRemoval(untagged: [], deleted: nil)
        if let tag = try? ImageReference.normalizeTag(reference), index.tags[tag] == record.digest {
            index.tags[tag] = nil
            removal.untagged = [tag]
        } else {
            removal.untagged = index.tags(of: record.digest)
            for tag in removal.untagged { index.tags[tag] = nil }
        }
        if !removal.untagged.isEmpty { try ImageFiles.writeAtomically(index.jsonBytes(), to: tagsPath) }
        if index.tags(of: record.digest).isEmpty {
            // Invisible first (the record), then the tree and the blobs no other image uses.
            unlink(recordPath(record.digest))
            let doomed = "\(tmpDirectory)/removing-\(record.digest.short)-\(ImageSys.uniqueSuffix())"
            if rename(rootfsPath(of: record), doomed) == 0 { try ImageFiles.removeTree(doomed) }
            removal.deleted = record.digest
            try collectGarbage()
        }
        withExtendedLifetime(lock) {}
        return removal
    }

    /// Deletes blobs no record names, and rootfs trees without a record (left by a crash).
    private func collectGarbage() throws(DockLockError) {
        var keep: Set<String> = []
        var images: Set<String> = []
        for record in try list() {
            images.insert(record.digest.hex)
            keep.insert(record.digest.hex)
            keep.insert(record.configDigest.hex)
            for layer in record.layers { keep.insert(layer.hex) }
        }
        for name in try ImageFiles.list(blobsDirectory) where !keep.contains(name) { unlink("\(blobsDirectory)/\(name)") }
        for name in try ImageFiles.list(rootfsDirectory) where !images.contains(name) {
            try ImageFiles.removeTree("\(rootfsDirectory)/\(name)")
        }
    }

    // MARK: Tags and the lock

    struct TagIndex: Codable {
        static let currentVersion = 1
        var version = currentVersion
        var tags: [String: ImageDigest] = [:]

        func tags(of digest: ImageDigest) -> [String] { tags.filter { $0.value == digest }.map(\.key).sorted() }
        func jsonBytes() -> [UInt8] { ImageJSON.canonical(self, pretty: true) }
    }

    func loadTags() throws(DockLockError) -> TagIndex {
        guard ImageFiles.exists(tagsPath) else { return TagIndex() }
        let index = try ImageJSON.decode(TagIndex.self, try ImageFiles.read(tagsPath, bytesMax: Self.tagIndexBytesMax,
                                                                             what: tagsPath), what: tagsPath)
        guard index.version == TagIndex.currentVersion else {
            throw DockLockError(.invalid, "\(tagsPath) is version \(index.version); this DockLock reads version "
                + "\(TagIndex.currentVersion)")
        }
        return index
    }

    /// Creates the layout if needed, takes the writers' lock and clears what earlier (crashed) writers left in tmp/.
    private func takeLock() throws(DockLockError) -> ImageStoreLock {
        try ImageFiles.makeDirectory(root, mode: 0o700)
        for directory in [blobsDirectory, imagesDirectory, rootfsDirectory, tmpDirectory] {
            try ImageFiles.makeDirectory(directory, mode: 0o700)
        }
        let lock = try ImageStoreLock(path: "\(root)/lock")
        let tmp = try ImageFD.open(tmpDirectory, O_RDONLY | O_DIRECTORY)
        for name in try tmp.entries() { try tmp.removeTree(name) }
        return lock
    }
}

/// One version of a file: writers replace the store's files by rename, so a new version has a new inode.
struct FileVersion: Equatable {
    var device: UInt64, inode: UInt64, size: Int64, modifiedSeconds: Int, modifiedNanoseconds: Int

    init?(of path: String) {
        var info = Glibc.stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = info.st_mtim.tv_sec
        modifiedNanoseconds = info.st_mtim.tv_nsec
    }
}

/// Records `resolve` found, kept while tags.json and the record's file are the versions they were read from.
/// Reading and decoding both took about 0.15 ms of every run; checking their versions takes two stat calls.
final class ResolvedRecords: @unchecked Sendable {
    static let entriesMax = 64

    private struct Entry {
        var tags: FileVersion?
        var recordPath: String
        var recordVersion: FileVersion
        var record: ImageRecord
    }
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]

    func lookup(_ reference: String, tags: FileVersion?) -> ImageRecord? {
        guard let entry = lock.withLock({ entries[reference] }), entry.tags == tags,
              FileVersion(of: entry.recordPath) == entry.recordVersion else { return nil }
        return entry.record
    }

    func store(_ reference: String, tags: FileVersion?, recordPath: String, recordVersion: FileVersion,
               record: ImageRecord) {
        lock.withLock {
            if entries.count >= Self.entriesMax, entries[reference] == nil { entries.removeAll() }
            entries[reference] = Entry(tags: tags, recordPath: recordPath, recordVersion: recordVersion, record: record)
        }
    }
}
