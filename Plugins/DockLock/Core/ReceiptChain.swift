import MetanodeWire

/// The rules that make one node's receipts a hash chain: sequences 0, 1, 2… with no gaps, each receipt carrying the
/// hash of the one before (32 zero bytes for sequence 0), all signed by the node. A node that drops, reorders or
/// rewrites a receipt breaks a link every later receipt depends on.
public enum ReceiptChain {
    /// Where a node's chain stands: what DockLock keeps between executions (rebuilt from the last stored receipt
    /// with `init(after:)` on restart).
    public struct State: Sendable, Hashable {
        /// The node's public key, 32 bytes.
        public var node: [UInt8]
        /// The sequence the next receipt gets.
        public var nextSequence: UInt64
        /// The hash of receipt `nextSequence - 1`; 32 zero bytes before the first.
        public var lastHash: [UInt8]

        public init(node: [UInt8], nextSequence: UInt64, lastHash: [UInt8]) {
            precondition(node.count == WireCrypto.publicKeyBytes, "a node key is 32 bytes, not \(node.count)")
            precondition(lastHash.count == WireCrypto.hashBytes, "a receipt hash is 32 bytes, not \(lastHash.count)")
            self.node = node
            self.nextSequence = nextSequence
            self.lastHash = lastHash
        }

        /// A node with no receipts yet: the next is sequence 0, after the zero hash.
        public static func start(node: [UInt8]) -> State {
            State(node: node, nextSequence: 0, lastHash: ExecutionReceipt.zeroHash)
        }

        /// The state after `receipt`: the chain goes on from it.
        public init(after receipt: ExecutionReceipt) {
            precondition(receipt.sequence < .max, "receipt sequence \(receipt.sequence) is the last there can be")
            self.init(node: receipt.node, nextSequence: receipt.sequence + 1, lastHash: receipt.hash)
        }

        /// The receipt that comes next in this chain, for an execution with these facts: this state's node, next
        /// sequence and last hash, and the given fields. Throws if a field breaks a rule (`checkFields()`); the
        /// runtime should have refused such an execution before starting it. The state does not change: `record`
        /// the receipt once it is signed and stored.
        public func next(containerID: String, imageDigest: String, command: [String], environmentHash: [UInt8],
                         hostname: String, user: String, workingDirectory: String, profile: ExecutionProfile,
                         stdin: StreamDigest, stdout: StreamDigest, stderr: StreamDigest, outcome: ExecutionOutcome,
                         oomKilled: Bool, timedOut: Bool, usage: ResourceUsage, startedAtMs: UInt64,
                         endedAtMs: UInt64) throws(DockLockError) -> ExecutionReceipt {
            guard nextSequence < .max else {
                throw DockLockError(.limit, "node \(Hex.encode(node)) has used every receipt sequence")
            }
            let receipt = ExecutionReceipt(
                node: node, sequence: nextSequence, previousHash: lastHash, containerID: containerID,
                imageDigest: imageDigest, command: command, environmentHash: environmentHash, hostname: hostname,
                user: user, workingDirectory: workingDirectory, profile: profile, stdin: stdin, stdout: stdout,
                stderr: stderr, outcome: outcome, oomKilled: oomKilled, timedOut: timedOut, usage: usage,
                startedAtMs: startedAtMs, endedAtMs: endedAtMs)
            try receipt.checkFields()
            return receipt
        }

        /// Moves past `receipt`, which must be the one that follows (same node, the next sequence, this last hash).
        public mutating func record(_ receipt: ExecutionReceipt) throws(DockLockError) {
            if let problem = problem(following: receipt) {
                throw DockLockError(.invalid, "receipt sequence \(receipt.sequence) does not follow: \(problem)")
            }
            self = State(after: receipt)
        }

        /// Why `receipt` cannot be the next receipt of this chain, or nil if it is. Node first, then sequence, then
        /// the hash link.
        func problem(following receipt: ExecutionReceipt) -> String? {
            guard receipt.node == node else {
                return "it names node \(receiptShortHex(receipt.node)), not \(receiptShortHex(node))"
            }
            guard receipt.sequence == nextSequence else {
                return ReceiptChain.sequenceProblem(expected: nextSequence, got: receipt.sequence)
            }
            guard receipt.previousHash == lastHash else {
                return nextSequence == 0
                    ? "previousHash \(receiptShortHex(receipt.previousHash)) is not the zero hash of a first receipt"
                    : "previousHash \(receiptShortHex(receipt.previousHash)) does not match the hash of sequence "
                        + "\(nextSequence - 1) (\(receiptShortHex(lastHash)))"
            }
            return nil
        }
    }

    /// What a verified chain (or fragment) showed.
    public struct Verified: Sendable, Hashable {
        public var count: Int
        public var firstSequence: UInt64
        public var lastSequence: UInt64
        public var node: [UInt8]
        /// Whether the first receipt is the node's sequence 0, or follows the `after` state the caller gave: the
        /// chain is anchored. If not, it is a fragment whose first link was not checked.
        public var anchored: Bool
        /// The state after the last receipt, to verify or build what follows.
        public var state: State
    }

    /// Checks `receipts`, in order, as one node's chain: each receipt's fields, that it names `publicKey` as its
    /// node, its signature, that its sequence is one more than the one before, and that its `previousHash` is the
    /// hash of the one before. Throws the first failure, naming the receipt by its place in `receipts` (from 0) and
    /// its sequence: "receipt 3 (sequence 7): previousHash 1a2b… does not match the hash of sequence 6 (9f8e…)".
    ///
    /// The first receipt: with `after`, it must follow that state. Without, a receipt of sequence 0 must carry the
    /// zero hash (the chain is anchored), and a receipt of any later sequence is accepted as the start of a
    /// fragment, since its predecessor is not here to check against (`Verified.anchored` is false). A fragment
    /// proves its receipts came from the node in that order, not that nothing came before them.
    public static func verify(_ receipts: [SignedReceipt], publicKey: [UInt8],
                              after: State? = nil) throws(DockLockError) -> Verified {
        guard publicKey.count == WireCrypto.publicKeyBytes else {
            throw DockLockError(.invalid, "the node key is \(publicKey.count) bytes; an Ed25519 public key is "
                + "\(WireCrypto.publicKeyBytes)")
        }
        guard !receipts.isEmpty else { throw DockLockError(.invalid, "there are no receipts to verify") }
        if let after, after.node != publicKey {
            throw DockLockError(.invalid, "the chain state is node \(receiptShortHex(after.node))'s, not "
                + "\(receiptShortHex(publicKey))'s")
        }
        var state = after
        for (index, signed) in receipts.enumerated() {
            let receipt = signed.receipt
            func fail(_ code: DockLockError.Code, _ message: String) -> DockLockError {
                DockLockError(code, "receipt \(index) (sequence \(receipt.sequence)): \(message)")
            }
            do {
                try receipt.checkFields()
            } catch {
                throw fail(error.code, error.message)
            }
            guard receipt.node == publicKey else {
                throw fail(.integrity, "names node \(receiptShortHex(receipt.node)), not the key "
                    + "\(receiptShortHex(publicKey)) it is checked against")
            }
            do {
                try signed.verify(publicKey: publicKey)
            } catch {
                throw fail(error.code, error.message)
            }
            if let state, let problem = state.problem(following: receipt) {
                throw fail(.integrity, problem)
            }
            state = State(after: receipt)
        }
        let first = receipts[0].receipt
        let last = receipts[receipts.count - 1].receipt
        return Verified(count: receipts.count, firstSequence: first.sequence, lastSequence: last.sequence,
                        node: publicKey, anchored: after != nil || first.sequence == 0, state: State(after: last))
    }

    static func sequenceProblem(expected: UInt64, got: UInt64) -> String {
        if got > expected {
            let missing = got - expected == 1 ? "sequence \(expected) is missing"
                : "sequences \(expected)…\(got - 1) are missing"
            return expected == 0 ? "expected sequence 0 first; \(missing)"
                : "expected sequence \(expected) after sequence \(expected - 1); \(missing)"
        }
        return expected == 0 ? "expected sequence 0 first"
            : "expected sequence \(expected) after sequence \(expected - 1); the receipts are out of order or one "
                + "is repeated"
    }
}

/// The first 16 hex digits of a key or hash and an ellipsis, for messages.
func receiptShortHex(_ bytes: [UInt8]) -> String { String(Hex.encode(bytes).prefix(16)) + "…" }
