import DockLockCore
import Foundation
import MetanodeWire

/// The files an image is imported from: an OCI image layout directory, or the members of a tarball (`docker save`,
/// in either its old format or the OCI layout newer Docker writes). Names are relative ("index.json",
/// "blobs/sha256/<hex>", "<id>/layer.tar").
protocol ImageSourceFiles {
    /// Names the source in errors and progress ("OCI layout /tmp/img", "tarball busybox.tar").
    var what: String { get }
    func contains(_ name: String) -> Bool
    /// A small member (JSON), refused if larger than `bytesMax`.
    func read(_ name: String, bytesMax: Int) throws(DockLockError) -> [UInt8]
    /// A member as a stream, with its size.
    func open(_ name: String) throws(DockLockError) -> (source: any TarSource, size: UInt64)
}

/// An OCI image layout on disk: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
struct ImageDirectorySource: ImageSourceFiles {
    let root: String
    var what: String { "OCI layout \(root)" }

    func path(_ name: String) -> String { "\(root)/\(name)" }

    func contains(_ name: String) -> Bool { ImageFiles.exists(path(name)) }

    func read(_ name: String, bytesMax: Int) throws(DockLockError) -> [UInt8] {
        guard contains(name) else { throw missing(name) }
        return try ImageFiles.read(path(name), bytesMax: bytesMax, what: "\(name) in \(what)")
    }

    func open(_ name: String) throws(DockLockError) -> (source: any TarSource, size: UInt64) {
        guard contains(name) else { throw missing(name) }
        let file = try ImageFD.open(path(name), O_RDONLY)
        let info = try file.stat()
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw DockLockError(.invalid, "\(name) in \(what) is not a regular file")
        }
        return (TarFileSource(file: file), UInt64(info.st_size))
    }

    private func missing(_ name: String) -> DockLockError {
        DockLockError(.notFound, "\(what) has no \(name); the layout is incomplete (export the image again)")
    }
}

/// A tarball, indexed once (names to offsets) so its members can be read in any order without unpacking it.
final class ImageTarballSource: ImageSourceFiles {
    static let membersMax = 100_000
    /// Symlinks followed in a row when a name is looked up (old `docker save` links repeated layers).
    static let linkHopsMax = 8

    struct Member {
        var kind: LayerEntry.Kind
        var offset: UInt64
        var size: UInt64
        var link: String
    }

    let path: String
    let what: String
    private let file: ImageFD
    private var members: [String: Member] = [:]

    init(path: String) throws(DockLockError) {
        self.path = path
        what = "tarball \(path)"
        file = try ImageFD.open(path, O_RDONLY)
        var magic = [UInt8](repeating: 0, count: 2)
        let count = try ImageSys.typed { [file] in try magic.withUnsafeMutableBytes { try file.pread(into: $0, at: 0) } }
        if GzipSource.hasMagic(magic.prefix(count)) {
            throw DockLockError(.unsupported, "\(what) is gzip-compressed; decompress it first (gunzip), then import "
                + "the .tar")
        }
        let reader = TarReader(TarFileSource(file: file), what: what)
        while let entry = try reader.next() {
            guard members.count < Self.membersMax else {
                throw DockLockError(.limit, "\(what) has more than \(Self.membersMax) members; it is not an image")
            }
            guard let name = Self.normalize(entry.path) else { continue }
            members[name] = Member(kind: entry.kind, offset: reader.dataOffset, size: entry.size, link: entry.linkTarget)
        }
    }

    /// "./a//b/" → "a/b"; nil for the root or a name that climbs out ("..").
    static func normalize(_ name: String, from directory: String = "") -> String? {
        var parts = name.hasPrefix("/") ? [] : directory.split(separator: "/").map(String.init)
        for part in name.split(separator: "/") where part != "." {
            if part == ".." {
                guard !parts.isEmpty else { return nil }
                parts.removeLast()
            } else {
                parts.append(String(part))
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "/")
    }

    /// The regular-file member `name` refers to, through symlinks and hard links in the archive.
    private func member(_ name: String) throws(DockLockError) -> Member {
        var current = Self.normalize(name) ?? ""
        for _ in 0...Self.linkHopsMax {
            guard let member = members[current] else {
                throw DockLockError(.notFound, "\(what) has no member \(name); the tarball is incomplete (save the "
                    + "image again)")
            }
            switch member.kind {
            case .file: return member
            case .symlink:
                let directory = current.split(separator: "/").dropLast().joined(separator: "/")
                current = Self.normalize(member.link, from: directory) ?? ""
            case .hardLink: current = Self.normalize(member.link) ?? ""
            default:
                throw DockLockError(.invalid, "\(name) in \(what) is not a regular file")
            }
        }
        throw DockLockError(.invalid, "\(name) in \(what): more than \(Self.linkHopsMax) links in a row")
    }

    func contains(_ name: String) -> Bool { (try? member(name)) != nil }

    func read(_ name: String, bytesMax: Int) throws(DockLockError) -> [UInt8] {
        let member = try member(name)
        guard member.size <= UInt64(bytesMax) else {
            throw DockLockError(.limit, "\(name) in \(what) is \(member.size) bytes; at most \(bytesMax) are read")
        }
        var out = [UInt8](repeating: 0, count: Int(member.size))
        var done = 0
        while done < out.count {
            let offset = done
            let count = try ImageSys.typed {
                try out.withUnsafeMutableBytes {
                    try file.pread(into: UnsafeMutableRawBufferPointer(rebasing: $0[offset...]),
                                   at: member.offset + UInt64(offset))
                }
            }
            guard count > 0 else { throw DockLockError(.invalid, "\(what) is truncated inside \(name)") }
            done += count
        }
        return out
    }

    func open(_ name: String) throws(DockLockError) -> (source: any TarSource, size: UInt64) {
        let member = try member(name)
        return (TarFileSource(file: file, offset: member.offset, length: member.size), member.size)
    }
}

/// What an import reads from its source before anything is stored: the manifest (as given, or made for an old
/// `docker save`), the config, where each layer is, and the tag the source names.
struct ImagePlan {
    struct Layer {
        /// The member or file holding the layer blob.
        var name: String
        /// The descriptor's digest and size, checked as the blob is copied in; nil for an old `docker save`, whose
        /// layers are named by the config's diff_ids instead (checked after the copy).
        var expected: ImageDescriptor?
    }

    /// The manifest bytes and digest, known up front for OCI sources; made after the layers are copied otherwise.
    var manifestBytes: [UInt8]?
    var configBytes: [UInt8]
    var configDigest: ImageDigest
    var config: ImageConfigFile
    var layers: [Layer]
    var sourceTag: String?

    /// Reads an OCI layout (directory, or tarball with `index.json`) or an old-format `docker save` tarball.
    static func load(_ files: any ImageSourceFiles, tag wanted: String?) throws(DockLockError) -> ImagePlan {
        if files.contains("index.json") { return try loadOCI(files, tag: wanted) }
        if files.contains("manifest.json") { return try loadDockerSave(files, tag: wanted) }
        throw DockLockError(.invalid, "\(files.what) is neither an OCI image layout (oci-layout, index.json, blobs/) "
            + "nor a `docker save` tarball (manifest.json)")
    }

    static func blobName(_ digest: ImageDigest) -> String { "blobs/sha256/\(digest.hex)" }

    /// A small blob, checked against its descriptor before it is parsed.
    static func readBlob(_ files: any ImageSourceFiles, _ descriptor: ImageDescriptor) throws(DockLockError) -> [UInt8] {
        let name = blobName(descriptor.digest)
        let bytes = try files.read(name, bytesMax: ImageJSON.fileBytesMax)
        let actual = ImageDigest(sha256: SHA256Hasher.hash(bytes))
        guard actual == descriptor.digest else {
            throw DockLockError(.integrity, "\(name) in \(files.what) has digest \(actual), not the "
                + "\(descriptor.digest) that names it; the image is corrupt or was altered")
        }
        guard Int64(bytes.count) == descriptor.size else {
            throw DockLockError(.integrity, "\(name) in \(files.what) is \(bytes.count) bytes, not the "
                + "\(descriptor.size) its descriptor says")
        }
        return bytes
    }

    private static func loadOCI(_ files: any ImageSourceFiles, tag wanted: String?) throws(DockLockError) -> ImagePlan {
        let index = try ImageIndex.parse(try files.read("index.json", bytesMax: ImageJSON.fileBytesMax),
                                         what: "index.json in \(files.what)")
        let chosen = try choose(index.manifests, tag: wanted, in: files, what: "index.json in \(files.what)")
        var manifestDescriptor = chosen
        var manifestBytes = try readBlob(files, chosen)
        // A descriptor may name an image index (a multi-platform image): take this host's platform from it.
        if ImageMediaType.isIndex(chosen.mediaType) {
            let what = "image index \(chosen.digest) in \(files.what)"
            let nested = try ImageIndex.parse(manifestBytes, what: what)
            manifestDescriptor = try choose(nested.manifests, tag: nil, in: files, what: what)
            guard !ImageMediaType.isIndex(manifestDescriptor.mediaType) else {
                throw DockLockError(.unsupported, "\(what) nests an index in an index; DockLock reads one level")
            }
            manifestBytes = try readBlob(files, manifestDescriptor)
        }
        let manifest = try ImageManifest.parse(manifestBytes,
                                               what: "manifest \(manifestDescriptor.digest) in \(files.what)")
        let configBytes = try readBlob(files, manifest.config)
        let config = try ImageConfigFile.parse(configBytes, what: "config \(manifest.config.digest) in \(files.what)")
        var tag = chosen.annotatedTag
        if tag == nil, files.contains("manifest.json") {
            // Docker 25+ writes both; its manifest.json names the tag when the index annotations do not.
            let entries = try DockerSaveEntry.parse(try files.read("manifest.json", bytesMax: ImageJSON.fileBytesMax),
                                                    what: "manifest.json in \(files.what)")
            let entry = entries.first { ImageTarballSource.normalize($0.Config) == blobName(manifest.config.digest) }
            tag = entry?.RepoTags?.lazy.compactMap { try? ImageReference.normalizeTag($0) }.first
        }
        return ImagePlan(manifestBytes: manifestBytes, configBytes: configBytes, configDigest: manifest.config.digest,
                         config: config, layers: manifest.layers.map { Layer(name: blobName($0.digest), expected: $0) },
                         sourceTag: tag)
    }

    /// The one descriptor meant: the one tagged `tag` if given and present, else the only one, else the only one
    /// for this host's platform. Anything else is ambiguous and refused, listing the choices.
    private static func choose(_ descriptors: [ImageDescriptor], tag: String?, in files: any ImageSourceFiles,
                               what: String) throws(DockLockError) -> ImageDescriptor {
        let images = descriptors.filter { ImageMediaType.isIndex($0.mediaType) || ImageMediaType.isManifest($0.mediaType) }
        guard !images.isEmpty else { throw DockLockError(.invalid, "\(what) lists no image manifests") }
        if let tag, let tagged = images.first(where: { $0.annotatedTag == tag }) { return tagged }
        if images.count == 1 { return images[0] }
        let host = ImagePlatform.host
        let forHost = images.filter {
            $0.platform.map { $0.os == host.os && $0.architecture == host.architecture } ?? false
        }
        if forHost.count == 1 { return forHost[0] }
        let names = images.map { $0.annotatedTag ?? $0.platform.map { "\($0.os)/\($0.architecture)" } ?? "\($0.digest)" }
        throw DockLockError(.invalid, "\(what) holds \(images.count) images (\(names.joined(separator: ", "))); "
            + "name the one to import with --tag")
    }

    private static func loadDockerSave(_ files: any ImageSourceFiles, tag wanted: String?) throws(DockLockError)
        -> ImagePlan {
        let what = "manifest.json in \(files.what)"
        let entries = try DockerSaveEntry.parse(try files.read("manifest.json", bytesMax: ImageJSON.fileBytesMax),
                                                what: what)
        func tags(_ entry: DockerSaveEntry) -> [String] {
            (entry.RepoTags ?? []).compactMap { try? ImageReference.normalizeTag($0) }
        }
        let entry: DockerSaveEntry
        if let wanted, let tagged = entries.first(where: { tags($0).contains(wanted) }) {
            entry = tagged
        } else if entries.count == 1 {
            entry = entries[0]
        } else {
            throw DockLockError(.invalid, "\(what) holds \(entries.count) images ("
                + entries.map { tags($0).first ?? $0.Config }.joined(separator: ", ") + "); name one with --tag")
        }
        let configBytes = try files.read(entry.Config, bytesMax: ImageJSON.fileBytesMax)
        let configDigest = ImageDigest(sha256: SHA256Hasher.hash(configBytes))
        let config = try ImageConfigFile.parse(configBytes, what: "\(entry.Config) in \(files.what)")
        if let diffIDs = config.rootfs?.diff_ids, diffIDs.count != entry.Layers.count {
            throw DockLockError(.invalid, "\(files.what): \(entry.Config) lists \(diffIDs.count) layers but "
                + "manifest.json lists \(entry.Layers.count)")
        }
        return ImagePlan(manifestBytes: nil, configBytes: configBytes, configDigest: configDigest, config: config,
                         layers: entry.Layers.map { Layer(name: $0, expected: nil) }, sourceTag: tags(entry).first)
    }
}
