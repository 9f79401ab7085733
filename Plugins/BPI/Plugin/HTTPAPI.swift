import BPICore
import Foundation
import MetanodePluginKit
import MetanodeWire

/// JSON views of chain data, and the routes that serve them.
extension BPI {
    struct StatusView: Encodable {
        var chainId: String
        var height: UInt64
        var nextHeight: UInt64
        var round: UInt32
        var tipHash: String
        var validators: [String]
        var quorum: Int
        var validatorSetHash: String
        var validatorIndex: Int?
        var mempool: MempoolView
    }

    struct MempoolView: Encodable {
        var transactions: Int
        var bytes: Int
    }

    struct HeaderView: Encodable {
        var chainId: String
        var height: UInt64
        var hash: String
        var parentHash: String
        var timestampMs: UInt64
        var proposer: String
        var transactionsRoot: String
        var stateRoot: String
        var resultsRoot: String
        var validatorSetHash: String
        var pohCount: UInt64
        var pohHash: String
        var evidenceRoot: String
    }

    struct EvidenceView: Encodable {
        var validator: UInt16
        var height: UInt64
        var round: UInt32
        var kind: String
    }

    struct NonceView: Encodable {
        var sender: String
        /// The next nonce after the finalized transactions.
        var committed: UInt64
        /// After those waiting in this node's mempool too, without a gap.
        var next: UInt64
    }

    struct TransactionView: Encodable {
        var id: String
        var sender: String
        var nonce: UInt64
        var fee: UInt64
        var kind: String
        var payloadBytes: Int
    }

    struct BlockView: Encodable {
        var header: HeaderView
        var round: UInt32
        var seals: [Int]
        var transactions: [TransactionView]
        var evidence: [EvidenceView]
    }

    struct InclusionView: Encodable {
        var id: String
        var height: UInt64
        var index: Int
        var blockHash: String
        var transactionsRoot: String
        /// Sibling hashes from the leaf up (RFC 6962 audit path over BLAKE2b leaf hashes of transaction ids).
        var proof: [String]
        var transaction: TransactionView
        var result: ResultView?
    }

    struct EventView: Encodable {
        var type: String
        var data: String
    }

    /// status 0 is success; otherwise an MN_ERR_* code, with the module's reason.
    struct ResultView: Encodable {
        var status: UInt32
        var reason: String
        var events: [EventView]
    }

    struct StateView: Encodable {
        var key: String
        /// Hex of the value, or nil when the key has none (the proof then proves absence).
        var value: String?
        var height: UInt64
        var blockHash: String
        var stateRoot: String
        /// Hex of the StateProof wire encoding (plugin-sdk/docs/wire.md).
        var stateProof: String
    }

    struct ErrorView: Encodable {
        var error: String
    }

    struct RejectionView: Encodable {
        var index: Int
        var error: String
    }

    struct BatchView: Encodable {
        var accepted: Int
        var rejected: [RejectionView]
    }

    struct SubmittedView: Encodable {
        var id: String
    }

    func routes() throws {
        // GET /state/<hex key>: a key's value in the ledger state with a proof against the tip's stateRoot.
        try context.http.route("GET", "/status") { [unowned self] _ in
            .json(StatusView(chainId: genesis.chainID, height: core.height - 1, nextHeight: core.height,
                             round: core.round, tipHash: Hex.encode(parent.hash),
                             validators: validators.keys.map(Hex.encode), quorum: validators.quorum,
                             validatorSetHash: Hex.encode(validators.hash),
                             validatorIndex: me, mempool: MempoolView(transactions: mempool.count,
                                                                     bytes: mempool.bytes)))
        }
        // GET /nonce/<sender hex>: the nonce a new transaction should use, counting the sender's transactions that
        // wait in this node's mempool after the finalized ones (so a wallet can send again before the last is final).
        try context.http.route("GET", "/nonce/*") { [unowned self] request in
            let text = String(request.path.dropFirst("/nonce/".count))
            guard let sender = Hex.decode(text), sender.count == 32 else {
                return .json(ErrorView(error: "'\(text)' is not a sender key (64 hex digits)"), status: 400)
            }
            let (committed, next) = nonces(of: sender)
            return .json(NonceView(sender: text, committed: committed, next: next))
        }
        try context.http.route("GET", "/blocks/*") { [unowned self] request in
            let which = String(request.path.dropFirst("/blocks/".count))
            let height: UInt64
            if which == "latest" {
                height = core.height - 1
            } else if let number = UInt64(which) {
                height = number
            } else if let hash = Hex.decode(which), hash.count == 32, let found = try store.height(ofBlock: hash) {
                height = found
            } else {
                return .json(ErrorView(error: "no block '\(which)': give a height, a block hash or 'latest'"),
                             status: 404)
            }
            let raw = request.queryItem("format") == "raw"
            guard height >= 1, let encoded = try store.encodedBlock(at: height) else {
                return .json(ErrorView(error: "no block at height \(height); the chain is at \(core.height - 1)"),
                             status: 404)
            }
            return raw ? .bytes(encoded) : .json(Self.view(try FinalizedBlock.decode(encoded)))
        }
        try context.http.route("GET", "/tx/*") { [unowned self] request in
            let text = String(request.path.dropFirst("/tx/".count))
            guard let id = Hex.decode(text), id.count == 32 else {
                return .json(ErrorView(error: "'\(text)' is not a transaction id (64 hex digits)"), status: 400)
            }
            guard let final = try store.finalTransaction(id), let finalized = try store.block(at: final.height) else {
                let waiting = mempool.contains(id: id)
                return .json(ErrorView(error: waiting ? "transaction \(text) is waiting in the mempool"
                                                      : "no finalized transaction \(text)"), status: 404)
            }
            let (height, index) = (final.height, final.index)
            let block = finalized.block
            let leaves = try block.transactions.map { encoded throws -> [UInt8] in
                MerkleTree.leafHash(try Transaction.decode(encoded).id)
            }
            let transaction = try Transaction.decode(block.transactions[index])
            return .json(InclusionView(
                id: text, height: height, index: index, blockHash: Hex.encode(block.hash),
                transactionsRoot: Hex.encode(block.header.transactionsRoot),
                proof: MerkleTree.proof(leafHashes: leaves, index: index).map(Hex.encode),
                transaction: Self.view(transaction),
                result: final.result.map { result in
                    ResultView(status: result.status, reason: result.reason,
                               events: result.events.map { EventView(type: $0.type, data: Hex.encode($0.data)) })
                }))
        }
        try context.http.route("GET", "/state/*") { [unowned self] request in
            let text = String(request.path.dropFirst("/state/".count))
            guard let key = Hex.decode(text), !key.isEmpty, key.count <= 1024 else {
                return .json(ErrorView(error: "'\(text)' is not a state key (1-1024 bytes in hex)"), status: 400)
            }
            guard parent.height >= 1, let tip = try store.block(at: parent.height) else {
                return .json(ErrorView(error: "no finalized block yet"), status: 404)
            }
            let nonceOf = key.starts(with: Array("bpi/nonce/".utf8)) && key.count == 10 + 32 ? key.dropFirst(10) : nil
            let value = try nonceOf.map { try store.nextNonceIfStored(Array($0)).map(BlockRules.nonceValue) }
                ?? store.moduleState(key)
            return .json(StateView(key: text, value: value.map(Hex.encode), height: parent.height,
                                   blockHash: Hex.encode(parent.hash),
                                   stateRoot: Hex.encode(tip.block.header.stateRoot),
                                   stateProof: Hex.encode(state.proof(key).encoded)))
        }
        // GET /query/<module>/<path>?data=<hex>: a module's answer over committed state, as the module wrote it.
        try context.http.route("GET", "/query/*") { [unowned self] request in
            let rest = request.path.dropFirst("/query/".count)
            let module = String(rest.prefix { $0 != "/" })
            let path = String(rest.dropFirst(module.count + 1))
            guard let data = Hex.decode(request.queryItem("data") ?? "") else {
                return .json(ErrorView(error: "data must be hex"), status: 400)
            }
            switch ledger.query(module: module, path: path, request: data) {
            case .success(let answer): return .bytes(answer)
            case .failure(let problem): return .json(ErrorView(error: problem.description), status: 404)
            }
        }
        try context.http.route("POST", "/tx") { [unowned self] request in
            let encoded: [UInt8]
            // A transaction's wire bytes start with its version (1); a JSON body starts with "{".
            if request.body.first == UInt8(ascii: "{") {
                struct Body: Decodable { var tx: String }
                guard let body = try? JSONDecoder().decode(Body.self, from: Data(request.body)),
                      let bytes = Hex.decode(body.tx) else {
                    return .json(ErrorView(error: "expected {\"tx\": \"<hex of the transaction's wire bytes>\"}"),
                                 status: 400)
                }
                encoded = bytes
            } else {
                encoded = request.body
            }
            switch admit([encoded], gossip: true)[0] {
            case .success(let id): return .json(SubmittedView(id: Hex.encode(id)), status: 202)
            case .failure(let rejection): return .json(ErrorView(error: rejection.description), status: 400)
            }
        }
        try context.http.route("POST", "/txs") { [unowned self] request in
            let batch: [[UInt8]]
            do throws(WireError) { batch = try TransactionBatch.decode(request.body) } catch {
                return .json(ErrorView(error: error.message), status: 400)
            }
            var rejections: [RejectionView] = []
            for (index, result) in admit(batch, gossip: true).enumerated() {
                if case .failure(let rejection) = result {
                    rejections.append(RejectionView(index: index, error: rejection.description))
                }
            }
            return .json(BatchView(accepted: batch.count - rejections.count, rejected: rejections))
        }
    }

    static func view(_ finalized: FinalizedBlock) -> BlockView {
        let header = finalized.block.header
        return BlockView(
            header: HeaderView(
                chainId: header.chainID, height: header.height, hash: Hex.encode(header.hash),
                parentHash: Hex.encode(header.parentHash), timestampMs: header.timestampMs,
                proposer: Hex.encode(header.proposer), transactionsRoot: Hex.encode(header.transactionsRoot),
                stateRoot: Hex.encode(header.stateRoot), resultsRoot: Hex.encode(header.resultsRoot),
                validatorSetHash: Hex.encode(header.validatorSetHash), pohCount: header.pohCount,
                pohHash: Hex.encode(header.pohHash), evidenceRoot: Hex.encode(header.evidenceRoot)),
            round: finalized.certificate.round, seals: finalized.certificate.seals.map { Int($0.validator) },
            transactions: finalized.block.transactions.compactMap { try? Transaction.decode($0) }.map(view),
            evidence: finalized.block.evidence.map {
                EvidenceView(validator: $0.first.signer, height: $0.first.payload.height, round: $0.first.payload.round,
                             kind: "\($0.first.payload.kind)")
            })
    }

    static func view(_ transaction: Transaction) -> TransactionView {
        TransactionView(id: Hex.encode(transaction.id), sender: Hex.encode(transaction.sender),
                        nonce: transaction.nonce, fee: transaction.fee, kind: transaction.kind,
                        payloadBytes: transaction.payload.count)
    }
}
