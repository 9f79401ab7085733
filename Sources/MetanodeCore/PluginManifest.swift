/// Rules for plugin names: `^[a-z][a-z0-9-]*$`, at most `Limits.pluginNameBytesMax` characters, no trailing or double
/// hyphen. Names appear in URLs, metric names, storage prefixes and file paths, so they stay this plain.
public enum PluginName {
    /// Code `.invalidArgument`, saying which rule the name breaks.
    public static func validate(_ name: String) throws(MetanodeError) {
        func fail(_ why: String) -> MetanodeError {
            MetanodeError(
                .invalidArgument,
                "plugin name \(Text.quote(name)) \(why) (use lowercase letters, digits and single hyphens, starting with "
                    + "a letter, at most \(Limits.pluginNameBytesMax) characters)")
        }
        guard let first = name.utf8.first else { throw fail("is empty") }
        guard name.utf8.count <= Limits.pluginNameBytesMax else { throw fail("is \(name.utf8.count) characters long") }
        guard (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else {
            throw fail("does not start with a lowercase letter")
        }
        guard name.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || isLowerAlphanumeric($0) }) else {
            throw fail("contains a character other than a-z, 0-9 and '-'")
        }
        guard !name.hasSuffix("-") else { throw fail("ends with a hyphen") }
        guard !name.contains("--") else { throw fail("contains a double hyphen") }
    }

    public static func isValid(_ name: String) -> Bool {
        (try? validate(name)) != nil
    }

    static func isLowerAlphanumeric(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
    }
}

/// What a plugin may ask the kernel for. Granted by the operator when enabling a plugin; host functions of a
/// capability not granted return MN_ERR_DENIED.
public enum Capability: String, CaseIterable, Sendable, Comparable, CustomStringConvertible {
    case kv, crypto, sign, bus, timer, http, service, metrics, net

    /// What granting it allows, one line for `metanode plugin info` and the enable prompt.
    public var summary: String {
        switch self {
        case .kv: "read and write the plugin's own storage namespace"
        case .crypto: "hashing, signature verification and secure randomness"
        case .sign: "sign with the node's identity key (signatures are scoped to the plugin)"
        case .bus: "publish, subscribe and make requests on the in-process message bus"
        case .timer: "start and cancel timers"
        case .http: "serve HTTP routes under /v1/plugins/NAME/"
        case .service: "export and look up typed service tables shared between plugins"
        case .metrics: "publish metrics on /metrics"
        case .net: "send and receive messages to and from other nodes on its own protocols (ABI 1.1)"
        }
    }

    public var description: String { rawValue }

    /// Declaration order, which is also the order of the host vtable sections.
    public static func < (a: Capability, b: Capability) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// The plugin's shared library inside its package.
public struct LibraryEntry: Sendable, Hashable {
    /// A plain file name ending in ".so": no directories, made of [A-Za-z0-9._+-], not starting with '.'.
    public var file: String
    /// SHA-256 of the file as 64 lowercase hex digits. nil only in an unsigned package under development; the kernel
    /// decides whether to accept that.
    public var sha256: String?

    public init(file: String, sha256: String? = nil) {
        self.file = file
        self.sha256 = sha256
    }
}

/// A C function the plugin exports for `metanode plugin call` and `POST /v1/plugins/NAME/call/FUNCTION`.
public struct ExportedFunction: Sendable, Hashable {
    /// The name callers use: `[a-z_][a-z0-9_]*`, unique within the manifest.
    public var name: String
    public var prototype: CPrototype

    public init(name: String, prototype: CPrototype) {
        self.name = name
        self.prototype = prototype
    }
}

/// The package manifest `metanode-plugin.json`:
///
/// ```json
/// {
///   "name": "hello", "version": "1.0.0", "abi": "1.0", "description": "Says hello",
///   "library": {"file": "libhello.so", "sha256": "<64 lowercase hex digits>"},
///   "capabilities": ["kv", "http"],
///   "dependencies": {"greeter": "^1.2.0"},
///   "optionalDependencies": {"ledger": "^0.1.0"},
///   "exports": [{"name": "add", "signature": "int64_t hello_add(int64_t a, int64_t b)"}],
///   "configSchema": {"type": "object", "properties": {"greeting": {"type": "string", "default": "hi"}}}
/// }
/// ```
/// name, version, abi and library.file are required; the rest is optional. Unknown fields are refused (a misspelt
/// field would otherwise be silently ignored).
public struct PluginManifest: Sendable, Equatable {
    public static let fileName = "metanode-plugin.json"
    public static let signatureFileName = "metanode-plugin.json.minisig"
    public static let bytesMax = Limits.manifestBytesMax
    public static let fields = [
        "name", "version", "abi", "description", "library", "capabilities", "dependencies", "optionalDependencies",
        "exports", "configSchema",
    ]

    public var name: String
    public var version: SemanticVersion
    public var abi: ABIVersion
    public var description: String?
    public var library: LibraryEntry
    /// Sorted, without duplicates.
    public var capabilities: [Capability]
    /// Plugin name to the versions of it this plugin works with.
    public var dependencies: [String: VersionRange]
    /// Plugins this one uses when they run: each starts first if it is enabled and in range, but this plugin starts
    /// without it when it is absent, disabled, out of range or fails (DockLock and BPI's ledger).
    public var optionalDependencies: [String: VersionRange]
    public var exports: [ExportedFunction]
    public var configSchema: JSONSchema?

    /// Takes the fields as given (capabilities sorted and deduplicated); `validate()` checks the rules `parse` does.
    public init(
        name: String, version: SemanticVersion, abi: ABIVersion = .current, description: String? = nil,
        library: LibraryEntry, capabilities: [Capability] = [], dependencies: [String: VersionRange] = [:],
        optionalDependencies: [String: VersionRange] = [:], exports: [ExportedFunction] = [],
        configSchema: JSONSchema? = nil
    ) {
        self.name = name
        self.version = version
        self.abi = abi
        self.description = description
        self.library = library
        self.capabilities = Array(Set(capabilities)).sorted()
        self.dependencies = dependencies
        self.optionalDependencies = optionalDependencies
        self.exports = exports
        self.configSchema = configSchema
    }

    /// Equal fields, including the version's build metadata (which `SemanticVersion.==` ignores): a manifest is data.
    public static func == (a: PluginManifest, b: PluginManifest) -> Bool {
        a.name == b.name && a.version == b.version && a.version.build == b.version.build && a.abi == b.abi
            && a.description == b.description && a.library == b.library && a.capabilities == b.capabilities
            && a.dependencies == b.dependencies && a.optionalDependencies == b.optionalDependencies
            && a.exports == b.exports && a.configSchema == b.configSchema
    }

    // MARK: Parsing

    /// Parses and validates a manifest. Code `.invalidManifest` with a message naming the field, or `.limitExceeded`
    /// for a file over `bytesMax`.
    public static func parse(_ bytes: [UInt8]) throws(MetanodeError) -> PluginManifest {
        guard bytes.count <= bytesMax else {
            throw MetanodeError(.limitExceeded, "manifest is \(bytes.count) bytes; the limit is \(bytesMax) bytes")
        }
        let json: JSONValue
        do throws(MetanodeError) {
            json = try JSONValue.parse(bytes)
        } catch {
            throw MetanodeError(.invalidManifest, "manifest is not valid JSON: \(error.message)")
        }
        guard case .object(let object) = json else {
            throw MetanodeError(.invalidManifest, "manifest must be a JSON object, not \(json.typeName)")
        }
        try checkKnown(object, fields, field: nil)

        func string(_ key: String, in object: [String: JSONValue], field: String) throws(MetanodeError) -> String? {
            guard let value = object[key] else { return nil }
            guard let s = value.stringValue else { throw fieldError(field, "must be a string, not \(value.typeName)") }
            return s
        }
        func required(_ key: String) throws(MetanodeError) -> String {
            guard let s = try string(key, in: object, field: key) else { throw fieldError(key, "is required") }
            return s
        }
        /// Runs a parser of a field's text, putting the field name in front of its message.
        func field<T>(_ name: String, _ parse: () throws(MetanodeError) -> T) throws(MetanodeError) -> T {
            do throws(MetanodeError) {
                return try parse()
            } catch {
                throw fieldError(name, error.message)
            }
        }

        let nameText = try required("name")
        let versionText = try required("version")
        let version = try field("version") { () throws(MetanodeError) in try SemanticVersion(parsing: versionText) }
        let abiText = try required("abi")
        let abi = try field("abi") { () throws(MetanodeError) in try ABIVersion(parsing: abiText) }
        let description = try string("description", in: object, field: "description")

        guard let libraryValue = object["library"] else { throw fieldError("library", "is required") }
        guard case .object(let libraryObject) = libraryValue else {
            throw fieldError("library", "must be an object like {\"file\": \"libNAME.so\", \"sha256\": \"...\"}")
        }
        try checkKnown(libraryObject, ["file", "sha256"], field: "library")
        guard let file = try string("file", in: libraryObject, field: "library.file") else {
            throw fieldError("library.file", "is required")
        }
        let library = LibraryEntry(file: file, sha256: try string("sha256", in: libraryObject, field: "library.sha256"))

        var capabilities: [Capability] = []
        if let value = object["capabilities"] {
            guard let array = value.arrayValue else { throw fieldError("capabilities", "must be an array of names") }
            for (i, element) in array.enumerated() {
                let names = Capability.allCases.map(\.rawValue)
                guard let text = element.stringValue, let capability = Capability(rawValue: text) else {
                    let shown = Text.clip(element.serialized())
                    throw fieldError(
                        "capabilities[\(i)]",
                        "\(shown) is not a capability\(Text.didYouMean(element.stringValue ?? "", names)); "
                            + "known capabilities are \(names.joined(separator: ", "))"
                    )
                }
                guard !capabilities.contains(capability) else {
                    throw fieldError("capabilities[\(i)]", "'\(text)' is listed twice")
                }
                capabilities.append(capability)
            }
        }

        func ranges(_ key: String) throws(MetanodeError) -> [String: VersionRange] {
            var ranges: [String: VersionRange] = [:]
            guard let value = object[key] else { return ranges }
            guard let members = value.objectValue else {
                throw fieldError(
                    key, "must be an object of plugin name to version range, like {\"greeter\": \"^1.2.0\"}")
            }
            for name in JSONValue.sortedKeys(members) {
                guard let text = members[name]!.stringValue else {
                    throw fieldError("\(key).\(name)", "must be a version range string like \"^1.2.0\"")
                }
                ranges[name] = try field("\(key).\(name)") { () throws(MetanodeError) in
                    try VersionRange(parsing: text)
                }
            }
            return ranges
        }
        let dependencies = try ranges("dependencies")
        let optionalDependencies = try ranges("optionalDependencies")

        var exports: [ExportedFunction] = []
        if let value = object["exports"] {
            guard let array = value.arrayValue else { throw fieldError("exports", "must be an array") }
            for (i, element) in array.enumerated() {
                let at = "exports[\(i)]"
                guard case .object(let entry) = element else {
                    throw fieldError(
                        at,
                        "must be an object like {\"name\": \"add\", \"signature\": \"int64_t add(int64_t a, int64_t b)\"}"
                    )
                }
                try checkKnown(entry, ["name", "signature"], field: at)
                guard let name = try string("name", in: entry, field: "\(at).name") else {
                    throw fieldError("\(at).name", "is required")
                }
                guard let signature = try string("signature", in: entry, field: "\(at).signature") else {
                    throw fieldError("\(at).signature", "is required")
                }
                let prototype = try field("\(at).signature") { () throws(MetanodeError) in
                    try CPrototype(parsing: signature)
                }
                exports.append(ExportedFunction(name: name, prototype: prototype))
            }
        }

        var configSchema: JSONSchema?
        if let value = object["configSchema"] {
            configSchema = try field("configSchema") { () throws(MetanodeError) in try JSONSchema(value) }
        }

        let manifest = PluginManifest(
            name: nameText, version: version, abi: abi, description: description, library: library,
            capabilities: capabilities, dependencies: dependencies, optionalDependencies: optionalDependencies,
            exports: exports, configSchema: configSchema)
        try manifest.validate()
        return manifest
    }

    /// Checks the rules that do not depend on JSON syntax (also for manifests built in code). Code `.invalidManifest`.
    public func validate() throws(MetanodeError) {
        do throws(MetanodeError) {
            try PluginName.validate(name)
        } catch {
            throw Self.fieldError("name", error.message)
        }
        if let description, description.count > Limits.manifestDescriptionCharsMax {
            throw Self.fieldError(
                "description", "is \(description.count) characters; the limit is \(Limits.manifestDescriptionCharsMax)")
        }
        try Self.validateLibraryFile(library.file)
        if let sha256 = library.sha256, !Hex.isLowercase(sha256, count: 64) {
            throw Self.fieldError("library.sha256", "\(Text.quote(sha256)) is not 64 lowercase hex digits")
        }
        for (field, names) in [("dependencies", dependencies), ("optionalDependencies", optionalDependencies)] {
            for dependency in names.keys.sorted() {
                guard PluginName.isValid(dependency) else {
                    throw Self.fieldError(field, "\(Text.quote(dependency)) is not a valid plugin name")
                }
                guard dependency != name else { throw Self.fieldError(field, "a plugin cannot depend on itself") }
            }
        }
        if let both = dependencies.keys.sorted().first(where: { optionalDependencies[$0] != nil }) {
            throw Self.fieldError("optionalDependencies", "'\(both)' is in dependencies too; list it in one of them")
        }
        guard exports.count <= Limits.exportsMax else {
            throw Self.fieldError("exports", "has \(exports.count) entries; the limit is \(Limits.exportsMax)")
        }
        var names: Set<String> = []
        var symbols: Set<String> = []
        for (i, export) in exports.enumerated() {
            let valid =
                export.name.utf8.count <= Limits.exportNameBytesMax && export.name.first.map { !$0.isNumber } == true
                && export.name.utf8.allSatisfy { $0 == UInt8(ascii: "_") || PluginName.isLowerAlphanumeric($0) }
            guard valid else {
                throw Self.fieldError(
                    "exports[\(i)].name",
                    "\(Text.quote(export.name)) is not a valid export name "
                        + "(use [a-z_][a-z0-9_]*, at most \(Limits.exportNameBytesMax) characters)"
                )
            }
            guard names.insert(export.name).inserted else {
                throw Self.fieldError("exports[\(i)].name", "'\(export.name)' is exported twice")
            }
            guard symbols.insert(export.prototype.symbol).inserted else {
                throw Self.fieldError(
                    "exports[\(i)].signature", "symbol '\(export.prototype.symbol)' is exported twice")
            }
        }
    }

    /// The export callers know as `name`.
    public func export(named name: String) -> ExportedFunction? {
        exports.first { $0.name == name }
    }

    // MARK: Serialization

    /// The JSON form (optional fields omitted when absent; capabilities, dependencies and exports always present).
    public var jsonValue: JSONValue {
        var object: [String: JSONValue] = [
            "name": .string(name),
            "version": .string(version.description),
            "abi": .string(abi.description),
            "library": .object(
                ["file": .string(library.file)].merging(library.sha256.map { ["sha256": .string($0)] } ?? [:]) { a, _ in
                    a
                }),
            "capabilities": .array(capabilities.sorted().map { .string($0.rawValue) }),
            "dependencies": .object(dependencies.mapValues { .string($0.description) }),
            "exports": .array(
                exports.map { .object(["name": .string($0.name), "signature": .string($0.prototype.description)]) }),
        ]
        if let description { object["description"] = .string(description) }
        if !optionalDependencies.isEmpty {
            object["optionalDependencies"] = .object(optionalDependencies.mapValues { .string($0.description) })
        }
        if let configSchema { object["configSchema"] = configSchema.source }
        return .object(object)
    }

    /// Canonical pretty JSON with sorted keys and a trailing newline; `parse` gives back an equal manifest.
    public func serialized() -> [UInt8] {
        jsonValue.serializedBytes(pretty: true) + [UInt8(ascii: "\n")]
    }

    // MARK: Helpers

    /// Inner errors are folded into the message rather than attached as `cause`, which `description` would repeat.
    static func fieldError(_ field: String, _ message: String) -> MetanodeError {
        MetanodeError(.invalidManifest, "manifest field '\(field)': \(message)")
    }

    private static func checkKnown(_ object: [String: JSONValue], _ known: [String], field: String?)
        throws(MetanodeError)
    {
        for key in JSONValue.sortedKeys(object) where !known.contains(key) {
            let qualified = field.map { "\($0).\(key)" } ?? key
            throw MetanodeError(
                .invalidManifest,
                "unknown manifest field \(Text.quote(qualified))\(Text.didYouMean(key, known)) — known fields are "
                    + known.map { key in field.map { "\($0).\(key)" } ?? key }.joined(separator: ", "))
        }
    }

    private static func validateLibraryFile(_ file: String) throws(MetanodeError) {
        func fail(_ why: String) -> MetanodeError {
            fieldError("library.file", "\(Text.quote(file)) \(why) (expected a plain file name like libhello.so)")
        }
        guard !file.contains("/"), !file.contains("\\") else { throw fail("contains a path separator") }
        guard !file.contains("..") else { throw fail("contains '..'") }
        guard !file.hasPrefix(".") else { throw fail("starts with '.'") }
        guard file.utf8.count <= Limits.libraryFileNameBytesMax else {
            throw fail("is longer than \(Limits.libraryFileNameBytesMax) bytes")
        }
        guard file.utf8.allSatisfy({ isFileNameByte($0) }) else {
            throw fail("contains a character other than A-Z a-z 0-9 . _ + -")
        }
        guard file.hasSuffix(".so"), file.count > 3 else { throw fail("does not end in .so") }
    }

    private static func isFileNameByte(_ b: UInt8) -> Bool {
        SemanticVersion.isIdentifierByte(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "_")
            || b == UInt8(ascii: "+")
    }
}
