import BPICore
import DockLockCore
import Foundation
import MetanodeCore
import MetanodeKernel
import MetanodeWire

/// Checks, on this side of the API, that the ledger holds a receipt where DockLock says: the receipt's hash is in
/// its batch transaction, the transaction is in a block sealed by the chain's validators (Merkle proof to the
/// transactions root), and the ledger state after the tip holds `docklock/r/<hash>` with the receipt's node,
/// sequence and height (state proof to the state root). The same checks as `metanode chain verify-proof`.
enum ReceiptLedgerProof {
    struct Validators {
        var chainID: String?
        var set: ValidatorSet
        /// Where the set came from, for the answer: "genesis file …" or "the node's current validators".
        var source: String
    }

    /// The validators seals are checked against: `genesis` if given, else bpi's configured genesis file, else the
    /// running node's current set (a dev chain with no genesis file).
    static func validators(_ data: DataDirectory, genesis: String?) throws(MetanodeError) -> Validators {
        let configured = try? data.loadConfig().pluginConfigs[ChainCommand.pluginName]?["genesisFile"]?.stringValue
        if let path = genesis ?? configured {
            let bytes = try FileIO.read(path, limit: Genesis.fileBytesMax, what: "genesis file")
            do throws(WireError) {
                let chain = try Genesis.parse(bytes, source: path)
                return Validators(chainID: chain.chainID, set: chain.validators, source: "genesis file \(path)")
            } catch { throw MetanodeError(.invalidConfig, error.message) }
        }
        let (chainID, set) = try ChainCommand.Validators.current(data)
        return Validators(chainID: chainID, set: set, source: "the node's current validators (no genesis file)")
    }

    static func block(_ data: DataDirectory, _ height: UInt64) throws(MetanodeError) -> FinalizedBlock {
        let response = try LoopbackHTTPClient.request("GET", RunningNode.address(data),
                                                      "\(ChainCommand.apiPrefix)/blocks/\(height)?format=raw")
        guard response.status == 200 else {
            throw MetanodeError(.notFound, "the node has no block \(height): \(response.text)")
        }
        do throws(WireError) { return try FinalizedBlock.decode(response.body) } catch {
            throw MetanodeError(.invalidArgument, "block \(height) from the node: \(error.message)")
        }
    }

    /// The proof object for `"ledger"."proof"`: what was checked, `"verified"`, and `"problems"` if any.
    static func check(_ data: DataDirectory, receipt: SignedReceipt, ledger: JSONValue,
                      validators: Validators) throws(MetanodeError) -> JSONValue {
        let hash = receipt.hash
        guard let height = ledger["height"]?.uintValue else {
            throw MetanodeError(.invalidArgument, "the receipt's ledger entry has no height")
        }
        var problems: [String] = []
        var proof: [String: JSONValue] = ["validators": .string(validators.source)]
        var summary: [String] = []

        // The batch transaction, when this node sent it: the hash in its payload, the payload in the block.
        if let id = ledger["txId"]?.stringValue {
            let inclusion = try RunningNode.get(data, "\(ChainCommand.apiPrefix)/tx/\(id)")
            let finalized = try block(data, height)
            if inclusion["height"]?.uintValue != height {
                problems.append("transaction \(id) is at height \(inclusion["height"]?.uintValue ?? 0), not \(height)")
            }
            problems += try ChainCommand.VerifyProof.inclusionProblems(
                inclusion, finalized: finalized, chainID: validators.chainID ?? finalized.block.header.chainID,
                validators: validators.set, source: "the node's proof of transaction \(id)")
            let transaction = finalized.block.transactions.lazy.compactMap { try? Transaction.decode($0) }
                .first { Hex.encode($0.id) == id }
            if let transaction {
                do throws(DockLockError) {
                    let batch = try ReceiptBatch.decode(transaction.payload)
                    let index = Int(receipt.receipt.sequence &- batch.firstSequence)
                    if transaction.kind != ReceiptLedgerModule.receiptsKind || batch.node != receipt.receipt.node
                        || !batch.hashes.indices.contains(index) || batch.hashes[index] != hash {
                        problems.append("transaction \(id) does not carry this receipt's hash as sequence "
                            + "\(receipt.receipt.sequence) of node \(Hex.encode(receipt.receipt.node).prefix(16))…")
                    }
                } catch { problems.append("transaction \(id)'s payload: \(error.message)") }
            } else {
                problems.append("block \(height) does not hold transaction \(id)")
            }
            let seals = finalized.certificate.seals.count
            proof["transaction"] = .object([
                "id": .string(id), "height": .uint(height), "index": inclusion["index"] ?? .null,
                "blockHash": .string(Hex.encode(finalized.block.header.hash)),
                "transactionsRoot": .string(Hex.encode(finalized.block.header.transactionsRoot)),
                "path": inclusion["proof"] ?? .array([]), "seals": .int(Int64(seals)),
            ])
            summary.append("its hash is in transaction \(id.prefix(16))… at index "
                + "\(inclusion["index"]?.intValue ?? -1) of block \(height), sealed by \(seals) of "
                + "\(validators.set.count) validator(s)")
        }

        // The ledger state: docklock/r/<hash> holds the receipt's node, sequence and height.
        let key = ReceiptLedgerModule.stateKey(hash)
        let state = try RunningNode.get(data, "\(ChainCommand.apiPrefix)/state/\(Hex.encode(key))")
        guard let tip = state["height"]?.uintValue else {
            throw MetanodeError(.invalidJSON, "the node's state answer has no height: \(state.serialized())")
        }
        let tipBlock = try block(data, tip)
        problems += try ChainCommand.VerifyProof.stateProblems(state, finalized: tipBlock, validators: validators.set,
                                                                source: "the node's state proof")
        let expected = LedgerReceiptRecord(height: height, node: receipt.receipt.node,
                                           sequence: receipt.receipt.sequence)
        if let value = state["value"]?.stringValue.flatMap(Hex.decode) {
            if value != expected.encoded {
                let recorded = (try? LedgerReceiptRecord.decode(value)).map {
                    "height \($0.height), sequence \($0.sequence)"
                } ?? "an undecodable record"
                problems.append("the ledger holds \(recorded) for this receipt, not height \(height), sequence "
                    + "\(receipt.receipt.sequence)")
            }
        } else {
            problems.append("the ledger state after block \(tip) has no docklock/r/\(Hex.encode(hash))")
        }
        proof["state"] = .object([
            "key": .string(Hex.encode(key)), "value": state["value"] ?? .null, "atHeight": .uint(tip),
            "stateRoot": state["stateRoot"] ?? .null, "stateProof": state["stateProof"] ?? .null,
        ])
        summary.append("the ledger state after block \(tip) holds docklock/r/\(Hex.encode(hash).prefix(16))… = "
            + "recorded at height \(height) as sequence \(receipt.receipt.sequence) (state proof to root "
            + "\(Hex.encode(tipBlock.block.header.stateRoot).prefix(16))…)")

        proof["verified"] = .bool(problems.isEmpty)
        if problems.isEmpty {
            proof["summary"] = .string("verified: receipt \(receipt.receipt.sequence) "
                + "(\(Hex.encode(hash).prefix(16))…): " + summary.joined(separator: "; "))
        } else {
            proof["problems"] = .array(problems.map(JSONValue.string))
        }
        return .object(proof)
    }
}
