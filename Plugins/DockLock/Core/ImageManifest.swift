import Foundation
import MetanodeWire

// The JSON that describes an image, as OCI (image-spec 1.1) and Docker (`docker save`, schema 2) write it: index,
// manifest, config, descriptors and their media types; the record the store keeps per image; tags and digests.
// Pure values: the store (DockLockRuntime) reads the bytes, with a size cap, and decodes them here.

/// A content digest, "sha256:<64 lowercase hex>". The only algorithm DockLock accepts: OCI allows others, but every
/// image a registry or `docker save` produces uses SHA-256.
public struct ImageDigest: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public static let prefix = "sha256:"
    public static let hexCount = 64
    /// The 64 lowercase hex digits, which also name the blob, record and rootfs on disk.
    public let hex: String

    public init(parsing text: String) throws(DockLockError) {
        guard text.hasPrefix(Self.prefix) else {
            throw DockLockError(.invalid, "'\(Self.clip(text))' is not a digest: write sha256:<64 lowercase hex>")
        }
        let hex = String(text.dropFirst(Self.prefix.count))
        guard Self.isHex(hex, count: Self.hexCount) else {
            throw DockLockError(.invalid, "'\(Self.clip(text))' is not a digest: after 'sha256:' come exactly 64 "
                + "lowercase hex digits")
        }
        self.hex = hex
    }

    /// The digest of a 32-byte SHA-256 output.
    public init(sha256 bytes: [UInt8]) {
        precondition(bytes.count == 32, "a SHA-256 digest is 32 bytes, not \(bytes.count)")
        hex = Hex.encode(bytes)
    }

    public var description: String { Self.prefix + hex }
    /// The first 12 hex digits, as listings show an image.
    public var short: String { String(hex.prefix(12)) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.hex < rhs.hex }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try Self(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// Whether `text` is `count` lowercase hex digits (any count when nil).
    public static func isHex(_ text: String, count: Int? = nil) -> Bool {
        (count.map { text.utf8.count == $0 } ?? true)
            && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Untrusted text in an error message, cut to a readable length.
    static func clip(_ text: String) -> String { text.count <= 80 ? text : String(text.prefix(80)) + "…" }
}

/// The media types DockLock reads. Layers are recognised by magic bytes when unpacked (gzip or plain tar), so the
/// layer types here only decide what is refused outright (zstd, encrypted, anything that is not a layer).
public enum ImageMediaType {
    public static let ociLayout = "1.0.0"  // the "imageLayoutVersion" in oci-layout
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let ociLayer = "application/vnd.oci.image.layer.v1.tar"
    public static let ociLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let ociLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    public static let dockerLayer = "application/vnd.docker.image.rootfs.diff.tar"
    public static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    public static let dockerLayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

    static let layers: Set<String> = [
        ociLayer, ociLayerGzip, dockerLayer, dockerLayerGzip, dockerLayerForeignGzip,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    ]
    static let configs: Set<String> = [ociConfig, dockerConfig]

    public static func isIndex(_ type: String?) -> Bool { type == ociIndex || type == dockerManifestList }
    public static func isManifest(_ type: String?) -> Bool { type == ociManifest || type == dockerManifest }
}

/// Where an OCI descriptor's name for an image lives. containerd (and `docker save` since Docker 25) write the full
/// name in `io.containerd.image.name` and the tag alone in `org.opencontainers.image.ref.name`; other tools write
/// the whole reference in `ref.name`. The full name is preferred.
public enum ImageAnnotation {
    public static let refName = "org.opencontainers.image.ref.name"
    public static let containerdName = "io.containerd.image.name"
}

public struct ImagePlatform: Codable, Equatable, Sendable {
    public var architecture: String
    public var os: String
    public var variant: String?

    public init(architecture: String, os: String, variant: String? = nil) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
    }

    /// This machine, as OCI names it.
    public static var host: ImagePlatform {
        #if arch(x86_64)
        ImagePlatform(architecture: "amd64", os: "linux")
        #elseif arch(arm64)
        ImagePlatform(architecture: "arm64", os: "linux")
        #else
        ImagePlatform(architecture: "unknown", os: "linux")
        #endif
    }
}

/// A pointer to content: its media type, digest and size.
public struct ImageDescriptor: Codable, Equatable, Sendable {
    public var mediaType: String
    public var digest: ImageDigest
    public var size: Int64
    public var annotations: [String: String]?
    public var platform: ImagePlatform?

    public init(mediaType: String, digest: ImageDigest, size: Int64, annotations: [String: String]? = nil,
                platform: ImagePlatform? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
        self.platform = platform
    }

    /// The image name its annotations give, as a normalized tag ("busybox:latest"), or nil.
    public var annotatedTag: String? {
        let names = [annotations?[ImageAnnotation.containerdName], annotations?[ImageAnnotation.refName]]
        return names.lazy.compactMap { $0 }.compactMap { try? ImageReference.normalizeTag($0) }.first
    }
}

/// `index.json` of an OCI layout, or an image index / Docker manifest list blob.
public struct ImageIndex: Codable, Equatable, Sendable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var manifests: [ImageDescriptor]

    public static func parse(_ bytes: [UInt8], what: String) throws(DockLockError) -> ImageIndex {
        let index = try ImageJSON.decode(ImageIndex.self, bytes, what: what)
        guard index.schemaVersion == 2 else {
            throw DockLockError(.invalid, "\(what) has schemaVersion \(index.schemaVersion); only 2 is defined")
        }
        guard index.manifests.count <= ImageJSON.descriptorsMax else {
            throw DockLockError(.limit, "\(what) lists \(index.manifests.count) manifests; at most "
                + "\(ImageJSON.descriptorsMax) are read")
        }
        return index
    }
}

/// An image manifest: one config and the layers, bottom first.
public struct ImageManifest: Codable, Equatable, Sendable {
    /// Docker refuses more than 127 layers; so does DockLock (plus one, for images built elsewhere to the limit).
    public static let layersMax = 128

    public var schemaVersion: Int
    public var mediaType: String?
    public var config: ImageDescriptor
    public var layers: [ImageDescriptor]

    public init(config: ImageDescriptor, layers: [ImageDescriptor]) {
        schemaVersion = 2
        mediaType = ImageMediaType.ociManifest
        self.config = config
        self.layers = layers
    }

    public static func parse(_ bytes: [UInt8], what: String) throws(DockLockError) -> ImageManifest {
        let manifest = try ImageJSON.decode(ImageManifest.self, bytes, what: what)
        guard manifest.schemaVersion == 2 else {
            throw DockLockError(.invalid, "\(what) has schemaVersion \(manifest.schemaVersion); only 2 is defined")
        }
        if let type = manifest.mediaType, !ImageMediaType.isManifest(type) {
            throw DockLockError(.invalid, "\(what) has media type \(type), not an image manifest")
        }
        guard ImageMediaType.configs.contains(manifest.config.mediaType) else {
            throw DockLockError(.invalid, "\(what): the config has media type \(manifest.config.mediaType), not an "
                + "image config; this is not a container image (an artifact?)")
        }
        guard manifest.layers.count <= layersMax else {
            throw DockLockError(.limit, "\(what) has \(manifest.layers.count) layers; at most \(layersMax) are allowed")
        }
        for (number, layer) in manifest.layers.enumerated() where !ImageMediaType.layers.contains(layer.mediaType) {
            let hint = layer.mediaType.contains("zstd") ? "zstd layers are not supported; re-export with gzip"
                : layer.mediaType.contains("encrypted") ? "encrypted layers are not supported"
                : "DockLock unpacks tar and tar+gzip layers only"
            throw DockLockError(layer.mediaType.contains("zstd") ? .unsupported : .invalid,
                                "\(what): layer \(number + 1) (\(layer.digest)) has media type \(layer.mediaType); "
                                    + hint)
        }
        for descriptor in [manifest.config] + manifest.layers where descriptor.size < 0 {
            throw DockLockError(.invalid, "\(what): \(descriptor.digest) has a negative size")
        }
        return manifest
    }

    /// The canonical bytes of a manifest DockLock writes (built images, `docker save` tarballs in the old format):
    /// sorted keys, no whitespace, so equal content gives an equal digest.
    public func canonicalBytes() -> [UInt8] { ImageJSON.canonical(self) }
}

/// The parts of an image config (`application/vnd.oci.image.config.v1+json`) DockLock uses.
public struct ImageConfigFile: Codable, Equatable, Sendable {
    public struct Container: Codable, Equatable, Sendable {
        public var Env: [String]?
        public var Entrypoint: [String]?
        public var Cmd: [String]?
        public var WorkingDir: String?
        public var User: String?

        public init(Env: [String]? = nil, Entrypoint: [String]? = nil, Cmd: [String]? = nil, WorkingDir: String? = nil,
                    User: String? = nil) {
            self.Env = Env
            self.Entrypoint = Entrypoint
            self.Cmd = Cmd
            self.WorkingDir = WorkingDir
            self.User = User
        }
    }

    public struct RootFS: Codable, Equatable, Sendable {
        public var type: String
        public var diff_ids: [ImageDigest]

        public init(diffIDs: [ImageDigest]) {
            type = "layers"
            diff_ids = diffIDs
        }
    }

    public var architecture: String?
    public var os: String?
    public var config: Container?
    public var rootfs: RootFS?

    public init(architecture: String?, os: String?, config: Container?, rootfs: RootFS?) {
        self.architecture = architecture
        self.os = os
        self.config = config
        self.rootfs = rootfs
    }

    public static func parse(_ bytes: [UInt8], what: String) throws(DockLockError) -> ImageConfigFile {
        let file = try ImageJSON.decode(ImageConfigFile.self, bytes, what: what)
        if let os = file.os, os != "linux" {
            throw DockLockError(.unsupported, "\(what) is a \(os) image; DockLock runs linux images only")
        }
        return file
    }

    /// What the runtime needs from the config: defaults for the command, environment, directory and user.
    public var runConfig: ImageRunConfig {
        ImageRunConfig(env: config?.Env ?? [], entrypoint: config?.Entrypoint, cmd: config?.Cmd,
                       workingDir: config?.WorkingDir ?? "", user: config?.User ?? "")
    }

    public func canonicalBytes() -> [UInt8] { ImageJSON.canonical(self) }
}

/// One image in a `docker save` tarball's `manifest.json` (an array of these).
public struct DockerSaveEntry: Codable, Equatable, Sendable {
    public var Config: String
    public var RepoTags: [String]?
    public var Layers: [String]

    public init(Config: String, RepoTags: [String]?, Layers: [String]) {
        self.Config = Config
        self.RepoTags = RepoTags
        self.Layers = Layers
    }

    public static func parse(_ bytes: [UInt8], what: String) throws(DockLockError) -> [DockerSaveEntry] {
        let entries = try ImageJSON.decode([DockerSaveEntry].self, bytes, what: what)
        guard !entries.isEmpty else { throw DockLockError(.invalid, "\(what) lists no images") }
        guard entries.count <= ImageJSON.descriptorsMax else {
            throw DockLockError(.limit, "\(what) lists \(entries.count) images; at most \(ImageJSON.descriptorsMax)")
        }
        for entry in entries where entry.Layers.count > ImageManifest.layersMax {
            throw DockLockError(.limit, "\(what): \(entry.Config) has \(entry.Layers.count) layers; at most "
                + "\(ImageManifest.layersMax) are allowed")
        }
        return entries
    }
}

/// The defaults an image gives a container. Empty `workingDir` means "/", empty `user` means root.
public struct ImageRunConfig: Codable, Equatable, Sendable {
    public var env: [String]
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var workingDir: String
    public var user: String

    public init(env: [String] = [], entrypoint: [String]? = nil, cmd: [String]? = nil, workingDir: String = "",
                user: String = "") {
        self.env = env
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.workingDir = workingDir
        self.user = user
    }
}

/// What the store keeps per image (`images/<hex>.json`). `tags` is filled from the tag index when read: the index
/// is the one truth for tags (it moves in one atomic rename), the copy in the file is as of its last write.
public struct ImageRecord: Codable, Equatable, Sendable {
    public static let currentVersion = 1

    public var version: Int
    /// The manifest's digest: the image's identity.
    public var digest: ImageDigest
    public var tags: [String]
    public var configDigest: ImageDigest
    /// Layer blob digests, bottom first (as stored: compressed layers keep their compressed digest).
    public var layers: [ImageDigest]
    public var config: ImageRunConfig
    /// Bytes of regular-file content in the unpacked root filesystem.
    public var sizeBytes: UInt64
    public var importedAtMs: Int64

    public init(digest: ImageDigest, tags: [String], configDigest: ImageDigest, layers: [ImageDigest],
                config: ImageRunConfig, sizeBytes: UInt64, importedAtMs: Int64) {
        version = Self.currentVersion
        self.digest = digest
        self.tags = tags
        self.configDigest = configDigest
        self.layers = layers
        self.config = config
        self.sizeBytes = sizeBytes
        self.importedAtMs = importedAtMs
    }

    public static func parse(_ bytes: [UInt8], what: String) throws(DockLockError) -> ImageRecord {
        let record = try ImageJSON.decode(ImageRecord.self, bytes, what: what)
        guard record.version == currentVersion else {
            throw DockLockError(.invalid, "\(what) is a version-\(record.version) image record; this DockLock reads "
                + "version \(currentVersion)")
        }
        return record
    }

    public func jsonBytes() -> [UInt8] { ImageJSON.canonical(self, pretty: true) }
}

/// Image names as tags: "busybox" means "busybox:latest"; Docker Hub's long forms shorten to what `docker images`
/// shows ("docker.io/library/busybox:1.36" is "busybox:1.36").
public enum ImageReference {
    public static let defaultTag = "latest"
    public static let referenceBytesMax = 255
    /// Docker's limit on the part after the colon.
    public static let tagBytesMax = 128
    /// The shortest digest prefix `resolve` accepts, so a prefix rarely names two images.
    public static let digestPrefixMin = 12

    /// `text` as a normalized "name:tag".
    public static func normalizeTag(_ text: String) throws(DockLockError) -> String {
        let shown = ImageDigest.clip(text)
        guard !text.isEmpty, text.utf8.count <= referenceBytesMax else {
            throw DockLockError(.invalid, "an image name is 1-\(referenceBytesMax) bytes; '\(shown)' is not")
        }
        guard !text.contains("@") else {
            throw DockLockError(.invalid, "'\(shown)' carries a digest; a tag is name[:tag] (refer to an image by "
                + "digest with sha256:<hex>)")
        }
        var name = text
        var tag = defaultTag
        // The tag follows the last colon, unless that colon is a registry port ("localhost:5000/app").
        if let colon = text.lastIndex(of: ":"), !text[colon...].contains("/") {
            name = String(text[..<colon])
            tag = String(text[text.index(after: colon)...])
        }
        for prefix in ["docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"]
        where name.hasPrefix(prefix) {
            name = String(name.dropFirst(prefix.count))
            break
        }
        let tagBytes = Array(tag.utf8)
        guard !tagBytes.isEmpty, tagBytes.count <= tagBytesMax, tagBytes[0] != 0x2E, tagBytes[0] != 0x2D,
              tagBytes.allSatisfy({ isAlphanumeric($0) || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D }) else {
            throw DockLockError(.invalid, "'\(shown)': a tag is 1-\(tagBytesMax) of A-Z a-z 0-9 _ . - and does not "
                + "start with . or -")
        }
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        for (position, component) in components.enumerated() {
            let bytes = Array(component.utf8)
            // The first of several components may be a registry host, with a port and capitals.
            let isHost = position == 0 && components.count > 1
            guard let first = bytes.first, let last = bytes.last, isAlphanumeric(first), isAlphanumeric(last),
                  bytes.allSatisfy({ isHost ? isHostByte($0) : isNameByte($0) }) else {
                throw DockLockError(.invalid, "'\(shown)' is not an image name: each '/'-separated part is lowercase "
                    + "a-z 0-9 with . _ - between them")
            }
        }
        return "\(name):\(tag)"
    }

    private static func isHostByte(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == 0x2E || byte == 0x2D || byte == 0x3A  // . - :
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        let lowercase = (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
        return lowercase || byte == 0x2E || byte == 0x5F || byte == 0x2D  // . _ -
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }
}

/// JSON in and out, bounded and with errors that name the file.
public enum ImageJSON {
    /// Manifests, configs, indexes and records are small; a larger file is refused before it is parsed.
    public static let fileBytesMax = 4 << 20
    /// Manifests in an index, images in a `docker save` manifest.
    public static let descriptorsMax = 1024

    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], what: String) throws(DockLockError) -> T {
        guard bytes.count <= fileBytesMax else {
            throw DockLockError(.limit, "\(what) is \(bytes.count) bytes; at most \(fileBytesMax) are read")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw DockLockError(.invalid, "\(what) is not valid: \(describe(error))")
        } catch {
            throw DockLockError(.invalid, "\(what) is not valid JSON: \(error)")
        }
    }

    /// Sorted keys, no escaped slashes: the same value always gives the same bytes.
    public static func canonical<T: Encodable>(_ value: T, pretty: Bool = false) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
            : [.sortedKeys, .withoutEscapingSlashes]
        // Encoding these plain structs cannot fail (no non-finite floats, no throwing encode(to:)).
        guard let data = try? encoder.encode(value) else { preconditionFailure("JSON encoding of \(T.self) failed") }
        return [UInt8](data)
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return keys.isEmpty ? "" : "at \(keys.hasPrefix(".") ? String(keys.dropFirst()) : keys): "
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context))missing field \"\(key.stringValue)\""
        case .typeMismatch(let type, let context): return "\(path(context))expected \(type)"
        case .valueNotFound(let type, let context): return "\(path(context))expected \(type), found null"
        case .dataCorrupted(let context): return "\(path(context))\(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
