import ArgumentParser
import BPCICore
import BPICore
import Foundation
import MetanodeCore
import MetanodeCrypto
import MetanodeKernel
import MetanodeWire

struct ChainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chain", abstract: "The ledger (the bpi plugin): genesis, status, blocks, transactions.",
        discussion: """
            With no genesis file configured, bpi runs a single-validator dev chain with the node's own key. \
            `chain genesis --validators N --out DIR` makes an N-validator network of data directories on loopback.
            """,
        subcommands: [GenesisCommand.self, Status.self, BlockCommand.self, Tx.self, State.self, Submit.self, VerifyProof.self,
                      Validators.self])

    static let pluginName = "bpi"
    static let apiPrefix = "/v1/plugins/bpi"

    /// Creates `count` dev data directories under `root` (node-0 …), listening for peers on 127.0.0.1:basePort+i and
    /// for HTTP on 127.0.0.1:httpBasePort+i, and one genesis.json naming them as validators and peers; points each
    /// node's transport and bpi at it.
    static func makeNetwork(root: String, count: Int, chainID: String, basePort: Int, httpBasePort: Int,
                            bundledPlugins: String?, fundedAccounts: [Address] = [], perAccount: String = "1000",
                            testTransactions: Bool = false) throws(MetanodeError)
        -> ([DataDirectory], [[UInt8]]) {
        let genesisPath = "\(root)/genesis.json"
        guard !FileIO.exists(genesisPath) else {
            throw MetanodeError(.alreadyExists, "\(genesisPath) exists; choose an empty --out directory")
        }
        try FileIO.createDirectory(root, mode: 0o755)
        var keys: [[UInt8]] = []
        var directories: [DataDirectory] = []
        for index in 0..<count {
            let data = DataDirectory("\(root)/node-\(index)")
            let result = try NodeSetup.initialize(data, dev: true, bundledPluginsDirectory: bundledPlugins,
                                                  httpListen: "127.0.0.1:\(httpBasePort + index)",
                                                  nodeName: "validator-\(index)",
                                                  netListen: "127.0.0.1:\(basePort + index)")
            keys.append(result.nodePublicKey.key.bytes)
            directories.append(data)
        }
        let peers = keys.enumerated().map { index, key in
            JSONValue.object(["address": .string("127.0.0.1:\(basePort + index)"), "key": .string(Hex.encode(key))])
        }
        let dev = try devAccount(directories)
        var ledgerAccounts: [Address] = []
        for data in directories { if let account = try docklockLedgerAccount(data) { ledgerAccounts.append(account) } }
        let modules = ["bpci": bankGenesis(dev: dev, accounts: fundedAccounts, perAccount: perAccount,
                                           docklockAccounts: ledgerAccounts)]
        try write(genesis(chainID: chainID, validators: keys, peers: peers, modules: modules,
                          testTransactions: testTransactions), to: genesisPath)
        for data in directories {
            try makeDurable(data)
            _ = try NetCommand.updateNet(data) { net throws(MetanodeError) in net.genesisFile = genesisPath }
            _ = try PluginManager(data).configure(pluginName, config: .object(["genesisFile": .string(genesisPath)]))
        }
        return (directories, keys)
    }

    /// Validators fsync every storage write: the consensus WAL record of a signed message must survive a power cut,
    /// or a restarted validator could sign a conflicting one. (BPI writes a few records and one batch per block.)
    static func makeDurable(_ data: DataDirectory) throws(MetanodeError) {
        var config = try data.loadConfig()
        config.storageSyncWrites = true
        try data.saveConfig(config)
    }

    /// The dev account `chain genesis` funds: the wallet "dev" in each new data directory.
    static let devWallet = "dev"

    /// BPCI's genesis section: the dev account holds all GEN and some of every other token (plus `accounts`, each
    /// with `perAccount` FLX, for load generators, and `docklockAccounts`, each with `docklockFunding` FLX for its
    /// receipt batches' fees); fees from BankGenesis' defaults, targeting half a block.
    static func bankGenesis(dev: Address, accounts: [Address] = [], perAccount: String = "1000",
                            docklockAccounts: [Address] = []) -> JSONValue {
        let defaults = Genesis.Parameters.defaults
        var list: [JSONValue] = [.object(["address": .string(dev.description), "balances": .object([
            "GEN": .string("100000"), "NEX": .string("1000"), "FLX": .string("1000000"), "AUR": .string("100"),
        ])])]
        for account in accounts {
            list.append(.object(["address": .string(account.description),
                                 "balances": .object(["FLX": .string(perAccount)])]))
        }
        for account in docklockAccounts {
            list.append(.object(["address": .string(account.description),
                                 "balances": .object(["FLX": .string(docklockFunding)])]))
        }
        let fees = BankGenesis.defaultFees
        return .object(["accounts": .array(list), "fees": .object([
            "initialBaseFee": .string(Denomination.flx.format(fees.initialBaseFee)),
            "minimumBaseFee": .string(Denomination.flx.format(fees.minimumBaseFee)),
            "changeDenominator": .int(Int64(fees.changeDenominator)),
            "targetTransactions": .int(Int64(defaults.blockTransactionsMax / 2)),
        ])])
    }

    /// What `chain genesis` gives each node's DockLock ledger account: at about 0.000001 FLX a batch of up to 256
    /// receipts, years of receipts on a busy node.
    static let docklockFunding = "100"

    /// The account of DockLock's ledger key in `data` (`<docklock stateDirectory>/ledger.key`, a 32-byte Ed25519
    /// seed, mode 0600), made here if DockLock has not made it yet, so the genesis can fund the account that pays
    /// for its receipt batches. nil when DockLock is not enabled in `data`.
    static func docklockLedgerAccount(_ data: DataDirectory) throws(MetanodeError) -> Address? {
        guard let entry = try data.loadRegistry().entries["docklock"], entry.enabled else { return nil }
        let directory = try data.loadConfig().pluginConfigs["docklock"]?["stateDirectory"]?.stringValue
            ?? "\(data.root)/docklock"
        let path = "\(directory)/ledger.key"
        if !FileIO.exists(path) {
            try FileIO.createDirectory(directory)
            let temporary = "\(path).\(getpid()).new"
            try FileIO.writeAtomically(SecureRandom.bytes(WireCrypto.seedBytes), to: temporary, mode: 0o600)
            // Linked, not renamed: a key DockLock made meanwhile is kept, never replaced.
            let linked = link(temporary, path) == 0 || errno == EEXIST
            unlink(temporary)
            guard linked else { throw MetanodeError(.io, "cannot create \(path): \(String(cString: strerror(errno)))") }
        }
        let seed = try FileIO.read(path, limit: 4_096, what: "DockLock ledger key")
        guard seed.count == WireCrypto.seedBytes else {
            throw MetanodeError(.integrity, "\(path) is \(seed.count) bytes; a DockLock ledger key is a 32-byte "
                + "Ed25519 seed")
        }
        return Address(publicKey: Ed25519Signer(seed: seed).publicKey)
    }

    /// The dev wallet of `data` (created if absent), the same key in every directory of a network.
    static func devAccount(_ directories: [DataDirectory]) throws(MetanodeError) -> Address {
        guard let first = directories.first else { throw MetanodeError(.internal, "no data directory") }
        let store = Keystore(first)
        let entry = store.names().contains(devWallet) ? try store.load(devWallet)
            : try store.create(devWallet, passphrase: nil)
        let contents = try KeyFile.readSecret(at: store.path(devWallet))
        for data in directories.dropFirst() {
            let copy = Keystore(data)
            guard !FileIO.exists(copy.path(devWallet)) else { continue }
            try FileIO.createDirectory(copy.directory, mode: 0o700)
            try KeyFile.writeSecret(contents, to: copy.path(devWallet))
        }
        return entry.address
    }

    static func genesis(chainID: String, validators: [[UInt8]], peers: [JSONValue],
                        modules: [String: JSONValue] = [:], testTransactions: Bool = false) -> JSONValue {
        let defaults = Genesis.Parameters.defaults
        var parameters: [String: JSONValue] = [
            "blockTransactionsMax": .int(Int64(defaults.blockTransactionsMax)),
            "blockBytesMax": .int(Int64(defaults.blockBytesMax)),
            "pohTicksPerEntry": .int(Int64(defaults.pohTicksPerEntry)),
        ]
        if testTransactions { parameters["testTransactions"] = .bool(true) }
        let validatorList: [JSONValue] = validators.map { key in .object(["key": .string(Hex.encode(key))]) }
        return .object([
            "chainId": .string(chainID), "genesisTimeMs": .int(0), "validators": .array(validatorList),
            "parameters": .object(parameters), "modules": .object(modules), "peers": .array(peers),
        ])
    }

    /// The nonce the sender's next transaction should use: after its finalized transactions and those waiting in the
    /// node's mempool, so a second transfer can follow the first before it is final.
    static func nextNonce(_ data: DataDirectory, sender: [UInt8]) throws(MetanodeError) -> UInt64 {
        let answer = try RunningNode.get(data, "\(apiPrefix)/nonce/\(Hex.encode(sender))")
        guard let next = answer["next"]?.uintValue else {
            throw MetanodeError(.invalidJSON, "the node's nonce answer has no \"next\": \(answer.serialized())")
        }
        return next
    }

    /// Signs a transaction with the sender's next nonce and submits it to the running node; returns its id.
    static func submit(_ data: DataDirectory, chainID: String? = nil, signer: Ed25519Signer, fee: UInt64,
                       kind: String, payload: [UInt8]) throws(MetanodeError) -> String {
        var chain = chainID ?? ""
        if chainID == nil { chain = try RunningNode.get(data, "\(apiPrefix)/status")["chainId"]?.stringValue ?? "" }
        let nonce = try nextNonce(data, sender: signer.publicKey)
        let transaction: Transaction
        do throws(WireError) {
            transaction = try Transaction.signed(chainID: chain, signer: signer, nonce: nonce, fee: fee, kind: kind,
                                                 payload: payload)
        } catch { throw MetanodeError(.invalidArgument, error.message) }
        let answer = try RunningNode.post(data, "\(apiPrefix)/tx", .object(["tx": .string(Hex.encode(transaction.encoded))]))
        return answer["id"]?.stringValue ?? Hex.encode(transaction.id)
    }

    /// Polls until transaction `id` is in a finalized block; its inclusion record (with "result").
    static func awaitFinal(_ data: DataDirectory, id: String, timeoutMs: Int) throws(MetanodeError) -> JSONValue {
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while true {
            do {
                return try RunningNode.get(data, "\(apiPrefix)/tx/\(id)")
            } catch where error.code == .notFound {
                guard Date() < deadline else {
                    throw MetanodeError(.timeout, "transaction \(id) is not final after \(timeoutMs) ms (\(error.message)); "
                        + "it may still be included: `metanode chain tx \(id)`")
                }
                usleep(50_000)
            }
        }
    }

    static func write(_ value: JSONValue, to path: String) throws(MetanodeError) {
        try FileIO.writeAtomically(value.serializedBytes(pretty: true) + [0x0A], to: path)
    }

    struct GenesisCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "genesis", abstract: "Make a genesis file: for this node alone, or for N new validators.",
            discussion: """
                Without --validators: writes <data-dir>/genesis.json naming this node as the only validator and \
                points bpi at it. With --validators N --out DIR: creates DIR/node-0 … node-(N-1) (dev data \
                directories with the bundled plugins enabled), each listening for peers on 127.0.0.1:<base-port + i> \
                and for HTTP on 127.0.0.1:<http-base-port + i>, and DIR/genesis.json listing them as validators \
                and peers. Start each with `metanode node start --data-dir DIR/node-i`. Either way, a node with \
                DockLock gets its ledger key (<docklock state dir>/ledger.key) made here if it has none, and the \
                genesis gives that account \(ChainCommand.docklockFunding) FLX for the fees of its receipt batches.
                """)
        @OptionGroup var options: CommonOptions
        @Option(help: "How many validators to create (1-\(ValidatorSet.countMax)).") var validators: Int?
        @Option(help: "Directory for the new validators' data directories and genesis.json.") var out: String?
        @Option(name: .customLong("chain-id"), help: "The chain id (a-z 0-9 - _ .).") var chainID = "metanode-local"
        @Option(name: .customLong("base-port"), help: "First peer port.") var basePort = 7800
        @Option(name: .customLong("http-base-port"), help: "First HTTP port.") var httpBasePort = 7900
        @Option(name: .customLong("bundled-plugins"),
                help: "Directory of bundled plugin packages (default: metanode-plugins next to this binary).")
        var bundledPlugins: String?
        @Flag(name: .customLong("test-transactions"),
              help: "Allow BPI's test/… kinds (no module, no fee) on this chain: for load tests and examples.")
        var testTransactions = false

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                guard Transaction.isName(chainID, max: Transaction.chainIDBytesMax, allowingSlash: false) else {
                    throw MetanodeError(.invalidArgument, "chain id '\(chainID)' must be 1-64 characters of a-z, 0-9, "
                        + "'-', '_' or '.'")
                }
                if let validators { try network(count: validators) } else { try single() }
            }
        }

        private func single() throws(MetanodeError) {
            let data = options.dataDirectory
            try data.requireInitialized()
            let key = try data.loadNodeKey().publicKey.key.bytes
            let path = "\(data.root)/genesis.json"
            let dev = try ChainCommand.devAccount([data])
            let ledger = try ChainCommand.docklockLedgerAccount(data)
            let bank = ChainCommand.bankGenesis(dev: dev, docklockAccounts: ledger.map { [$0] } ?? [])
            try ChainCommand.write(ChainCommand.genesis(chainID: chainID, validators: [key], peers: [],
                                                        modules: ["bpci": bank], testTransactions: testTransactions),
                                   to: path)
            try ChainCommand.makeDurable(data)
            _ = try PluginManager(data).configure(ChainCommand.pluginName, config: .object(["genesisFile": .string(path)]))
            let json: JSONValue = .object([
                "genesisFile": .string(path), "chainId": .string(chainID),
                "validators": .array([.string(Hex.encode(key))]),
                "docklockLedgerAccount": ledger.map { .string($0.description) } ?? .null,
            ])
            Output.emit(options, json: json,
                        text: "wrote \(path): chain \(chainID), 1 validator (this node)\nbpi uses it; "
                            + "the wallet '\(ChainCommand.devWallet)' holds the genesis GEN and FLX"
                            + (ledger.map { "; DockLock's ledger account \($0) holds "
                                + "\(ChainCommand.docklockFunding) FLX for its receipt batches" } ?? "")
                            + PluginCommand.restartHint(data))
        }

        private func network(count: Int) throws(MetanodeError) {
            guard (1...ValidatorSet.countMax).contains(count) else {
                throw MetanodeError(.invalidArgument, "--validators must be 1-\(ValidatorSet.countMax), not \(count)")
            }
            guard let out else { throw MetanodeError(.invalidArgument, "--validators needs --out DIR") }
            guard basePort > 0, basePort + count <= 65_535, httpBasePort > 0, httpBasePort + count <= 65_535 else {
                throw MetanodeError(.invalidArgument, "ports must stay within 1-65535")
            }
            let root = FileIO.absolute(out)
            let genesisPath = "\(root)/genesis.json"
            let (directories, keys) = try ChainCommand.makeNetwork(
                root: root, count: count, chainID: chainID, basePort: basePort, httpBasePort: httpBasePort,
                bundledPlugins: bundledPlugins ?? NodeSetup.defaultBundledPluginsDirectory(),
                testTransactions: testTransactions)
            var lines = ["wrote \(genesisPath): chain \(chainID), \(count) validators"]
            for (index, data) in directories.enumerated() {
                lines.append("  \(data.root)  peers 127.0.0.1:\(basePort + index)  http 127.0.0.1:\(httpBasePort + index)")
            }
            if FileIO.exists("\(root)/node-0/docklock/ledger.key") {
                lines.append("each node's DockLock ledger account (node-<i>/docklock/ledger.key) holds "
                    + "\(ChainCommand.docklockFunding) FLX for its receipt batches")
            }
            lines.append("start each with: metanode node start --data-dir \(root)/node-<i>")
            Output.emit(options, json: .object([
                "genesisFile": .string(genesisPath), "chainId": .string(chainID),
                "nodes": .array(directories.enumerated().map { index, data in
                    .object(["dataDir": .string(data.root), "key": .string(Hex.encode(keys[index])),
                             "peerAddress": .string("127.0.0.1:\(basePort + index)"),
                             "httpAddress": .string("127.0.0.1:\(httpBasePort + index)")])
                }),
            ]), text: lines.joined(separator: "\n"))
        }

    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status", abstract: "Height, round, validators and mempool.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let status = try RunningNode.get(options.dataDirectory, "\(ChainCommand.apiPrefix)/status")
                let validators = status["validators"]?.arrayValue ?? []
                let index = status["validatorIndex"]?.intValue
                Output.emit(options, json: status, text: """
                    chain      \(status["chainId"]?.stringValue ?? "?")
                    height     \(status["height"]?.intValue ?? 0) (round \(status["round"]?.intValue ?? 0) at \
                    height \(status["nextHeight"]?.intValue ?? 0))
                    tip        \(status["tipHash"]?.stringValue ?? "?")
                    validators \(validators.count), quorum \(status["quorum"]?.intValue ?? 0); this node: \
                    \(index.map { "validator \($0)" } ?? "not a validator")
                    mempool    \(status["mempool"]?["transactions"]?.intValue ?? 0) transactions, \
                    \(status["mempool"]?["bytes"]?.intValue ?? 0) bytes
                    """)
            }
        }
    }

    struct BlockCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "block", abstract: "A finalized block.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "A height, a block hash, or 'latest'.") var which = "latest"

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let block = try RunningNode.get(options.dataDirectory, "\(ChainCommand.apiPrefix)/blocks/\(which)")
                let header = block["header"]
                let transactions = block["transactions"]?.arrayValue ?? []
                var lines = [
                    "height \(header?["height"]?.intValue ?? 0)  hash \(header?["hash"]?.stringValue ?? "?")",
                    "  parent     \(header?["parentHash"]?.stringValue ?? "?")",
                    "  time       \(header?["timestampMs"]?.intValue ?? 0) ms",
                    "  proposer   \(header?["proposer"]?.stringValue ?? "?")",
                    "  round \(block["round"]?.intValue ?? 0), sealed by validators "
                        + (block["seals"]?.arrayValue ?? []).compactMap { $0.intValue.map(String.init) }
                        .joined(separator: ", "),
                    "  poh        \(header?["pohCount"]?.intValue ?? 0) hashes, \(header?["pohHash"]?.stringValue ?? "?")",
                    "  \(transactions.count) transaction(s)",
                ]
                for transaction in transactions {
                    lines.append("    \(transaction["id"]?.stringValue ?? "?")  \(transaction["kind"]?.stringValue ?? "?")"
                        + "  nonce \(transaction["nonce"]?.intValue ?? 0)  fee \(transaction["fee"]?.intValue ?? 0)")
                }
                Output.emit(options, json: block, text: lines.joined(separator: "\n"))
            }
        }
    }

    struct Tx: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tx",
            abstract: "Where a finalized transaction is, with its Merkle inclusion proof.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The transaction id (64 hex digits).") var id: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let found = try RunningNode.get(options.dataDirectory, "\(ChainCommand.apiPrefix)/tx/\(id)")
                Output.emit(options, json: found, text: """
                    transaction \(found["id"]?.stringValue ?? id)
                      block      \(found["height"]?.intValue ?? 0) (\(found["blockHash"]?.stringValue ?? "?")), \
                    index \(found["index"]?.intValue ?? 0)
                      kind       \(found["transaction"]?["kind"]?.stringValue ?? "?")
                      proof      \((found["proof"]?.arrayValue ?? []).count) sibling hash(es) to root \
                    \(found["transactionsRoot"]?.stringValue ?? "?")
                    """)
            }
        }
    }

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "submit",
            abstract: "Submit a signed transaction (its wire bytes, as hex or from a file).",
            discussion: "The encoding is plugin-sdk/docs/wire.md. The node answers with the id, or why it refused.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The transaction's wire bytes in hex, or @FILE for a file of raw bytes.") var transaction: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let hex: String
                if transaction.hasPrefix("@") {
                    hex = Hex.encode(try FileIO.read(String(transaction.dropFirst()), limit: Transaction.encodedBytesMax,
                                                     what: "transaction file"))
                } else {
                    guard Hex.decode(transaction) != nil else {
                        throw MetanodeError(.invalidArgument, "the transaction must be hex or @FILE")
                    }
                    hex = transaction
                }
                let answer = try RunningNode.post(options.dataDirectory, "\(ChainCommand.apiPrefix)/tx",
                                                  .object(["tx": .string(hex)]))
                Output.emit(options, json: answer, text: "accepted: \(answer["id"]?.stringValue ?? "?")")
            }
        }
    }

    struct VerifyProof: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify-proof",
            abstract: "Check offline that a transaction is in a finalized block, or a state value under its root.",
            discussion: """
                Needs no node. With a transaction proof (`chain tx ID --json`): checks it against the block's \
                transactions root, the block's hash, and the block's commit certificate against the genesis's \
                validators. With a state proof (`chain state KEY --json`): checks the value, or its absence, against \
                the block's state root. Get the block's bytes with GET /v1/plugins/bpi/blocks/<height>?format=raw.
                """)
        @OptionGroup var options: CommonOptions
        @Option(help: "The chain's genesis file.") var genesis: String
        @Option(help: "The finalized block's wire bytes (a file).") var block: String
        @Option(help: "The inclusion proof: the JSON `chain tx ID --json` prints.") var proof: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let genesisBytes = try FileIO.read(genesis, limit: Genesis.fileBytesMax, what: "genesis file")
                let chain: Genesis
                do throws(WireError) { chain = try Genesis.parse(genesisBytes, source: genesis) } catch {
                    throw MetanodeError(.invalidConfig, error.message)
                }
                let blockBytes = try FileIO.read(block, limit: 32 << 20, what: "block file")
                let finalized: FinalizedBlock
                do throws(WireError) { finalized = try FinalizedBlock.decode(blockBytes) } catch {
                    throw MetanodeError(.invalidArgument, "\(block): \(error.message)")
                }
                let inclusion = try JSONValue.parse(try FileIO.read(proof, limit: 1 << 20, what: "proof file"))
                if inclusion["stateProof"] != nil {
                    return try verifyState(inclusion, finalized: finalized, chain: chain)
                }
                guard let idHex = inclusion["id"]?.stringValue, let index = inclusion["index"]?.intValue else {
                    throw MetanodeError(.invalidArgument, "\(proof) is not an inclusion proof (`chain tx ID --json`)")
                }
                let header = finalized.block.header
                let failures = try VerifyProof.inclusionProblems(inclusion, finalized: finalized, chainID: chain.chainID,
                                                                 validators: chain.validators, source: proof)
                guard failures.isEmpty else {
                    throw MetanodeError(.invalidArgument, "not proven: " + failures.joined(separator: "; "))
                }
                Output.emit(options, json: .object([
                    "proven": .bool(true), "id": .string(idHex), "height": .int(Int64(header.height)),
                    "blockHash": .string(Hex.encode(header.hash)),
                    "seals": .int(Int64(finalized.certificate.seals.count)),
                ]), text: "proven: transaction \(idHex) is at index \(index) of block \(header.height) "
                    + "(\(Hex.encode(header.hash))), sealed by \(finalized.certificate.seals.count) of "
                    + "\(chain.validators.count) validators")
            }
        }

        /// Why a transaction inclusion proof (`GET /tx/<id>`, `chain tx ID --json`) does not prove its transaction
        /// is in `finalized`, a block of chain `chainID` sealed by `validators`; empty when it does.
        static func inclusionProblems(_ inclusion: JSONValue, finalized: FinalizedBlock, chainID: String,
                                      validators: ValidatorSet, source: String) throws(MetanodeError) -> [String] {
            guard let idHex = inclusion["id"]?.stringValue, let id = Hex.decode(idHex), id.count == 32,
                  let index = inclusion["index"]?.intValue,
                  let path = inclusion["proof"]?.arrayValue?.compactMap({ $0.stringValue.flatMap(Hex.decode) })
            else {
                throw MetanodeError(.invalidArgument, "\(source) is not an inclusion proof (`chain tx ID --json`)")
            }
            let header = finalized.block.header
            var failures: [String] = []
            if header.chainID != chainID {
                failures.append("the block is for chain '\(header.chainID)', the genesis for '\(chainID)'")
            }
            if let problem = finalized.certificate.problem(blockHash: header.hash, validators: validators,
                                                           plugin: ChainCommand.pluginName) {
                failures.append("the block is not finalized by the genesis's validators: \(problem)")
            }
            if !MerkleTree.verify(leafHash: MerkleTree.leafHash(id), index: Int(index),
                                  count: finalized.block.transactions.count, path: path,
                                  root: header.transactionsRoot) {
                failures.append("the proof does not lead from transaction \(idHex) to the block's transactions root")
            }
            return failures
        }

        /// Why a state proof (`GET /state/<hex key>`, `chain state KEY --json`) does not prove its value, or its
        /// absence, under `finalized`'s state root, a block sealed by `validators`; empty when it does.
        static func stateProblems(_ answer: JSONValue, finalized: FinalizedBlock, validators: ValidatorSet,
                                  source: String) throws(MetanodeError) -> [String] {
            guard let keyHex = answer["key"]?.stringValue, let key = Hex.decode(keyHex),
                  let proofHex = answer["stateProof"]?.stringValue, let proofBytes = Hex.decode(proofHex) else {
                throw MetanodeError(.invalidArgument, "\(source) is not a state proof (`chain state KEY --json`)")
            }
            let value = answer["value"]?.stringValue.flatMap(Hex.decode)
            let stateProof: StateProof
            do throws(WireError) { stateProof = try StateProof.decode(proofBytes) } catch {
                throw MetanodeError(.invalidArgument, "\(source): \(error.message)")
            }
            let header = finalized.block.header
            var failures: [String] = []
            if let problem = finalized.certificate.problem(blockHash: header.hash, validators: validators,
                                                           plugin: ChainCommand.pluginName) {
                failures.append("the block is not finalized by the genesis's validators: \(problem)")
            }
            if !stateProof.verify(key: key, value: value, root: header.stateRoot) {
                failures.append("the proof does not lead to the block's state root")
            }
            return failures
        }

        /// A state proof (`chain state KEY --json`): the value, or its absence, against the block's state root.
        private func verifyState(_ answer: JSONValue, finalized: FinalizedBlock, chain: Genesis) throws(MetanodeError) {
            let failures = try Self.stateProblems(answer, finalized: finalized, validators: chain.validators,
                                                  source: proof)
            let keyHex = answer["key"]?.stringValue ?? ""
            let value = answer["value"]?.stringValue.flatMap(Hex.decode)
            let header = finalized.block.header
            guard failures.isEmpty else {
                throw MetanodeError(.invalidArgument, "not proven: " + failures.joined(separator: "; "))
            }
            let claim = value.map { "has value \(Hex.encode($0))" } ?? "has no value"
            Output.emit(options, json: .object([
                "proven": .bool(true), "key": .string(keyHex), "value": value.map { .string(Hex.encode($0)) } ?? .null,
                "height": .int(Int64(header.height)), "stateRoot": .string(Hex.encode(header.stateRoot)),
            ]), text: "proven: key \(keyHex) \(claim) in the state after block \(header.height) "
                + "(state root \(Hex.encode(header.stateRoot)))")
        }
    }

    struct State: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "state",
            abstract: "A ledger state value (or its absence) with a proof against the tip's state root.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The state key, as text (e.g. bpi/nonce/…) or hex with --hex.") var key: String
        @Flag(help: "The key is hex.") var hex = false

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let bytes: [UInt8]
                if hex {
                    guard let decoded = Hex.decode(key) else {
                        throw MetanodeError(.invalidArgument, "'\(key)' is not hex")
                    }
                    bytes = decoded
                } else {
                    bytes = Array(key.utf8)
                }
                let answer = try RunningNode.get(options.dataDirectory,
                                                 "\(ChainCommand.apiPrefix)/state/\(Hex.encode(bytes))")
                let value = answer["value"]?.stringValue
                Output.emit(options, json: answer, text: """
                    key        \(answer["key"]?.stringValue ?? "?")
                    value      \(value ?? "(none)")
                    at height  \(answer["height"]?.intValue ?? 0), state root \(answer["stateRoot"]?.stringValue ?? "?")
                    proof      \((answer["stateProof"]?.stringValue ?? "").count / 2) bytes (verify with \
                    `metanode chain verify-proof`)
                    """)
            }
        }
    }

    /// Changing the validator set: each of a quorum of current validators approves the new set with its node key,
    /// then anyone submits the approvals in a "bpi/validators" transaction.
    struct Validators: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "validators",
            abstract: "Change the validator set: approve on each validator, then propose.",
            discussion: """
                On each of a quorum of the current validators: `metanode chain validators approve KEY... \
                --data-dir NODE` prints this validator's approval. Then on any node: `metanode chain validators \
                propose KEY... --approval A --approval B ... --data-dir NODE` submits the change (the node's key \
                pays as the sender). It takes effect at the height after its block. A new validator must also be \
                a peer of the others (`metanode net add-peer`).
                """,
            subcommands: [Approve.self, Propose.self])

        static func newSet(_ keys: [String]) throws(MetanodeError) -> ValidatorSet {
            var bytes: [[UInt8]] = []
            for key in keys {
                guard let decoded = Hex.decode(key), decoded.count == 32 else {
                    throw MetanodeError(.invalidArgument, "'\(key)' is not a node key (64 hex digits)")
                }
                bytes.append(decoded)
            }
            do throws(WireError) { return try ValidatorSet(keys: bytes) } catch {
                throw MetanodeError(.invalidArgument, error.message)
            }
        }

        /// The running node's chain id and current validator set.
        static func current(_ data: DataDirectory) throws(MetanodeError) -> (String, ValidatorSet) {
            let status = try RunningNode.get(data, "\(ChainCommand.apiPrefix)/status")
            let keys = (status["validators"]?.arrayValue ?? []).compactMap { $0.stringValue }
            return (status["chainId"]?.stringValue ?? "", try newSet(keys))
        }

        struct Approve: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "approve", abstract: "This validator's approval of a new set.")
            @OptionGroup var options: CommonOptions
            @Argument(help: "The new set's node keys, in order.") var keys: [String]

            func run() async throws {
                try await Output.run(options) { () throws(MetanodeError) in
                    let data = options.dataDirectory
                    let (chainID, current) = try Validators.current(data)
                    let set = try Validators.newSet(keys)
                    let key = try data.loadNodeKey().keyPair
                    guard let index = current.index(of: key.publicKey.bytes) else {
                        throw MetanodeError(.invalidArgument, "this node is not a current validator")
                    }
                    let message = ValidatorSetChange.approvalMessage(chainID: chainID, current: current, new: set)
                    let signature = key.sign(NodeSignature.signingBytes(plugin: ChainCommand.pluginName,
                                                                        message: message))
                    let approval = "\(index):\(Hex.encode(signature))"
                    Output.emit(options, json: .object(["validator": .int(Int64(index)), "approval": .string(approval)]),
                                text: approval)
                }
            }
        }

        struct Propose: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "propose", abstract: "Submit a new set with its approvals.")
            @OptionGroup var options: CommonOptions
            @Argument(help: "The new set's node keys, in order.") var keys: [String]
            @Option(name: .customLong("approval"), help: "An approval from `approve` (INDEX:SIGNATURE); repeat.")
            var approvals: [String] = []

            func run() async throws {
                try await Output.run(options) { () throws(MetanodeError) in
                    let data = options.dataDirectory
                    let (chainID, _) = try Validators.current(data)
                    let set = try Validators.newSet(keys)
                    var parsed: [ValidatorSetChange.Approval] = []
                    for approval in approvals {
                        let parts = approval.split(separator: ":")
                        guard parts.count == 2, let index = UInt16(parts[0]), let signature = Hex.decode(String(parts[1])),
                              signature.count == 64 else {
                            throw MetanodeError(.invalidArgument, "'\(approval)' is not an approval (INDEX:SIGNATURE)")
                        }
                        parsed.append(.init(validator: index, signature: signature))
                    }
                    let key = try data.loadNodeKey().keyPair
                    let payload = ValidatorSetChange(newSet: set, approvals: parsed).encoded
                    let id = try ChainCommand.submit(data, chainID: chainID, signer: Ed25519Signer(seed: key.seed),
                                                     fee: 0, kind: ValidatorSetChange.kind, payload: payload)
                    Output.emit(options, json: .object(["id": .string(id)]), text: "submitted validator set change "
                        + "(\(set.count) validators): \(id)")
                }
            }
        }
    }
}
