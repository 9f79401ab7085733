import MetanodeWire

/// What the QBFT core needs from the node it runs in; no I/O, no clock, no randomness (signing is deterministic).
public protocol QBFTEnvironment: Sendable {
    /// The plugin name the node key signs under (the host scopes `ed25519_sign` to it).
    var plugin: String { get }
    /// Signs `message` with this node's key, as the host's `ed25519_sign` does for `plugin`.
    func sign(_ message: [UInt8]) -> [UInt8]
    /// nil if `block` may be decided at its height on top of `parentHash`; otherwise why not (executes it if need be).
    func problem(with block: Block, parentHash: [UInt8]) -> String?
}

public struct QBFTConfig: Sendable, Hashable {
    /// Round 0's timeout; round r waits base × 2^r (capped at `roundTimeoutMaxMs`).
    public var roundTimeoutBaseMs: UInt64
    public var roundTimeoutMaxMs: UInt64
    /// Messages for later heights kept until this node gets there.
    public var futureMessagesMax: Int

    public static let roundTimeoutBaseMsDefault: UInt64 = 200

    public init(roundTimeoutBaseMs: UInt64 = roundTimeoutBaseMsDefault, roundTimeoutMaxMs: UInt64 = 30_000,
                futureMessagesMax: Int = 4096) {
        precondition(roundTimeoutBaseMs >= 1 && roundTimeoutMaxMs >= roundTimeoutBaseMs && futureMessagesMax >= 0)
        self.roundTimeoutBaseMs = roundTimeoutBaseMs
        self.roundTimeoutMaxMs = roundTimeoutMaxMs
        self.futureMessagesMax = futureMessagesMax
    }

    public func timeoutMs(round: UInt32) -> UInt64 {
        let shift = min(UInt64(round), 40)
        return min(roundTimeoutBaseMs << shift, roundTimeoutMaxMs)
    }
}

public enum QBFTEvent: Sendable {
    /// There is work at this height (transactions waiting, or the heartbeat is due): start round 0's timer and, as
    /// its proposer, ask for a block. Until then an idle validator sends nothing, so an idle chain makes no blocks;
    /// a proposal or f+1 round changes from others also wake it.
    case activate
    case timerExpired(height: UInt64, round: UInt32)
    case received(ConsensusEnvelope)
    /// The block the driver built after `.buildBlock(height, round)`.
    case blockBuilt(Block)
}

public enum QBFTAction: Sendable, Hashable {
    /// Build a block for (height, round) from the mempool and answer with `.blockBuilt`.
    case buildBlock(height: UInt64, round: UInt32)
    /// Write to the consensus WAL and make it durable before acting on anything that follows.
    case persist(QBFTRecord)
    case broadcast(ConsensusEnvelope)
    case scheduleTimer(height: UInt64, round: UInt32, afterMs: UInt64)
    /// The height is decided: store the block with its certificate, then start the next height.
    case decide(FinalizedBlock)
    /// A validator signed two different messages of one kind for one height and round.
    case equivocation(first: SignedMessage, second: SignedMessage)
}

/// A consensus WAL record. Replayed on restart, records make the core refuse to sign anything that conflicts with
/// what it signed before the crash, and keep its prepared block (QBFT's lock).
public enum QBFTRecord: Sendable, Hashable {
    case sent(ConsensusEnvelope)
    case prepared(round: UInt32, block: Block, prepares: [SignedMessage])
}

/// QBFT for one height at a time, as a value: feed it events, carry out the actions it returns, in order.
///
/// Follows the QBFT specification (Consensys qbft-formal-spec-and-verification): proposals above round 0 are
/// justified by a quorum of round changes and, when any of them prepared a block, by a quorum of prepares for the
/// highest prepared one, which the proposal must carry again. A validator moves to a higher round on its timer or
/// when f+1 validators ask for higher rounds (the lowest of them), never because one validator does.
public struct QBFTCore: Sendable {
    public let config: QBFTConfig
    public let environment: any QBFTEnvironment
    /// This node's index in the current height's validator set, or nil if it follows without voting.
    public private(set) var me: Int?

    public private(set) var height: UInt64
    public private(set) var parentHash: [UInt8]
    public private(set) var validators: ValidatorSet
    public private(set) var round: UInt32 = 0
    public private(set) var isActive = false
    public private(set) var isDecided = false

    private var accepted: (round: UInt32, block: Block)?
    private var prepared: (round: UInt32, block: Block, prepares: [SignedMessage])?
    private var knownBlocks: [[UInt8]: Block] = [:]
    private var prepares: [UInt32: [Int: SignedMessage]] = [:]
    private var commits: [UInt32: [Int: SignedMessage]] = [:]
    private var roundChanges: [UInt32: [Int: ConsensusEnvelope]] = [:]
    /// What this node signed at this height, by (kind, round): it never signs another digest for the same pair.
    private var signed: [SignedKey: [UInt8]] = [:]
    private var proposalRequested: UInt32?
    /// The round changes a proposal built for `proposalRequested` above round 0 will carry.
    private var pendingJustification: [SignedMessage] = []
    private var future: [ConsensusEnvelope] = []
    /// Signatures already checked at this height, so a message seen directly and again inside justifications (round
    /// changes carry prepares, proposals carry round changes) is verified once. Keyed by everything the check
    /// covers: signer, signed bytes and signature. A class so the cache can fill inside non-mutating checks.
    private let verifiedCache = VerifiedSignatures()

    private struct SignedKey: Hashable {
        var kind: MessageKind
        var round: UInt32
    }

    public init(config: QBFTConfig, environment: any QBFTEnvironment, me: Int?, height: UInt64, parentHash: [UInt8],
                validators: ValidatorSet) {
        self.config = config
        self.environment = environment
        self.me = me
        self.height = height
        self.parentHash = parentHash
        self.validators = validators
    }

    /// A core at `height` that remembers the WAL records written at that height before a restart. It resumes in the
    /// highest round it had signed for, inactive: send `.activate` to restart its timer.
    public init(config: QBFTConfig, environment: any QBFTEnvironment, me: Int?, height: UInt64, parentHash: [UInt8],
                validators: ValidatorSet, replaying records: [QBFTRecord]) {
        self.init(config: config, environment: environment, me: me, height: height, parentHash: parentHash,
                  validators: validators)
        for record in records {
            switch record {
            case .sent(let envelope):
                let payload = envelope.message.payload
                guard payload.height == height else { continue }
                signed[SignedKey(kind: payload.kind, round: payload.round)] = payload.digest
                round = max(round, payload.round)
            case .prepared(let preparedRound, let block, let prepareMessages):
                guard block.header.height == height else { continue }
                if preparedRound >= (prepared?.round ?? 0) { prepared = (preparedRound, block, prepareMessages) }
                knownBlocks[block.hash] = block
            }
        }
    }

    /// Moves to `height` after the previous one was decided (or synced), with that height's validators and this
    /// node's index among them (nil if it is not one).
    public mutating func advance(to height: UInt64, parentHash: [UInt8], validators: ValidatorSet, me: Int?)
        -> [QBFTAction] {
        precondition(height > self.height || (height == self.height && !isActive),
                     "QBFT moved from height \(self.height) to \(height)")
        self = QBFTCore(config: config, environment: environment, me: me, height: height, parentHash: parentHash,
                        validators: validators, carrying: future)
        var actions: [QBFTAction] = []
        let pending = future
        future = []
        for envelope in pending where envelope.message.payload.height >= height {
            actions += handle(.received(envelope))
        }
        return actions
    }

    private init(config: QBFTConfig, environment: any QBFTEnvironment, me: Int?, height: UInt64, parentHash: [UInt8],
                 validators: ValidatorSet, carrying future: [ConsensusEnvelope]) {
        self.init(config: config, environment: environment, me: me, height: height, parentHash: parentHash,
                  validators: validators)
        self.future = future
    }

    public mutating func handle(_ event: QBFTEvent) -> [QBFTAction] {
        guard !isDecided else {
            if case .received(let envelope) = event, envelope.message.payload.height > height { keepForLater(envelope) }
            return []
        }
        var actions: [QBFTAction] = []
        switch event {
        case .activate:
            activate(&actions)
        case .timerExpired(let timerHeight, let timerRound):
            guard timerHeight == height, timerRound == round, isActive else { break }
            moveToRound(round + 1, &actions)
        case .received(let envelope):
            receive(envelope, &actions)
        case .blockBuilt(let block):
            proposeBuilt(block, &actions)
        }
        return actions
    }

    // MARK: - Rounds

    private mutating func activate(_ actions: inout [QBFTAction]) {
        guard !isActive else { return }
        isActive = true
        actions.append(.scheduleTimer(height: height, round: round, afterMs: config.timeoutMs(round: round)))
        if round == 0 { requestProposalIfProposer(&actions) } else { proposeIfJustified(&actions) }
    }

    private mutating func moveToRound(_ newRound: UInt32, _ actions: inout [QBFTAction], sendRoundChange: Bool = true) {
        guard newRound > round || !isActive else { return }
        round = newRound
        isActive = true
        accepted = nil
        actions.append(.scheduleTimer(height: height, round: round, afterMs: config.timeoutMs(round: round)))
        if sendRoundChange, me != nil {
            let payload = ConsensusPayload(kind: .roundChange, height: height, round: round,
                                           digest: prepared?.block.hash ?? ConsensusPayload.zeroDigest,
                                           preparedRound: prepared?.round)
            if let message = sign(payload, &actions) {
                let envelope = ConsensusEnvelope.roundChange(message, preparedBlock: prepared?.block,
                                                             prepares: prepared?.prepares ?? [])
                send(envelope, &actions)
                roundChanges[round, default: [:]][Int(message.signer)] = envelope
            }
        }
        proposeIfJustified(&actions)
    }

    private mutating func requestProposalIfProposer(_ actions: inout [QBFTAction]) {
        guard let me, validators.proposer(height: height, round: round) == me, proposalRequested != round,
              signed[SignedKey(kind: .proposal, round: round)] == nil else { return }
        proposalRequested = round
        actions.append(.buildBlock(height: height, round: round))
    }

    /// As proposer of a round above 0 with a quorum of round changes: propose the highest prepared block among
    /// them, or a new one if none prepared.
    private mutating func proposeIfJustified(_ actions: inout [QBFTAction]) {
        guard round > 0, let me, validators.proposer(height: height, round: round) == me,
              signed[SignedKey(kind: .proposal, round: round)] == nil,
              let changes = roundChanges[round], changes.count >= validators.quorum else { return }
        // The proposal is judged by the round changes it carries, so the value is chosen from exactly those.
        let chosen = changes.keys.sorted().prefix(validators.quorum).map { changes[$0]! }
        if let (block, prepareMessages) = highestPrepared(chosen) {
            broadcastProposal(block, roundChanges: chosen.map(\.message), prepares: prepareMessages, &actions)
        } else {
            pendingJustification = chosen.map(\.message)
            requestProposalIfProposer(&actions)
        }
    }

    private func highestPrepared(_ changes: [ConsensusEnvelope]) -> (Block, [SignedMessage])? {
        var best: (round: UInt32, block: Block, prepares: [SignedMessage])?
        for case .roundChange(let message, let block?, let prepareMessages) in changes {
            guard let preparedRound = message.payload.preparedRound else { continue }
            if best == nil || preparedRound > best!.round { best = (preparedRound, block, prepareMessages) }
        }
        return best.map { ($0.block, $0.prepares) }
    }

    private mutating func proposeBuilt(_ block: Block, _ actions: inout [QBFTAction]) {
        guard block.header.height == height, proposalRequested == round, let me,
              validators.proposer(height: height, round: round) == me else { return }
        let changes = round == 0 ? [] : pendingJustification
        guard round == 0 || changes.count >= validators.quorum else { return }
        broadcastProposal(block, roundChanges: changes, prepares: [], &actions)
    }

    private mutating func broadcastProposal(_ block: Block, roundChanges: [SignedMessage], prepares: [SignedMessage],
                                            _ actions: inout [QBFTAction]) {
        let payload = ConsensusPayload(kind: .proposal, height: height, round: round, digest: block.hash)
        guard let message = sign(payload, &actions) else { return }
        let envelope = ConsensusEnvelope.proposal(message, block: block, roundChanges: roundChanges,
                                                  prepares: prepares)
        send(envelope, &actions)
        acceptProposal(message, block, &actions)
    }

    // MARK: - Receiving

    private mutating func receive(_ envelope: ConsensusEnvelope, _ actions: inout [QBFTAction]) {
        let message = envelope.message
        let payload = message.payload
        guard payload.height >= height else { return }
        guard payload.height == height else { return keepForLater(envelope) }
        guard isVerified(message) else { return }
        let signer = Int(message.signer)
        switch envelope {
        case .proposal(_, let block, let changes, let prepareMessages):
            guard payload.round >= round, validators.proposer(height: height, round: payload.round) == signer,
                  block.hash == payload.digest, accepted?.round != payload.round,
                  proposalIsJustified(payload, block: block, roundChanges: changes, prepares: prepareMessages),
                  environment.problem(with: block, parentHash: parentHash) == nil else { return }
            if payload.round > round || !isActive { moveToRound(payload.round, &actions, sendRoundChange: false) }
            acceptProposal(message, block, &actions)
        case .prepare:
            guard Self.record(message, in: &prepares, &actions) else { return }
            prepareIfQuorum(&actions)
        case .commit:
            guard let seal = payload.commitSeal, let key = validators.key(signer),
                  isVerifiedSeal(seal, key: key, digest: payload.digest, round: payload.round)
            else { return }
            guard Self.record(message, in: &commits, &actions) else { return }
            decideIfQuorum(round: payload.round, digest: payload.digest, &actions)
        case .roundChange(_, let block, let prepareMessages):
            guard roundChangeIsValid(payload, block: block, prepares: prepareMessages) else { return }
            if let existing = roundChanges[payload.round]?[signer] {
                if existing.message.payload != payload {
                    actions.append(.equivocation(first: existing.message, second: message))
                }
                return
            }
            roundChanges[payload.round, default: [:]][signer] = envelope
            if let block { knownBlocks[block.hash] = block }
            joinHigherRoundIfWeakQuorum(&actions)
            if payload.round == round { proposeIfJustified(&actions) }
        }
    }

    private mutating func keepForLater(_ envelope: ConsensusEnvelope) {
        guard future.count < config.futureMessagesMax else { return }
        future.append(envelope)
    }

    /// Stores the first message per signer and round; a second, different one is evidence of equivocation.
    private static func record(_ message: SignedMessage, in table: inout [UInt32: [Int: SignedMessage]],
                                 _ actions: inout [QBFTAction]) -> Bool {
        let signer = Int(message.signer)
        if let existing = table[message.payload.round]?[signer] {
            if existing.payload != message.payload { actions.append(.equivocation(first: existing, second: message)) }
            return false
        }
        table[message.payload.round, default: [:]][signer] = message
        return true
    }

    private mutating func acceptProposal(_ message: SignedMessage, _ block: Block, _ actions: inout [QBFTAction]) {
        accepted = (message.payload.round, block)
        knownBlocks[block.hash] = block
        let prepare = ConsensusPayload(kind: .prepare, height: height, round: round, digest: block.hash)
        if me != nil, let signedPrepare = sign(prepare, &actions) {
            send(.prepare(signedPrepare), &actions)
            prepares[round, default: [:]][Int(signedPrepare.signer)] = signedPrepare
        }
        prepareIfQuorum(&actions)
        decideIfQuorum(round: round, digest: block.hash, &actions)
    }

    /// A quorum of prepares for the accepted proposal of the current round: the block is prepared; commit it.
    private mutating func prepareIfQuorum(_ actions: inout [QBFTAction]) {
        guard let accepted, accepted.round == round, let me else { return }
        let digest = accepted.block.hash
        let matching = (prepares[round] ?? [:]).values.filter { $0.payload.digest == digest }
        guard matching.count >= validators.quorum, signed[SignedKey(kind: .commit, round: round)] == nil else { return }
        let certificate = matching.sorted { $0.signer < $1.signer }.prefix(validators.quorum)
        prepared = (round, accepted.block, Array(certificate))
        actions.append(.persist(.prepared(round: round, block: accepted.block, prepares: Array(certificate))))
        let seal = environment.sign(CommitSeal.signingBytes(blockHash: digest, round: round))
        let payload = ConsensusPayload(kind: .commit, height: height, round: round, digest: digest, commitSeal: seal)
        if let commit = sign(payload, &actions) {
            send(.commit(commit), &actions)
            commits[round, default: [:]][me] = commit
            decideIfQuorum(round: round, digest: digest, &actions)
        }
    }

    private mutating func decideIfQuorum(round decidingRound: UInt32, digest: [UInt8], _ actions: inout [QBFTAction]) {
        guard !isDecided, let block = knownBlocks[digest] else { return }
        let matching = (commits[decidingRound] ?? [:]).values.filter { $0.payload.digest == digest }
        guard matching.count >= validators.quorum else { return }
        let seals = matching.sorted { $0.signer < $1.signer }.prefix(validators.quorum).map {
            CommitSeal(validator: $0.signer, signature: $0.payload.commitSeal!)
        }
        isDecided = true
        actions.append(.decide(FinalizedBlock(block: block, certificate: CommitCertificate(round: decidingRound,
                                                                                           seals: Array(seals)))))
    }

    /// QBFT's round skip: f+1 validators asking for rounds above ours include an honest one, so move to the lowest
    /// round among them.
    private mutating func joinHigherRoundIfWeakQuorum(_ actions: inout [QBFTAction]) {
        var highestBySigner: [Int: UInt32] = [:]
        for (changeRound, changes) in roundChanges where changeRound > round || (!isActive && changeRound >= round) {
            for signer in changes.keys { highestBySigner[signer] = max(highestBySigner[signer] ?? 0, changeRound) }
        }
        guard highestBySigner.count >= validators.weakQuorum, let lowest = highestBySigner.values.min() else { return }
        if lowest > round || !isActive { moveToRound(lowest, &actions) }
    }

    // MARK: - Justification

    private func roundChangeIsValid(_ payload: ConsensusPayload, block: Block?, prepares: [SignedMessage]) -> Bool {
        guard payload.round > 0 else { return false }
        guard let preparedRound = payload.preparedRound else {
            return block == nil && prepares.isEmpty && payload.digest == ConsensusPayload.zeroDigest
        }
        guard let block, preparedRound < payload.round, block.hash == payload.digest,
              environment.problem(with: block, parentHash: parentHash) == nil else { return false }
        return isPrepareQuorum(prepares, round: preparedRound, digest: payload.digest)
    }

    private func proposalIsJustified(_ payload: ConsensusPayload, block: Block, roundChanges changes: [SignedMessage],
                                     prepares prepareMessages: [SignedMessage]) -> Bool {
        guard payload.round > 0 else { return changes.isEmpty && prepareMessages.isEmpty }
        var signers = Set<UInt16>()
        var highest: (round: UInt32, digest: [UInt8])?
        for change in changes {
            let changePayload = change.payload
            guard changePayload.kind == .roundChange, changePayload.height == height,
                  changePayload.round == payload.round, signers.insert(change.signer).inserted,
                  isVerified(change) else { return false }
            if let preparedRound = changePayload.preparedRound, preparedRound < payload.round,
               highest == nil || preparedRound > highest!.round {
                highest = (preparedRound, changePayload.digest)
            }
        }
        guard signers.count >= validators.quorum else { return false }
        guard let highest else { return prepareMessages.isEmpty }
        return block.hash == highest.digest && isPrepareQuorum(prepareMessages, round: highest.round,
                                                               digest: highest.digest)
    }

    private func isPrepareQuorum(_ messages: [SignedMessage], round prepareRound: UInt32, digest: [UInt8]) -> Bool {
        var signers = Set<UInt16>()
        for message in messages {
            let payload = message.payload
            guard payload.kind == .prepare, payload.height == height, payload.round == prepareRound,
                  payload.digest == digest, signers.insert(message.signer).inserted,
                  isVerified(message) else { return false }
        }
        return signers.count >= validators.quorum
    }

    // MARK: - Signature checks

    private func isVerified(_ message: SignedMessage) -> Bool {
        var key = message.payload.signingBytes + message.signature
        key.append(UInt8(message.signer >> 8))
        key.append(UInt8(message.signer & 0xFF))
        return verifiedCache.check(key) { message.isSigned(by: validators, plugin: environment.plugin) }
    }

    private func isVerifiedSeal(_ seal: [UInt8], key: [UInt8], digest: [UInt8], round: UInt32) -> Bool {
        let message = CommitSeal.signingBytes(blockHash: digest, round: round)
        return verifiedCache.check(message + seal + key) {
            NodeSignature.verify(signature: seal, nodeKey: key, plugin: environment.plugin, message: message)
        }
    }

    // MARK: - Signing

    /// Signs `payload` unless this node already signed another digest for the same kind and round (the WAL rule);
    /// records it first.
    private mutating func sign(_ payload: ConsensusPayload, _ actions: inout [QBFTAction]) -> SignedMessage? {
        guard let me else { return nil }
        let key = SignedKey(kind: payload.kind, round: payload.round)
        if let digest = signed[key], digest != payload.digest { return nil }
        if signed[key] != nil, payload.kind != .roundChange { return nil }
        signed[key] = payload.digest
        return SignedMessage(payload: payload, signer: UInt16(me), signature: environment.sign(payload.signingBytes))
    }

    private func send(_ envelope: ConsensusEnvelope, _ actions: inout [QBFTAction]) {
        actions.append(.persist(.sent(envelope)))
        actions.append(.broadcast(envelope))
    }
}

/// Remembers which signatures verified (bounded; a new height starts with a new core and an empty cache).
final class VerifiedSignatures: @unchecked Sendable {  // used by one core, on one thread at a time
    static let entriesMax = 16_384
    private var good: Set<[UInt8]> = []

    func check(_ key: [UInt8], _ verify: () -> Bool) -> Bool {
        if good.contains(key) { return true }
        guard verify() else { return false }
        if good.count < Self.entriesMax { good.insert(key) }
        return true
    }
}
