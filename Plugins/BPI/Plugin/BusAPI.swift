import BPICore
import MetanodePluginKit
import MetanodeWire

/// The bus requests of MetanodeWire's `LedgerRequests`, for plugins that submit transactions of their own (DockLock's
/// receipt batches): the same admission, lookups and queries as the HTTP routes, answered on BPI's thread.
extension BPI {
    static let requestTopics = [LedgerRequests.submitTopic, LedgerRequests.statusTopic, LedgerRequests.nonceTopic,
                                LedgerRequests.queryTopic]

    func answerRequest(_ message: BusMessage) {
        let reply: [UInt8]
        switch message.topic {
        case LedgerRequests.submitTopic:
            let id = (try? Transaction.decode(message.payload).id) ?? [UInt8](repeating: 0, count: 32)
            switch admit([message.payload], gossip: true)[0] {
            case .success(let admitted): reply = TxSubmitReply(accepted: true, id: admitted, reason: "").encoded
            case .failure(let rejection):
                reply = TxSubmitReply(accepted: false, id: id, reason: rejection.description).encoded
            }
        case LedgerRequests.statusTopic:
            reply = message.payload.count == 32 ? transactionStatus(message.payload).encoded
                : TxStatus.invalid("bpi.tx.status takes a 32-byte transaction id, not \(message.payload.count) bytes")
                    .encoded
        case LedgerRequests.nonceTopic:
            // A payload that is no key is no sender's: its next nonce is 0.
            let sender = message.payload.count == 32 ? message.payload : []
            let (committed, next) = nonces(of: sender)
            reply = LedgerAccount(chainID: genesis.chainID, height: core.height - 1, committedNonce: committed,
                                  nextNonce: next).encoded
        case LedgerRequests.queryTopic:
            do throws(WireError) {
                let query = try LedgerQuery.decode(message.payload)
                switch ledger.query(module: query.module, path: query.path, request: query.data) {
                case .success(let answer) where answer.count <= LedgerRequests.queryDataBytesMax:
                    reply = LedgerQueryReply.answer(answer).encoded
                case .success(let answer):
                    reply = LedgerQueryReply.refused("module \(query.module)'s answer is \(answer.count) bytes; a "
                        + "bus reply holds at most \(LedgerRequests.queryDataBytesMax)").encoded
                case .failure(let problem): reply = LedgerQueryReply.refused(problem.description).encoded
                }
            } catch {
                reply = LedgerQueryReply.refused(error.message).encoded
            }
        default:
            return
        }
        _ = try? context.bus.reply(to: message, reply)
    }

    /// The sender's next nonce after its finalized transactions, and after those waiting here too (without a gap).
    func nonces(of sender: [UInt8]) -> (committed: UInt64, next: UInt64) {
        let committed = nonces[BytesKey(sender)] ?? 0
        var next = committed
        for entry in mempool.pending(sender: sender) where entry.transaction.nonce == next { next += 1 }
        return (committed, next)
    }

    /// Where transaction `id` is: final (with its result), waiting in this node's mempool, or unknown.
    func transactionStatus(_ id: [UInt8]) -> TxStatus {
        let final: ChainStore.FinalTransaction?
        do { final = try store.finalTransaction(id) } catch {
            context.log.error("cannot read transaction \(Hex.encode(id)): \(error)")
            final = nil
        }
        if let final {
            return .final(height: final.height, index: UInt32(final.index), status: final.result?.status ?? 0,
                          reason: final.result?.reason ?? "")
        }
        return mempool.contains(id: id) ? .waiting : .unknown
    }
}
