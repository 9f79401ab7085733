import ArgumentParser
import Foundation
import MetanodeCore
import MetanodeCrypto
import MetanodeKernel

struct PluginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin", abstract: "Install, enable and inspect plugins; build and sign your own.",
        discussion: """
            Changes to installed or enabled plugins take effect when the node (re)starts.
            """,
        subcommands: [List.self, Info.self, Install.self, Enable.self, Disable.self, Uninstall.self, Verify.self,
                      Config.self, Call.self, New.self, Keygen.self, Sign.self])

    static func restartHint(_ data: DataDirectory) -> String {
        data.runningNodeAddress() == nil ? "" : "\nthe node is running: restart it to apply this change"
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Installed plugins and their state.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let infos = try PluginManager(options.dataDirectory).list()
                let live = (try? RunningNode.get(options.dataDirectory, "/v1/plugins"))?.arrayValue ?? []
                func running(_ name: String) -> String? {
                    live.first { $0["name"]?.stringValue == name }?["status"]?.stringValue
                }
                let rows = infos.map { info in
                    [info.name, info.version ?? "?", info.source.rawValue, info.state, running(info.name) ?? "-",
                     info.grants.joined(separator: ","),
                     info.quarantine?.reason ?? info.problem ?? ""]
                }
                Output.emit(options, json: .array(infos.map { info in
                    var json = info.json
                    if case .object(var object) = json, let status = running(info.name) {
                        object["running"] = .string(status)
                        json = .object(object)
                    }
                    return json
                }), text: infos.isEmpty ? "no plugins installed"
                    : Output.table(["NAME", "VERSION", "SOURCE", "STATE", "RUNNING", "GRANTS", "NOTE"], rows))
            }
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "info", abstract: "Everything about one plugin.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Plugin name.") var name: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let info = try PluginManager(options.dataDirectory).info(name)
                var lines = [
                    "\(info.name) \(info.version ?? "?")\(info.description.map { " — \($0)" } ?? "")",
                    "  state         \(info.state)", "  source        \(info.source.rawValue) (\(info.path))",
                    "  abi           \(info.abi ?? "?")",
                    "  signer        \(info.signer ?? (info.allowUnsigned ? "unsigned (allowed)" : "-"))",
                    "  capabilities  \(info.capabilities.joined(separator: ", "))",
                    "  granted       \(info.grants.isEmpty ? "none" : info.grants.joined(separator: ", "))",
                ]
                if !info.dependencies.isEmpty {
                    lines.append("  depends on    " + info.dependencies.sorted { $0.key < $1.key }
                        .map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                }
                if !info.optionalDependencies.isEmpty {
                    lines.append("  uses if there " + info.optionalDependencies.sorted { $0.key < $1.key }
                        .map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                }
                for export in info.exports { lines.append("  exports       \(export)") }
                if let quarantine = info.quarantine { lines.append("  QUARANTINED   \(quarantine.reason) (\(quarantine.at))") }
                if let problem = info.problem { lines.append("  problem       \(problem)") }
                Output.emit(options, json: info.json, text: lines.joined(separator: "\n"))
            }
        }
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "install",
            abstract: "Install a plugin package (a directory, .tar or .tar.gz); it starts disabled.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Package directory or archive.") var path: String
        @Flag(name: .customLong("allow-unsigned"), help: "Install even if unsigned or signed by an untrusted key.")
        var allowUnsigned = false

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let (info, warnings) = try PluginManager(options.dataDirectory).install(path: path,
                                                                                        allowUnsigned: allowUnsigned)
                for warning in warnings { Output.warn("\(warning) — installed anyway because of --allow-unsigned") }
                Output.emit(options, json: info.json, text: """
                    installed \(info.name) \(info.version ?? "?") into \(info.path)
                    it declares: \(info.capabilities.isEmpty ? "no capabilities" : info.capabilities.joined(separator: ", "))
                    enable it with: metanode plugin enable \(info.name)
                    """)
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "enable",
            abstract: "Enable a plugin, granting capabilities (default: all it declares). Clears a quarantine.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Plugin name.") var name: String
        @Option(name: .customLong("grant"), parsing: .upToNextOption,
                help: "Capabilities to grant (kv crypto sign bus timer http service metrics); only these are granted.")
        var grants: [String] = []

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let info = try PluginManager(options.dataDirectory).enable(name, grants: grants.isEmpty ? nil : grants)
                Output.emit(options, json: info.json, text: "enabled \(info.name) with "
                    + (info.grants.isEmpty ? "no capabilities" : info.grants.joined(separator: ", "))
                    + PluginCommand.restartHint(options.dataDirectory))
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "disable", abstract: "Disable a plugin.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Plugin name.") var name: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let info = try PluginManager(options.dataDirectory).disable(name)
                Output.emit(options, json: info.json,
                            text: "disabled \(info.name)" + PluginCommand.restartHint(options.dataDirectory))
            }
        }
    }

    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "uninstall", abstract: "Remove an installed (disabled) plugin.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Plugin name.") var name: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                try PluginManager(options.dataDirectory).uninstall(name)
                Output.emit(options, json: .object(["uninstalled": .string(name)]), text: "uninstalled \(name)")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check a package's signature (against the trust store, or --key) and library hash.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Package directory or archive.") var path: String
        @Option(name: .customLong("key"), help: "A publisher public key file to trust for this check.")
        var keyFile: String?

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                var extra: [MinisignPublicKey] = []
                if let keyFile {
                    let text = try KeyFile.readPublic(at: keyFile)
                    extra.append(try MinisignPublicKey.parse(text))
                }
                let (package, verification) = try PluginManager(options.dataDirectory).verify(path: path,
                                                                                             extraKeys: extra)
                let manifest = package.manifest
                Output.emit(options, json: .object([
                    "name": .string(manifest.name), "version": .string(manifest.version.description),
                    "signer": .string(verification.signer?.keyIDHex ?? ""),
                    "librarySha256": .string(manifest.library.sha256 ?? ""), "valid": .bool(true),
                ]), text: """
                    \(manifest.name) \(manifest.version): signature valid, signed by trusted key \
                    \(verification.signer?.keyIDHex ?? "?"); library \(manifest.library.file) matches SHA-256 \
                    \(manifest.library.sha256 ?? "?")
                    """)
            }
        }
    }

    struct Config: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "config",
            abstract: "Show a plugin's config, or set it (validated against the manifest's schema).")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Plugin name.") var name: String
        @Argument(help: "New config as JSON (omit to show the current one).") var config: String?

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                if let config {
                    let value = try JSONValue.parse(config)
                    let effective = try PluginManager(data).configure(name, config: value)
                    let parsed = try JSONValue.parse(effective)
                    Output.emit(options, json: parsed, text: "config for \(name) (with defaults): "
                        + parsed.serialized() + PluginCommand.restartHint(data))
                } else {
                    let registry = try data.loadRegistry()
                    guard let entry = registry.entries[name] else {
                        throw MetanodeError(.notFound, "no plugin named '\(name)' is installed")
                    }
                    let manifest = try PluginPackage.open(entry.path).manifest
                    let effective = try PluginPlanner.validatedConfig(for: manifest,
                                                                      data.loadConfig().pluginConfigs[name])
                    let parsed = try JSONValue.parse(effective)
                    Output.emit(options, json: parsed, text: parsed.serialized(pretty: true))
                }
            }
        }
    }

    struct Call: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "call",
            abstract: "Call a function a running plugin exports (through libffi, arguments checked first).",
            discussion: "Integers in decimal or 0x hex; mn_bytes arguments as 0x-prefixed hex or plain text.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Plugin name.") var name: String
        @Argument(help: "Exported function name (see `metanode plugin info`).") var function: String
        @Argument(parsing: .allUnrecognized, help: "Arguments.") var arguments: [String] = []

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let args = arguments.first == "--" ? Array(arguments.dropFirst()) : arguments
                let answer = try RunningNode.post(options.dataDirectory, "/v1/plugins/\(name)/call/\(function)",
                                                  .object(["argv": .array(args.map(JSONValue.string))]))
                let result = answer["result"] ?? .null
                Output.emit(options, json: answer, text: result.stringValue ?? result.serialized())
            }
        }
    }

    struct Keygen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keygen",
            abstract: "Make a publisher signing key pair (minisign format): PATH.key (0600) and PATH.pub.")
        @OptionGroup var options: CommonOptions
        @Option(name: .customLong("out"), help: "Path prefix for the key files.") var out: String
        @Option(name: .customLong("passphrase-file"), help: "Encrypt the secret key with the passphrase in this file.")
        var passphraseFile: String?
        @Flag(help: "Overwrite existing key files.") var force = false

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let passphrase = try passphraseFile.map(readPassphrase)
                let key = MinisignSecretKey.generate()
                try KeyFile.writeSecret(key.fileContents(passphrase: passphrase), to: out + ".key", overwrite: force)
                try KeyFile.writePublic(key.publicKey.fileContents(comment: "metanode publisher key"), to: out + ".pub")
                Output.emit(options, json: .object([
                    "keyId": .string(key.publicKey.keyIDHex), "secretKey": .string(out + ".key"),
                    "publicKey": .string(out + ".pub"),
                ]), text: """
                    key \(key.publicKey.keyIDHex)
                      secret  \(out).key (mode 0600\(passphrase == nil ? ", not encrypted" : ", encrypted"))
                      public  \(out).pub — nodes trust it with: metanode trust add \(out).pub
                    """)
            }
        }
    }

    struct Sign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sign",
            abstract: "Pin the library's SHA-256 in a package's manifest and sign the manifest (minisign format).",
            discussion: "Check the result with: minisign -Vm DIR/metanode-plugin.json -p KEY.pub")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Package directory (manifest and library).") var directory: String
        @Option(name: .customLong("key"), help: "Secret key file from `metanode plugin keygen`.") var keyFile: String
        @Option(name: .customLong("passphrase-file"), help: "File holding the secret key's passphrase.")
        var passphraseFile: String?

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let text = try KeyFile.readSecret(at: keyFile)
                let key = try MinisignSecretKey.parse(text, passphrase: passphraseFile.map(readPassphrase))
                let package = try PluginPackage.sign(directory: directory, key: key)
                Output.emit(options, json: .object([
                    "name": .string(package.manifest.name), "version": .string(package.manifest.version.description),
                    "keyId": .string(key.publicKey.keyIDHex), "signature": .string(package.signaturePath),
                    "librarySha256": .string(package.manifest.library.sha256 ?? ""),
                ]), text: """
                    signed \(package.manifest.name) \(package.manifest.version) with key \(key.publicKey.keyIDHex)
                      library sha256  \(package.manifest.library.sha256 ?? "?")
                      signature       \(package.signaturePath)
                    """)
            }
        }
    }
}

func readPassphrase(_ path: String) throws(MetanodeError) -> String {
    let bytes = try FileIO.read(path, limit: 4096, what: "passphrase file")
    return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .newlines)
}

struct TrustCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trust", abstract: "Publisher keys this node trusts to sign plugin packages.",
        subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add", abstract: "Trust a publisher's public key file.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Public key file (minisign format).") var keyFile: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                try options.dataDirectory.requireInitialized()
                let key = try MinisignPublicKey.parse(KeyFile.readPublic(at: keyFile))
                let path = try options.dataDirectory.trustStore.add(key)
                Output.emit(options, json: .object(["keyId": .string(key.keyIDHex), "path": .string(path)]),
                            text: "trusted key \(key.keyIDHex) (\(path))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List trusted keys.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                try options.dataDirectory.requireInitialized()
                let keys = try options.dataDirectory.trustStore.keys()
                Output.emit(options, json: .array(keys.map {
                    .object(["keyId": .string($0.keyIDHex), "publicKey": .string($0.base64)])
                }), text: keys.isEmpty ? "no trusted keys" : keys.map { "\($0.keyIDHex)  \($0.base64)" }
                    .joined(separator: "\n"))
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Stop trusting a key.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Key id (from `metanode trust list`).") var keyID: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                try options.dataDirectory.trustStore.remove(keyID: keyID)
                Output.emit(options, json: .object(["removed": .string(keyID.uppercased())]),
                            text: "removed trusted key \(keyID.uppercased())")
            }
        }
    }
}
