import DockLockCore
import MetanodeWire
import Testing

@Suite("Execution receipts: the per-node hash chain")
struct ReceiptChainTests {
    static let key = ReceiptFixture.node.publicKey

    static func failure(_ receipts: [SignedReceipt], after: ReceiptChain.State? = nil) -> String? {
        ReceiptFixture.failure { _ = try ReceiptChain.verify(receipts, publicKey: key, after: after) }
    }

    static func prefix(_ bytes: [UInt8]) -> String { String(Hex.encode(bytes).prefix(16)) + "…" }

    @Test("a chain of 5 receipts built with State.next verifies")
    func chainOfFive() throws {
        let chain = try ReceiptFixture.chain(5)
        let verified = try ReceiptChain.verify(chain, publicKey: Self.key)
        #expect(verified.count == 5)
        #expect(verified.firstSequence == 0)
        #expect(verified.lastSequence == 4)
        #expect(verified.anchored)
        #expect(verified.node == Self.key)
        #expect(verified.state == ReceiptChain.State(node: Self.key, nextSequence: 5, lastHash: chain[4].hash))
    }

    @Test("each receipt of a chain carries the previous one's hash, and the first the zero hash")
    func links() throws {
        let chain = try ReceiptFixture.chain(3)
        #expect(chain[0].receipt.previousHash == ExecutionReceipt.zeroHash)
        #expect(chain[1].receipt.previousHash == chain[0].hash)
        #expect(chain[2].receipt.previousHash == chain[1].hash)
        #expect(chain.map(\.receipt.sequence) == [0, 1, 2])
    }

    @Test("a missing receipt fails at the receipt after the gap, naming the missing sequence")
    func missingReceipt() throws {
        var chain = try ReceiptFixture.chain(5)
        chain.remove(at: 2)
        #expect(Self.failure(chain) == "receipt 2 (sequence 3): expected sequence 2 after sequence 1; sequence 2 is "
            + "missing")
    }

    @Test("several missing receipts are named as a range")
    func missingRange() throws {
        let chain = try ReceiptFixture.chain(5)
        #expect(Self.failure([chain[0], chain[4]]) == "receipt 1 (sequence 4): expected sequence 1 after sequence 0; "
            + "sequences 1…3 are missing")
    }

    @Test("reordered receipts fail at the first out of place")
    func reordered() throws {
        var chain = try ReceiptFixture.chain(5)
        chain.swapAt(2, 3)
        #expect(Self.failure(chain) == "receipt 2 (sequence 3): expected sequence 2 after sequence 1; sequence 2 is "
            + "missing")
    }

    @Test("a repeated receipt fails as out of order")
    func repeated() throws {
        var chain = try ReceiptFixture.chain(3)
        chain.insert(chain[1], at: 2)
        #expect(Self.failure(chain) == "receipt 2 (sequence 1): expected sequence 2 after sequence 1; the receipts "
            + "are out of order or one is repeated")
    }

    @Test("a receipt signed by another key, claiming the node, fails on its signature")
    func forgedSignature() throws {
        var chain = try ReceiptFixture.chain(5)
        let receipt = chain[3].receipt
        chain[3] = SignedReceipt(receipt: receipt, signature: ReceiptFixture.stranger.sign(receipt.signingBytes))
        #expect(Self.failure(chain) == "receipt 3 (sequence 3): the signature does not verify with node key "
            + "\(Hex.encode(Self.key)): the receipt was changed after it was signed, or another key signed it")
    }

    @Test("a receipt of another node fails, naming both keys")
    func otherNode() throws {
        var chain = try ReceiptFixture.chain(5)
        var receipt = chain[3].receipt
        receipt.node = ReceiptFixture.stranger.publicKey
        chain[3] = try ReceiptFixture.signed(receipt, by: ReceiptFixture.stranger)
        #expect(Self.failure(chain) == "receipt 3 (sequence 3): names node "
            + "\(Self.prefix(ReceiptFixture.stranger.publicKey)), not the key \(Self.prefix(Self.key)) it is checked "
            + "against")
    }

    @Test("a signed receipt whose previousHash is not its predecessor's hash breaks the chain")
    func brokenLink() throws {
        var chain = try ReceiptFixture.chain(5)
        var receipt = chain[3].receipt
        receipt.previousHash = WireCrypto.blake2b256(Array("another history".utf8))
        chain[3] = try ReceiptFixture.signed(receipt)
        #expect(Self.failure(chain) == "receipt 3 (sequence 3): previousHash \(Self.prefix(receipt.previousHash)) "
            + "does not match the hash of sequence 2 (\(Self.prefix(chain[2].hash)))")
    }

    @Test("a field changed in a chained receipt fails on that receipt's signature")
    func tamperedMember() throws {
        var chain = try ReceiptFixture.chain(5)
        chain[1].receipt.usage.cpuMs += 1
        #expect(Self.failure(chain)?.hasPrefix("receipt 1 (sequence 1): the signature does not verify") == true)
    }

    @Test("a fragment starting after sequence 0 verifies, unanchored")
    func fragment() throws {
        let chain = try ReceiptFixture.chain(5)
        let verified = try ReceiptChain.verify(Array(chain[2...]), publicKey: Self.key)
        #expect(verified.firstSequence == 2)
        #expect(verified.lastSequence == 4)
        #expect(!verified.anchored)
    }

    @Test("a fragment verified after a known state is anchored to it")
    func anchoredFragment() throws {
        let chain = try ReceiptFixture.chain(5)
        let known = ReceiptChain.State(after: chain[1].receipt)
        let verified = try ReceiptChain.verify(Array(chain[2...]), publicKey: Self.key, after: known)
        #expect(verified.anchored)
        #expect(Self.failure(Array(chain[3...]), after: known) == "receipt 0 (sequence 3): expected sequence 2 after "
            + "sequence 1; sequence 2 is missing")
    }

    @Test("a fragment that does not follow the known state's hash fails")
    func fragmentOffAnotherHistory() throws {
        let chain = try ReceiptFixture.chain(5)
        let other = ReceiptChain.State(node: Self.key, nextSequence: 2, lastHash: [UInt8](repeating: 9, count: 32))
        #expect(Self.failure(Array(chain[2...]), after: other) == "receipt 0 (sequence 2): previousHash "
            + "\(Self.prefix(chain[1].hash)) does not match the hash of sequence 1 (\(Self.prefix(other.lastHash)))")
    }

    @Test("an empty list is not a chain")
    func empty() {
        #expect(Self.failure([]) == "there are no receipts to verify")
    }

    @Test("State.record moves past the receipt that follows and refuses any other")
    func record() throws {
        let chain = try ReceiptFixture.chain(3)
        var state = ReceiptChain.State.start(node: Self.key)
        try state.record(chain[0].receipt)
        #expect(state == ReceiptChain.State(after: chain[0].receipt))
        #expect(ReceiptFixture.failure { try state.record(chain[2].receipt) }
            == "receipt sequence 2 does not follow: expected sequence 1 after sequence 0; sequence 1 is missing")
        #expect(state.nextSequence == 1)
    }

    @Test("State.next refuses a receipt that breaks a field rule")
    func nextChecksFields() {
        let state = ReceiptChain.State.start(node: Self.key)
        let base = ReceiptFixture.golden()
        #expect(ReceiptFixture.failure {
            _ = try state.next(
                containerID: "c", imageDigest: "latest", command: base.command, environmentHash: base.environmentHash,
                hostname: base.hostname, user: base.user, workingDirectory: base.workingDirectory,
                profile: base.profile, stdin: base.stdin, stdout: base.stdout, stderr: base.stderr,
                outcome: base.outcome, oomKilled: false, timedOut: false, usage: base.usage,
                startedAtMs: base.startedAtMs, endedAtMs: base.endedAtMs)
        } == "receipt.imageDigest 'latest' must be 'sha256:' and 64 lowercase hex digits")
    }

    @Test("a state rebuilt from the last receipt continues the chain as the running one would")
    func restart() throws {
        let chain = try ReceiptFixture.chain(4)
        let restored = ReceiptChain.State(after: chain[3].receipt)
        let next = try ReceiptFixture.signed(ReceiptFixture.receipt(sequence: restored.nextSequence,
                                                                    previousHash: restored.lastHash))
        _ = try ReceiptChain.verify(chain + [next], publicKey: Self.key)
    }
}
