import ArgumentParser
import DockLockCore
import DockLockRuntime
import Foundation
import MetanodeCore
import MetanodeKernel

/// `metanode docklock image …`: the image store in `<data-dir>/docklock`, used directly (no node needs to run; a
/// running node reads the same store).
struct DockLockImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Import, build, list, inspect and remove container images.",
        discussion: """
            Images live in <data-dir>/docklock: blobs by digest, one record per image, the unpacked root \
            filesystem the runtime mounts read-only. Refer to an image by tag (busybox, busybox:1.36; the tag \
            defaults to latest), by digest (sha256:…) or by a unique digest prefix of 12 or more hex digits. \
            Layers are checked as they unpack: entries that would escape the root, device nodes and (unless \
            --allow-setuid) setuid files refuse the whole image.
            """,
        subcommands: [Import.self, Build.self, List.self, Inspect.self, Remove.self])

    /// The store of `data`, its failures reported as the CLI reports errors. Progress goes to stderr when asked.
    static func store(_ data: DataDirectory, progress: Bool = false) -> Store {
        let root = data.root + "/docklock"
        guard progress else { return Store(images: ImageStore(root: root)) }
        return Store(images: ImageStore(root: root, progress: { @Sendable line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }))
    }

    /// `ImageStore` with `MetanodeError`s, for commands.
    struct Store {
        let images: ImageStore

        func resolve(_ reference: String) throws(MetanodeError) -> ImageRecord {
            try run("image \(reference)") { () throws(DockLockError) in try images.resolve(reference) }
        }

        func run<T>(_ what: String, _ body: () throws(DockLockError) -> T) throws(MetanodeError) -> T {
            do { return try body() } catch { throw ReceiptCommand.failure(error, what) }
        }
    }

    /// A record as JSON, with where its root filesystem is.
    static func json(_ record: ImageRecord, _ store: Store) throws(MetanodeError) -> JSONValue {
        var value = try JSONValue.parse(record.jsonBytes())
        if case .object(var fields) = value {
            fields["rootfs"] = .string(store.images.rootfsPath(of: record))
            value = .object(fields)
        }
        return value
    }

    static func summary(_ record: ImageRecord) -> String {
        let name = record.tags.first ?? record.digest.short
        return "\(name) \(record.digest) (\(record.layers.count) layer\(record.layers.count == 1 ? "" : "s"), "
            + "\(formatBytes(record.sizeBytes)))"
    }

    static func formatBytes(_ bytes: UInt64) -> String {
        bytes < 1 << 20 ? String(format: "%.1f kB", Double(bytes) / 1e3) : String(format: "%.1f MB", Double(bytes) / 1e6)
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Import an OCI image layout directory or a `docker save` tarball.",
            discussion: "The tag defaults to the one the image names (RepoTags or the index annotations).")
        @OptionGroup var options: CommonOptions
        @Argument(help: "An OCI image layout directory, or a tarball from `docker save`.") var path: String
        @Option(help: "Tag it NAME[:TAG] (the tag defaults to latest).") var tag: String?
        @Flag(name: .customLong("allow-setuid"), help: "Keep setuid/setgid files instead of refusing the image.")
        var allowSetuid = false

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let store = DockLockImageCommand.store(options.dataDirectory, progress: !options.json)
                let absolute = FileIO.absolute(path)
                let record = try store.run("import \(path)") { () throws(DockLockError) in
                    try store.images.importImage(from: absolute, tag: tag, allowSetuid: allowSetuid)
                }
                Output.emit(options, json: try DockLockImageCommand.json(record, store),
                            text: "imported \(DockLockImageCommand.summary(record))")
            }
        }
    }

    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "build",
            abstract: "Make a one-layer image from a directory (the same tree always gives the same digest).",
            discussion: "Symlinks are kept; files are owned by root with mtime 0. The image sets only PATH: give a "
                + "command when you run it.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The directory that becomes the image's root filesystem.") var directory: String
        @Option(help: "Tag it NAME[:TAG].") var tag: String
        @Flag(name: .customLong("allow-setuid"), help: "Keep setuid/setgid files instead of refusing the image.")
        var allowSetuid = false

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let store = DockLockImageCommand.store(options.dataDirectory, progress: !options.json)
                let absolute = FileIO.absolute(directory)
                let record = try store.run("build \(directory)") { () throws(DockLockError) in
                    try store.images.build(from: absolute, tag: tag, allowSetuid: allowSetuid)
                }
                Output.emit(options, json: try DockLockImageCommand.json(record, store),
                            text: "built \(DockLockImageCommand.summary(record))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The images in the store.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let store = DockLockImageCommand.store(options.dataDirectory)
                let records = try store.run("image list") { () throws(DockLockError) in try store.images.list() }
                var json: [JSONValue] = []
                for record in records { json.append(try DockLockImageCommand.json(record, store)) }
                let rows = records.flatMap { record in
                    (record.tags.isEmpty ? ["<none>"] : record.tags).map { tag in
                        [tag, record.digest.short, String(record.layers.count),
                         DockLockImageCommand.formatBytes(record.sizeBytes),
                         ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(record.importedAtMs) / 1000))]
                    }
                }
                Output.emit(options, json: .array(json), text: records.isEmpty
                    ? "no images (add one with `metanode docklock image import PATH` or `… image build DIR --tag T`)"
                    : Output.table(["TAG", "DIGEST", "LAYERS", "SIZE", "IMPORTED"], rows))
            }
        }
    }

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inspect", abstract: "An image's record: digest, tags, layers, config.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "A tag, a digest or a unique digest prefix.") var reference: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let store = DockLockImageCommand.store(options.dataDirectory)
                let json = try DockLockImageCommand.json(try store.resolve(reference), store)
                Output.emit(options, json: json, text: json.serialized(pretty: true))
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove a tag, or an image.",
            discussion: "A tag reference drops that tag, and the image with it when it has no other tag; a digest "
                + "reference removes the image and all its tags. Its root filesystem and the blobs no other image "
                + "uses are deleted. If the node is running, an image its running containers use is refused "
                + "unless --force.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "A tag, a digest or a unique digest prefix.") var reference: String
        @Flag(help: "Delete the image even if running containers use it (their files vanish under them).")
        var force = false

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let store = DockLockImageCommand.store(options.dataDirectory)
                if !force { try refuseIfInUse(store) }
                let removal = try store.run("rm \(reference)") { () throws(DockLockError) in
                    try store.images.remove(reference)
                }
                let lines = removal.untagged.map { "untagged \($0)" } + (removal.deleted.map { ["deleted \($0)"] } ?? [])
                Output.emit(options, json: .object([
                    "untagged": .array(removal.untagged.map(JSONValue.string)),
                    "deleted": removal.deleted.map { .string($0.description) } ?? .null,
                ]), text: lines.joined(separator: "\n"))
            }
        }

        /// The running node's containers that use the image this removal would delete (the store is written here,
        /// not through the node, so the node is asked). No node running: no container is running either. A container
        /// starting between this check and the removal is not caught.
        func refuseIfInUse(_ store: DockLockImageCommand.Store) throws(MetanodeError) {
            let record = try store.resolve(reference)
            let tag = try? ImageReference.normalizeTag(reference)
            let keepsAnotherTag = tag.map { tag in record.tags.contains(tag) && record.tags.count > 1 } ?? false
            guard !keepsAnotherTag, options.dataDirectory.runningNodeAddress() != nil else { return }
            let answer: JSONValue
            do {
                answer = try RunningNode.get(options.dataDirectory, "\(DockLockCommand.apiPrefix)/containers")
            } catch where error.code == .io || error.code == .notFound {
                return // no node answering (left its address file behind when it crashed), or no DockLock in it
            }
            let using = (answer["containers"]?.arrayValue ?? []).filter {
                $0["state"]?.stringValue == "running" && $0["image"]?.stringValue == record.digest.description
            }.compactMap { $0["id"]?.stringValue }
            guard using.isEmpty else {
                throw MetanodeError(.denied, "image \(record.digest.short) is in use by running container(s) "
                    + "\(using.joined(separator: ", ")); kill them first (metanode docklock kill ID), or pass --force")
            }
        }
    }
}
