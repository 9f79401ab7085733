import ArgumentParser
import BPCICore
import Foundation
import MetanodeCore
import MetanodeCrypto
import MetanodeKernel
import MetanodeWire

/// Account keys in `<data-dir>/wallet/<name>.json`, each file mode 0600 in a 0700 directory:
///
///     {"version": 1, "name": "dev", "publicKey": "<hex>", "address": "mn1…", "seed": "<hex>"}
///
/// or, sealed under a passphrase (Argon2id + XSalsa20-Poly1305, `PassphraseSeal`), "sealed": {"kdf": "argon2id13",
/// "opsLimit", "memLimit", "salt", "nonce", "ciphertext"} instead of "seed".
struct Keystore {
    static let version: Int64 = 1
    static let nameBytesMax = 64
    let directory: String

    init(_ data: DataDirectory) { directory = data.root + "/wallet" }

    struct Entry {
        var name: String
        var publicKey: [UInt8]
        var address: Address
        var file: JSONValue
        var isSealed: Bool { file["sealed"] != nil }
    }

    static func checkName(_ name: String) throws(MetanodeError) {
        guard !name.isEmpty, name.utf8.count <= nameBytesMax, !name.hasPrefix("mn1"),
              name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F })
        else {
            throw MetanodeError(.invalidArgument, "wallet name '\(name)' must be 1-\(nameBytesMax) characters of a-z, "
                + "0-9, '-' or '_' and must not start with 'mn1'")
        }
    }

    func path(_ name: String) -> String { "\(directory)/\(name).json" }

    /// Creates a key (from `seed`, else a new random one); sealed when a passphrase is given.
    @discardableResult
    func create(_ name: String, seed: [UInt8]? = nil, passphrase: String?) throws(MetanodeError) -> Entry {
        try Self.checkName(name)
        guard !FileIO.exists(path(name)) else {
            throw MetanodeError(.alreadyExists, "wallet '\(name)' exists (\(path(name)))")
        }
        try FileIO.createDirectory(directory, mode: 0o700)
        let pair = try seed.map { seed throws(MetanodeError) in try Ed25519KeyPair(seed: seed) } ?? Ed25519KeyPair.generate()
        let address = Address(publicKey: pair.publicKey.bytes)
        var fields: [String: JSONValue] = [
            "version": .int(Self.version), "name": .string(name), "publicKey": .string(pair.publicKey.hex),
            "address": .string(address.description),
        ]
        if let passphrase {
            let seal = try PassphraseSeal.seal(pair.seed, passphrase: passphrase)
            fields["sealed"] = .object([
                "kdf": .string("argon2id13"), "opsLimit": .uint(seal.opsLimit), "memLimit": .uint(seal.memLimit),
                "salt": .string(Hex.encode(seal.salt)), "nonce": .string(Hex.encode(seal.nonce)),
                "ciphertext": .string(Hex.encode(seal.ciphertext)),
            ])
        } else {
            fields["seed"] = .string(Hex.encode(pair.seed))
        }
        let file = JSONValue.object(fields)
        try KeyFile.writeSecret(file.serialized(pretty: true) + "\n", to: path(name))
        return Entry(name: name, publicKey: pair.publicKey.bytes, address: address, file: file)
    }

    func load(_ name: String) throws(MetanodeError) -> Entry {
        try Self.checkName(name)
        guard FileIO.exists(path(name)) else {
            let known = names()
            throw MetanodeError(.notFound, "no wallet '\(name)' in \(directory)"
                + (known.isEmpty ? " (create one with `metanode wallet new NAME`)" : "; there are: \(known.joined(separator: ", "))"))
        }
        let file = try JSONValue.parse(try KeyFile.readSecret(at: path(name)))
        guard file["version"]?.intValue == Self.version, let hex = file["publicKey"]?.stringValue,
              let publicKey = Hex.decode(hex), publicKey.count == 32 else {
            throw MetanodeError(.invalidArgument, "\(path(name)) is not a version-\(Self.version) wallet file")
        }
        return Entry(name: name, publicKey: publicKey, address: Address(publicKey: publicKey), file: file)
    }

    /// The signing key: unsealed with the passphrase if the file is sealed; the seed must match the public key.
    func signer(_ entry: Entry, passphrase: String?) throws(MetanodeError) -> Ed25519Signer {
        let seed: [UInt8]
        if let sealed = entry.file["sealed"] {
            guard let passphrase else {
                throw MetanodeError(.denied, "wallet '\(entry.name)' is sealed: give --passphrase-file or "
                    + "--passphrase-env")
            }
            guard let salt = sealed["salt"]?.stringValue.flatMap({ Hex.decode($0) }),
                  let nonce = sealed["nonce"]?.stringValue.flatMap({ Hex.decode($0) }),
                  let ciphertext = sealed["ciphertext"]?.stringValue.flatMap({ Hex.decode($0) }),
                  let ops = sealed["opsLimit"]?.uintValue, let memory = sealed["memLimit"]?.uintValue else {
                throw MetanodeError(.invalidArgument, "\(path(entry.name)): the sealed key is incomplete")
            }
            seed = try PassphraseSeal(opsLimit: ops, memLimit: memory, salt: salt, nonce: nonce, ciphertext: ciphertext)
                .open(passphrase: passphrase)
        } else {
            guard let hex = entry.file["seed"]?.stringValue, let bytes = Hex.decode(hex), bytes.count == 32 else {
                throw MetanodeError(.invalidArgument, "\(path(entry.name)) has neither a seed nor a sealed key")
            }
            seed = bytes
        }
        let signer = Ed25519Signer(seed: seed)
        guard signer.publicKey == entry.publicKey else {
            throw MetanodeError(.invalidArgument, "\(path(entry.name)): the key does not match its public key")
        }
        return signer
    }

    func names() -> [String] {
        FileIO.listDirectory(directory).filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }
            .filter { (try? Self.checkName($0)) != nil }
    }
}

/// Passphrase sources; never a command-line argument (it would show in `ps` and shell history).
struct PassphraseOptions: ParsableArguments {
    @Option(name: .customLong("passphrase-file"), help: "Read the passphrase from this file (its first line).")
    var file: String?
    @Option(name: .customLong("passphrase-env"), help: "Read the passphrase from this environment variable.")
    var environment: String?

    func passphrase() throws(MetanodeError) -> String? {
        if let file {
            let bytes = try FileIO.read(file, limit: 4096, what: "passphrase file")
            let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            var passphrase = String(line.first ?? "")
            if passphrase.hasSuffix("\r") { passphrase.removeLast() }  // a file written on Windows
            return passphrase
        }
        if let environment {
            guard let value = ProcessInfo.processInfo.environment[environment] else {
                throw MetanodeError(.invalidArgument, "environment variable \(environment) is not set")
            }
            return value
        }
        return nil
    }
}

struct WalletCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wallet", abstract: "Accounts and their GEN, NEX, FLX and AUR (the bpci plugin).",
        discussion: """
            Keys live in <data-dir>/wallet/, one 0600 file per account, optionally sealed under a passphrase. \
            Where an address is asked for, a wallet name works too. A dev node (`make run`) has a funded wallet \
            named 'dev'.
            """,
        subcommands: [New.self, List.self, AddressCommand.self, Balance.self, Transfer.self, MultiSend.self,
                      History.self])

    static let queryPrefix = "\(ChainCommand.apiPrefix)/query/bpci"

    /// An address, or the address of a wallet of that name.
    static func resolve(_ text: String, _ data: DataDirectory) throws(MetanodeError) -> Address {
        let store = Keystore(data)
        if store.names().contains(text) { return try store.load(text).address }
        do throws(WireError) { return try Address.parse(text) } catch {
            throw MetanodeError(.invalidArgument, "\(error.message), and no wallet is named '\(text)'")
        }
    }

    struct New: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "new", abstract: "Create an account key.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The wallet's name (a-z 0-9 - _).") var name: String
        @OptionGroup var passphrase: PassphraseOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let entry = try Keystore(options.dataDirectory).create(name, passphrase: try passphrase.passphrase())
                Output.emit(options, json: .object([
                    "name": .string(name), "address": .string(entry.address.description),
                    "publicKey": .string(Hex.encode(entry.publicKey)), "sealed": .bool(entry.isSealed),
                    "file": .string(Keystore(options.dataDirectory).path(name)),
                ]), text: "\(entry.address)\nwallet '\(name)' created"
                    + (entry.isSealed ? ", sealed under the passphrase" : " (not sealed: its file is mode 0600)"))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "The accounts in this data directory's keystore.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let store = Keystore(options.dataDirectory)
                var entries: [Keystore.Entry] = []
                for name in store.names() { entries.append(try store.load(name)) }
                Output.emit(options, json: .array(entries.map {
                    .object(["name": .string($0.name), "address": .string($0.address.description),
                             "sealed": .bool($0.isSealed)])
                }), text: entries.isEmpty ? "no wallets (create one with `metanode wallet new NAME`)"
                    : Output.table(["NAME", "ADDRESS", "SEALED"],
                                   entries.map { [$0.name, $0.address.description, $0.isSealed ? "yes" : "no"] }))
            }
        }
    }

    struct AddressCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "address", abstract: "A wallet's address.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The wallet's name.") var name: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let entry = try Keystore(options.dataDirectory).load(name)
                Output.emit(options, json: .object(["name": .string(name), "address": .string(entry.address.description),
                                                    "publicKey": .string(Hex.encode(entry.publicKey))]),
                            text: entry.address.description)
            }
        }
    }

    struct Balance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "balance", abstract: "An account's balances, from the running node.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "A wallet name or an address.") var account: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                let address = try WalletCommand.resolve(account, data)
                let answer = try RunningNode.get(data, "\(WalletCommand.queryPrefix)/balance/\(address)")
                let rows = (answer["balances"]?.arrayValue ?? []).map {
                    [$0["denom"]?.stringValue ?? "?", $0["amount"]?.stringValue ?? "?"]
                }
                Output.emit(options, json: answer, text: "\(address)\n" + Output.table(["TOKEN", "BALANCE"], rows))
            }
        }
    }

    /// A payment from the command line; each problem named before anything is signed.
    static func payment(to: String, amount: String, token: String, _ data: DataDirectory) throws(MetanodeError)
        -> Payment {
        guard let denomination = Denomination(symbol: token) else {
            throw MetanodeError(.invalidArgument, "'\(token)' is not a token: GEN, NEX, FLX or AUR")
        }
        guard let units = denomination.parse(amount) else {
            throw MetanodeError(.invalidArgument, "'\(amount)' is not a \(denomination) amount (a positive "
                + "number with at most \(denomination.decimals) decimals)")
        }
        guard units > 0 else { throw MetanodeError(.invalidArgument, "the amount must be greater than zero") }
        return Payment(to: try resolve(to, data), denomination: denomination, amount: units)
    }

    /// What `transfer` and `multi-send` share: sign with the wallet, pay the fee, submit, wait for finality.
    struct SendOptions: ParsableArguments {
        @Option(help: "The most to pay in fees, in FLX (default: twice the current base fee).") var fee: String?
        @Flag(name: .customLong("no-wait"), help: "Return once the node has admitted it.") var noWait = false
        @Option(name: .customLong("timeout-ms"), help: "How long to wait for finality.") var timeoutMs = 30_000
        @OptionGroup var passphrase: PassphraseOptions

        func send(_ message: BankMessage, from: String, describing payments: [Payment], _ options: CommonOptions)
            throws(MetanodeError) {
            let data = options.dataDirectory
            let store = Keystore(data)
            let entry = try store.load(from)
            let signer = try store.signer(entry, passphrase: try passphrase.passphrase())
            let feeUnits: UInt64
            if let fee {
                guard let parsed = Denomination.flx.parse(fee) else {
                    throw MetanodeError(.invalidArgument, "--fee '\(fee)' is not an FLX amount")
                }
                feeUnits = parsed
            } else {
                let fees = try RunningNode.get(data, "\(WalletCommand.queryPrefix)/fees")
                let base = fees["baseFee"]?["units"]?.uintValue ?? 0
                feeUnits = base > UInt64.max / 2 ? .max : base * 2
            }
            let id = try ChainCommand.submit(data, signer: signer, fee: feeUnits, kind: message.kind,
                                             payload: message.payload)
            let paid = payments.map { "\($0.denomination.format($0.amount)) \($0.denomination) to \($0.to)" }
            let summary = "\(paid.joined(separator: ", ")) from \(entry.address), fee up to "
                + "\(Denomination.flx.format(feeUnits)) FLX"
            guard !noWait else {
                Output.emit(options, json: .object(["id": .string(id), "status": .string("submitted")]),
                            text: "submitted \(id): \(summary)")
                return
            }
            let final = try ChainCommand.awaitFinal(data, id: id, timeoutMs: timeoutMs)
            let status = final["result"]?["status"]?.intValue ?? -1
            let height = final["height"]?.intValue ?? 0
            guard status == 0 else {
                // In the chain as failed: its nonce is used; its fee was paid unless the fee was what failed.
                throw MetanodeError(.denied, "\(message.kind) \(id) failed in block \(height): "
                    + (final["result"]?["reason"]?.stringValue ?? "status \(status)"))
            }
            Output.emit(options, json: final, text: "final at height \(height): \(summary)\n\(id)")
        }
    }

    struct Transfer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "transfer",
            abstract: "Send tokens: metanode wallet transfer FROM TO AMOUNT TOKEN (e.g. dev mn1… 12.5 FLX).",
            discussion: """
                The fee (FLX) defaults to twice the current base fee: the base fee is burned, the rest goes to \
                the block's proposer. Waits until the transfer is final unless --no-wait.
                """)
        @OptionGroup var options: CommonOptions
        @Argument(help: "The paying wallet.") var from: String
        @Argument(help: "The receiving address (or wallet name).") var to: String
        @Argument(help: "The amount in whole tokens, e.g. 12.5.") var amount: String
        @Argument(help: "GEN, NEX, FLX or AUR.") var token: String
        @OptionGroup var send: SendOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let payment = try WalletCommand.payment(to: to, amount: amount, token: token, options.dataDirectory)
                try send.send(.transfer(payment), from: from, describing: [payment], options)
            }
        }
    }

    struct MultiSend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "multi-send",
            abstract: "Pay several accounts in one transaction, all or none: FROM TO:AMOUNT:TOKEN… "
                + "(e.g. dev alice:1.5:FLX bob:2:GEN).",
            discussion: "At most \(BankMessage.multiSendOutputsMax) payments. Fees as for transfer.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The paying wallet.") var from: String
        @Argument(help: "Payments as TO:AMOUNT:TOKEN (TO is an address or a wallet name).") var payments: [String]
        @OptionGroup var send: SendOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                guard (1...BankMessage.multiSendOutputsMax).contains(payments.count) else {
                    throw MetanodeError(.invalidArgument, "a multi-send pays 1-\(BankMessage.multiSendOutputsMax) "
                        + "accounts, not \(payments.count)")
                }
                var parsed: [Payment] = []
                for text in payments {
                    let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                    guard parts.count == 3 else {
                        throw MetanodeError(.invalidArgument, "'\(text)' is not a payment: write TO:AMOUNT:TOKEN")
                    }
                    parsed.append(try WalletCommand.payment(to: parts[0], amount: parts[1], token: parts[2],
                                                            options.dataDirectory))
                }
                try send.send(.multiSend(parsed), from: from, describing: parsed, options)
            }
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "history",
            abstract: "An account's payments, newest first (the node's index of finalized blocks).")
        @OptionGroup var options: CommonOptions
        @Argument(help: "A wallet name or an address.") var account: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                let address = try WalletCommand.resolve(account, data)
                let answer = try RunningNode.get(data, "/v1/plugins/bpci/history/\(address)")
                let rows = (answer["entries"]?.arrayValue ?? []).map { entry -> [String] in
                    let amount = entry["amount"]
                    return [String(entry["height"]?.intValue ?? 0), entry["direction"]?.stringValue ?? "?",
                            "\(amount?["amount"]?.stringValue ?? "?") \(amount?["denom"]?.stringValue ?? "")",
                            entry["counterparty"]?.stringValue ?? "?",
                            String((entry["transaction"]?.stringValue ?? "").prefix(16))]
                }
                Output.emit(options, json: answer, text: rows.isEmpty ? "no payments for \(address)"
                    : Output.table(["HEIGHT", "DIRECTION", "AMOUNT", "COUNTERPARTY", "TX"], rows))
            }
        }
    }
}
