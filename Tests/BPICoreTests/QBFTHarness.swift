import BPICore
import MetanodePluginTesting
import MetanodeWire

/// Signs as a host would for plugin "bpi", with a key held in the test; accepts any block that extends the parent.
struct SimEnvironment: QBFTEnvironment {
    let plugin = "bpi"
    let signer: Ed25519Signer

    func sign(_ message: [UInt8]) -> [UInt8] { signer.sign(NodeSignature.signingBytes(plugin: plugin, message: message)) }

    func problem(with block: Block, parentHash: [UInt8]) -> String? {
        guard block.header.parentHash == parentHash else { return "parent differs" }
        let ids = block.transactions.map { WireCrypto.domainHash("sim-tx", $0) }
        guard block.header.transactionsRoot == Block.transactionsRoot(ids: ids) else { return "bad transactions root" }
        return nil
    }
}

/// N QBFT cores on a SimulatedNetwork under one virtual clock, with a minimal block sync (a node that hears a peer
/// is behind sends it the finalized blocks it lacks), crash and restart with a surviving WAL and chain, and an
/// optional equivocating proposer. Every run with one seed delivers the same messages in the same order.
final class QBFTHarness {
    enum Behaviour { case honest, equivocatingProposer, invalidProposer }

    final class Node: PeerTransportDelegate, @unchecked Sendable {
        /// The node's place on the network.
        let index: Int
        /// The validator it signs as: its own index, or the validator it is a twin of.
        let validatorIndex: Int
        let signer: Ed25519Signer
        var isTwin: Bool { index != validatorIndex }
        var behaviour: Behaviour = .honest
        var endpoint: SimulatedEndpoint
        var core: QBFTCore
        /// What survives a crash: the chain and the WAL.
        var chain: [FinalizedBlock] = []
        var wal: [QBFTRecord] = []
        var crashed = false
        var inbox: [(from: PeerID, bytes: [UInt8])] = []
        var equivocations = 0

        init(index: Int, validatorIndex: Int, signer: Ed25519Signer, endpoint: SimulatedEndpoint, core: QBFTCore) {
            self.index = index
            self.validatorIndex = validatorIndex
            self.signer = signer
            self.endpoint = endpoint
            self.core = core
        }

        func peerTransport(received message: UnsafeRawBufferPointer, from peer: PeerID) {
            inbox.append((peer, Array(message)))
        }
        func peerTransport(peerUp peer: PeerID) {}
        func peerTransport(peerDown peer: PeerID) {}

        var height: UInt64 { UInt64(chain.count) + 1 }
        var tipHash: [UInt8] { chain.last?.block.hash ?? QBFTHarness.genesisHash }
    }

    static let genesisHash = WireCrypto.domainHash("sim-genesis", [])
    static let chainID = "sim"
    static let statusIntervalMs: UInt64 = 100

    let seed: UInt64
    let network: SimulatedNetwork
    let validators: ValidatorSet
    let config: QBFTConfig
    private(set) var nodes: [Node] = []
    private var timers: [(timeMs: UInt64, sequence: Int, node: Int, height: UInt64, round: UInt32)] = []
    private var timerSequence = 0
    private var nextStatusMs: UInt64 = 0
    private(set) var nowMs: UInt64 = 0
    private(set) var trace: [UInt8] = []
    private var checkedCertificates: Set<[UInt8]> = []

    /// `twins` adds, for each validator index listed, a second node that signs with that validator's key and runs
    /// independently: a Byzantine validator that sends conflicting messages without meaning to.
    init(validators count: Int, seed: UInt64, faults: LinkFaults = LinkFaults(latencyMs: 5, jitterMs: 5),
         config: QBFTConfig = QBFTConfig(roundTimeoutBaseMs: 200), twins: [Int] = []) {
        self.seed = seed
        self.config = config
        network = SimulatedNetwork(seed: seed, faults: faults)
        let signers = (0..<count).map { node in
            Ed25519Signer(seed: WireCrypto.domainHash("sim-validator", withUnsafeBytes(of: UInt64(node)) { Array($0) }))
        }
        validators = try! ValidatorSet(keys: signers.map(\.publicKey))
        let members = Array(signers.enumerated().map { ($0.offset, $0.offset) })
            + twins.enumerated().map { (count + $0.offset, $0.element) }
        for (index, validatorIndex) in members {
            let signer = signers[validatorIndex]
            // The network knows nodes by a unique transport key; a twin gets its own.
            let transportKey = index == validatorIndex ? signer.publicKey
                : Ed25519Signer(seed: WireCrypto.domainHash("sim-twin", [UInt8(index)])).publicKey
            let endpoint = network.addNode(key: PeerID(bytes: transportKey)!)
            let core = QBFTCore(config: config, environment: SimEnvironment(signer: signer), me: validatorIndex,
                                height: 1, parentHash: Self.genesisHash, validators: validators)
            let node = Node(index: index, validatorIndex: validatorIndex, signer: signer, endpoint: endpoint,
                            core: core)
            endpoint.setDelegate(node)
            nodes.append(node)
        }
        for node in nodes { apply(node, node.core.handle(.activate)) }
    }

    // MARK: Faults

    func crash(_ index: Int) {
        network.crash(index)
        nodes[index].crashed = true
        nodes[index].inbox = []
        timers.removeAll { $0.node == index }
    }

    /// Starts the node again from what it kept: its chain and its WAL for the height after its tip.
    func restart(_ index: Int) {
        let node = nodes[index]
        node.endpoint = network.restart(index)
        node.endpoint.setDelegate(node)
        node.crashed = false
        let records = node.wal.filter { record in
            switch record {
            case .sent(let envelope): envelope.message.payload.height == node.height
            case .prepared(_, let block, _): block.header.height == node.height
            }
        }
        node.core = QBFTCore(config: config, environment: SimEnvironment(signer: node.signer), me: node.validatorIndex,
                             height: node.height, parentHash: node.tipHash, validators: validators, replaying: records)
        apply(node, node.core.handle(.activate))
    }

    // MARK: Time

    func run(forMs deltaMs: UInt64) { run(untilMs: nowMs + deltaMs) }

    func run(untilMs targetMs: UInt64) {
        while true {
            let nextTimer = timers.min { ($0.timeMs, $0.sequence) < ($1.timeMs, $1.sequence) }
            let candidates = [network.nextEventMs, nextTimer?.timeMs, nextStatusMs].compactMap { $0 }
            guard let next = candidates.min(), next <= targetMs else { break }
            nowMs = next
            if let timer = nextTimer, timer.timeMs == next {
                timers.removeAll { $0.sequence == timer.sequence }
                let node = nodes[timer.node]
                apply(node, node.core.handle(.timerExpired(height: timer.height, round: timer.round)))
                continue
            }
            if nextStatusMs == next {
                nextStatusMs += Self.statusIntervalMs
                for node in nodes where !node.crashed { sendStatus(node) }
                continue
            }
            network.advance(toMs: next)
            for node in nodes where !node.crashed { drain(node) }
        }
        if network.nowMs < targetMs { network.advance(toMs: targetMs) }
        for node in nodes where !node.crashed { drain(node) }
        nowMs = targetMs
    }

    // MARK: Checks

    /// Nodes that run the protocol as written with a key nobody else holds.
    var honest: [Node] {
        let twinned = Set(nodes.filter(\.isTwin).map(\.validatorIndex))
        return nodes.filter { $0.behaviour == .honest && !$0.isTwin && !twinned.contains($0.validatorIndex) }
    }

    /// Heights at which two honest nodes finalized different blocks (must always be empty).
    func forks() -> [UInt64] {
        let longest = honest.map(\.chain.count).max() ?? 0
        var forks: [UInt64] = []
        for height in 0..<longest {
            let hashes = Set(honest.compactMap { $0.chain.indices.contains(height) ? $0.chain[height].block.hash : nil })
            if hashes.count > 1 { forks.append(UInt64(height + 1)) }
        }
        return forks
    }

    var lowestHeight: Int { honest.map(\.chain.count).min() ?? 0 }
    var highestHeight: Int { honest.map(\.chain.count).max() ?? 0 }

    /// A hash of every node's chain and the network's delivery trace: equal for equal runs.
    var traceHash: [UInt8] {
        WireCrypto.blake2b256(parts: [network.traceHash] + nodes.flatMap { $0.chain.map(\.block.hash) })
    }

    var reproduction: String {
        "seed \(seed): replay with METANODE_SIM_SEED=\(seed) swift test --filter BPICoreTests"
    }

    // MARK: Wiring

    private func drain(_ node: Node) {
        while !node.inbox.isEmpty, !node.crashed {
            let (from, bytes) = node.inbox.removeFirst()
            guard let tag = bytes.first else { continue }
            let body = Array(bytes.dropFirst())
            switch tag {
            case 0:
                guard let envelope = try? ConsensusEnvelope.decode(body) else { continue }
                apply(node, node.core.handle(.received(envelope)))
            case 1:
                guard body.count == 8, let peer = network.node(of: from) else { continue }
                let theirHeight = body.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                serveSync(node, to: peer, from: theirHeight)
            case 2:
                guard let finalized = try? FinalizedBlock.decode(body) else { continue }
                applySynced(node, finalized)
            default:
                continue
            }
        }
    }

    private func sendStatus(_ node: Node) {
        var writer = WireWriter()
        writer.u8(1)
        writer.u64(node.height)
        broadcast(from: node, writer.bytes)
    }

    private func serveSync(_ node: Node, to peer: Int, from height: UInt64) {
        guard height <= UInt64(node.chain.count) else { return }
        for finalized in node.chain[Int(height - 1)..<min(node.chain.count, Int(height - 1) + 8)] {
            send(from: node, to: peer, [2] + finalized.encoded)
        }
    }

    /// Block sync: a finalized block for the node's next height, with a quorum of valid seals, is taken as decided.
    private func applySynced(_ node: Node, _ finalized: FinalizedBlock) {
        let header = finalized.block.header
        guard header.height == node.height, header.parentHash == node.tipHash,
              finalized.certificate.problem(blockHash: finalized.block.hash, validators: validators,
                                            plugin: "bpi") == nil else { return }
        commit(node, finalized)
    }

    private func commit(_ node: Node, _ finalized: FinalizedBlock) {
        node.chain.append(finalized)
        mix([3, UInt8(node.index)] + finalized.block.hash)
        apply(node, node.core.advance(to: node.height, parentHash: node.tipHash, validators: validators,
                                      me: node.validatorIndex))
        apply(node, node.core.handle(.activate))
    }

    private func apply(_ node: Node, _ actions: [QBFTAction]) {
        var queue = actions[...]
        var decided: FinalizedBlock?
        defer { if let decided, !node.crashed { commit(node, decided) } }
        while let action = queue.popFirst() {
            guard !node.crashed else { return }
            switch action {
            case .buildBlock(let height, let round):
                queue.append(contentsOf: node.core.handle(.blockBuilt(buildBlock(node, height: height, round: round))))
            case .persist(let record):
                node.wal.append(record)
            case .broadcast(let envelope):
                if node.behaviour == .equivocatingProposer, case .proposal(let message, let block, let changes,
                                                                            let prepares) = envelope {
                    equivocate(node, message, block, changes, prepares)
                } else if node.behaviour == .invalidProposer, case .proposal(let message, var block, let changes,
                                                                               let prepares) = envelope {
                    // A properly signed proposal of a block whose transactions root is wrong.
                    block.header.transactionsRoot = WireCrypto.blake2b256(block.header.transactionsRoot)
                    var payload = message.payload
                    payload.digest = block.hash
                    let signed = SignedMessage(payload: payload, signer: message.signer,
                                               signature: SimEnvironment(signer: node.signer).sign(payload.signingBytes))
                    broadcast(from: node, [0] + ConsensusEnvelope.proposal(signed, block: block, roundChanges: changes,
                                                                           prepares: prepares).encoded)
                } else {
                    broadcast(from: node, [0] + envelope.encoded)
                }
            case .scheduleTimer(let height, let round, let afterMs):
                timerSequence += 1
                timers.append((nowMs + afterMs, timerSequence, node.index, height, round))
            case .decide(let finalized):
                // Every decision's certificate must verify; each distinct one is checked once.
                let certificate = finalized.block.hash + finalized.encoded.suffix(4 + 2 + 66 * finalized.certificate.seals.count)
                if checkedCertificates.insert(certificate).inserted {
                    precondition(finalized.certificate.problem(blockHash: finalized.block.hash, validators: validators,
                                                               plugin: "bpi") == nil,
                                 "node \(node.index) decided a block without a valid certificate")
                }
                decided = finalized  // committed once this height's remaining actions have run
            case .equivocation:
                node.equivocations += 1
            }
        }
    }

    /// A Byzantine proposer: each peer gets its own block for the same height and round, each properly signed.
    private func equivocate(_ node: Node, _ message: SignedMessage, _ block: Block, _ changes: [SignedMessage],
                            _ prepares: [SignedMessage]) {
        let environment = SimEnvironment(signer: node.signer)
        for peer in nodes.indices where peer != node.index {
            var variant = block
            variant.transactions.append([0xEE, UInt8(peer)])
            let ids = variant.transactions.map { WireCrypto.domainHash("sim-tx", $0) }
            variant.header.transactionsRoot = Block.transactionsRoot(ids: ids)
            var payload = message.payload
            payload.digest = variant.hash
            let signed = SignedMessage(payload: payload, signer: message.signer,
                                       signature: environment.sign(payload.signingBytes))
            let envelope = ConsensusEnvelope.proposal(signed, block: variant, roundChanges: changes, prepares: prepares)
            send(from: node, to: peer, [0] + envelope.encoded)
        }
    }

    private func buildBlock(_ node: Node, height: UInt64, round: UInt32) -> Block {
        Self.block(height: height, parent: node.tipHash, salt: UInt8(node.index) &* 31 &+ UInt8(truncatingIfNeeded: round),
                   validators: validators, proposer: node.signer.publicKey, timestampMs: nowMs)
    }

    /// A block SimEnvironment accepts: one made-up transaction that `salt` makes distinct.
    static func block(height: UInt64, parent: [UInt8], salt: UInt8, validators: ValidatorSet, proposer: [UInt8],
                      timestampMs: UInt64) -> Block {
        let transactions: [[UInt8]] = [[salt, UInt8(truncatingIfNeeded: height), UInt8(truncatingIfNeeded: height >> 8)]]
        let ids = transactions.map { WireCrypto.domainHash("sim-tx", $0) }
        let zero = [UInt8](repeating: 0, count: 32)
        let header = BlockHeader(chainID: chainID, height: height, parentHash: parent, timestampMs: timestampMs,
                                 proposer: proposer, transactionsRoot: Block.transactionsRoot(ids: ids),
                                 stateRoot: zero, resultsRoot: zero, validatorSetHash: validators.hash, pohCount: 0,
                                 pohHash: zero)
        return Block(header: header, transactions: transactions)
    }

    private func broadcast(from node: Node, _ bytes: [UInt8]) {
        for peer in nodes.indices where peer != node.index { send(from: node, to: peer, bytes) }
    }

    private func send(from node: Node, to peer: Int, _ bytes: [UInt8]) {
        let key = network.key(peer)
        bytes.withUnsafeBytes { body in
            [UInt8]().withUnsafeBytes { header in _ = node.endpoint.send(header: header, body: body, to: key) }
        }
    }

    private func mix(_ bytes: [UInt8]) { trace = WireCrypto.blake2b256(trace, bytes) }
}
