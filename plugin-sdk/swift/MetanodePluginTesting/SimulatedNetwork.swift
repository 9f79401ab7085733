import CSodium
import MetanodeABI
import MetanodeHostBridge
import MetanodePluginKit

/// How one direction of a link behaves. Probabilities are integers in per-mille (0...1000); no floating point decides
/// anything in the simulation.
public struct LinkFaults: Sendable, Equatable {
    /// Every message takes at least this long.
    public var latencyMs: UInt64
    /// Plus a uniform extra 0...jitterMs. Jitter alone never reorders a link: a message never arrives before one sent
    /// earlier on the same link (unless that one was picked for reordering).
    public var jitterMs: UInt64
    /// Messages lost on the wire (the sender's send still succeeds).
    public var dropPerMille: UInt32
    /// Messages delivered twice; the copy arrives with the original or up to `jitterMs` after it.
    public var duplicatePerMille: UInt32
    /// Messages held back an extra 1...reorderDelayMaxMs, so later messages on the link can overtake them.
    public var reorderPerMille: UInt32
    public var reorderDelayMaxMs: UInt64

    public init(latencyMs: UInt64 = 10, jitterMs: UInt64 = 0, dropPerMille: UInt32 = 0, duplicatePerMille: UInt32 = 0,
                reorderPerMille: UInt32 = 0, reorderDelayMaxMs: UInt64 = 100) {
        self.latencyMs = latencyMs
        self.jitterMs = jitterMs
        self.dropPerMille = dropPerMille
        self.duplicatePerMille = duplicatePerMille
        self.reorderPerMille = reorderPerMille
        self.reorderDelayMaxMs = reorderDelayMaxMs
    }

    /// 10 ms, no faults.
    public static let reliable = LinkFaults()

    func validated() -> LinkFaults {
        precondition(dropPerMille <= 1000 && duplicatePerMille <= 1000 && reorderPerMille <= 1000,
                     "LinkFaults probabilities are per-mille, 0...1000: \(self)")
        precondition(reorderDelayMaxMs >= 1, "LinkFaults.reorderDelayMaxMs must be at least 1")
        precondition(latencyMs <= Self.delayMsMax && jitterMs <= Self.delayMsMax
                     && reorderDelayMaxMs <= Self.delayMsMax, "LinkFaults delays are at most \(Self.delayMsMax) ms")
        return self
    }

    /// One day: a bound that keeps every sum of delays far from overflow.
    public static let delayMsMax: UInt64 = 86_400_000
}

/// An in-process, seeded, deterministic network of nodes for tests. Each node's endpoint is a `PeerTransport`, the
/// interface the kernel's TCP transport implements, so a `TestHost` (or anything else written against PeerTransport)
/// runs on it unchanged.
///
/// Nodes are numbered from 0 in the order they were added. The network has its own virtual clock in milliseconds,
/// which moves only in `advance(toMs:)` (a `Simulation` moves it together with its hosts' clocks); messages wait in
/// one queue ordered by (arrival time, send sequence), so arrivals at the same millisecond keep a fixed order.
/// Every random decision comes from one `SimulationRandom` seeded with `seed`: the same seed and the same calls give
/// the same deliveries in the same order and the same `traceHash`.
///
/// Semantics:
/// - Two nodes are connected when both are up and on the same side of the partition. Each connection change reaches
///   both endpoints' delegates at once (peerUp / peerDown), nodes in index order.
/// - A message survives only if its connection stays up from send to arrival: crash, restart or a partition in
///   between — even one healed before the arrival time — loses it (like a TCP connection that reconnected).
/// - Sending to a peer that is not connected is `.notConnected`; with `inFlightPerLinkMax` messages on the way to a
///   peer, `.queueFull` (the message is dropped and counted in that peer's `droppedMessages`).
/// - A crashed node's endpoint is dead for good; `restart` gives the node a new endpoint with the same key.
///
/// `@unchecked Sendable`: all state sits behind one lock, never held while a delegate runs.
public final class SimulatedNetwork: @unchecked Sendable {
    public static let inFlightPerLinkMaxDefault = 1024
    /// Entries the event log keeps; later ones are counted in `eventLogOmitted`.
    public static let eventLogCountMax = 200_000
    public static let nodesMax = 1024

    public let seed: UInt64
    /// Messages on their way from one node to another before `send` answers `.queueFull`.
    public let inFlightPerLinkMax: Int
    private let state: HostLock<State>

    /// `faults` applies to every link without its own (`setFaults(_:from:to:)`). With `recordsEvents`, every send,
    /// delivery, drop and connection change is kept in `eventLog` for debugging.
    public init(seed: UInt64, faults: LinkFaults = .reliable, inFlightPerLinkMax: Int = inFlightPerLinkMaxDefault,
                recordsEvents: Bool = false) {
        precondition(sodium_init() >= 0, "libsodium could not be initialized")
        precondition(inFlightPerLinkMax >= 1, "inFlightPerLinkMax must be at least 1")
        self.seed = seed
        self.inFlightPerLinkMax = inFlightPerLinkMax
        state = HostLock(State(seed: seed, faults: faults.validated(), recordsEvents: recordsEvents))
    }

    // MARK: - Nodes

    /// Adds a node with `key`, up, on the un-partitioned side (group 0); it connects to every reachable node.
    @discardableResult
    public func addNode(key: PeerID) -> SimulatedEndpoint {
        let hostKey = key
        let (endpoint, notices) = state.withLock { state -> (SimulatedEndpoint, [Notice]) in
            precondition(state.nodes.count < Self.nodesMax, "a SimulatedNetwork has at most \(Self.nodesMax) nodes")
            precondition(state.nodeByKey[hostKey] == nil, "node key \(key.short) is already in the network")
            let index = state.nodes.count
            let endpoint = SimulatedEndpoint(network: self, node: index, incarnation: 0, localID: hostKey)
            state.nodes.append(Node(key: hostKey, up: true, incarnation: 0, endpoint: endpoint, group: 0))
            state.nodeByKey[hostKey] = index
            for row in state.links.indices {
                state.links[row].append(Link())
                state.connected[row].append(false)
                state.epoch[row].append(0)
            }
            state.links.append(Array(repeating: Link(), count: index + 1))
            state.connected.append(Array(repeating: false, count: index + 1))
            state.epoch.append(Array(repeating: 0, count: index + 1))
            return (endpoint, Self.reconcile(&state))
        }
        deliver(notices)
        return endpoint
    }

    public var nodeCount: Int { state.withLock { $0.nodes.count } }

    public func key(_ node: Int) -> PeerID { state.withLock { $0.nodes[node: node].key } }

    /// The node with `key`, if it is in the network.
    public func node(of key: PeerID) -> Int? {
        let hostKey = key
        return state.withLock { $0.nodeByKey[hostKey] }
    }

    /// The node's current endpoint (after a restart, the new one).
    public func endpoint(_ node: Int) -> SimulatedEndpoint { state.withLock { $0.nodes[node: node].endpoint } }

    public func isUp(_ node: Int) -> Bool { state.withLock { $0.nodes[node: node].up } }

    public func isConnected(_ a: Int, _ b: Int) -> Bool {
        state.withLock { state in
            _ = state.nodes[node: a]
            _ = state.nodes[node: b]
            return state.connected[a][b]
        }
    }

    // MARK: - Faults

    /// The faults of every link without its own.
    public var faults: LinkFaults {
        get { state.withLock { $0.defaultFaults } }
        set {
            let faults = newValue.validated()
            state.withLock { $0.defaultFaults = faults }
        }
    }

    /// Gives the link from `from` to `to` its own faults (nil: back to `faults`). Applies to messages sent from now on.
    public func setFaults(_ faults: LinkFaults?, from: Int, to: Int) {
        let faults = faults?.validated()
        state.withLock { state in
            _ = state.nodes[node: from]
            _ = state.nodes[node: to]
            state.linkFaults[DirectedLink(from: from, to: to)] = faults
        }
    }

    /// `setFaults` for both directions between `a` and `b`.
    public func setFaults(_ faults: LinkFaults?, between a: Int, and b: Int) {
        setFaults(faults, from: a, to: b)
        setFaults(faults, from: b, to: a)
    }

    public func faults(from: Int, to: Int) -> LinkFaults { state.withLock { $0.faults(from: from, to: to) } }

    // MARK: - Partitions, crashes, restarts

    /// Splits the network: nodes in different groups cannot reach each other; nodes named in no group form one more
    /// group together. Replaces any earlier partition. Connections across the split go down now (peerDown), and
    /// messages still on their way across it are lost.
    public func partition(_ groups: [[Int]]) {
        let notices = state.withLock { state -> [Notice] in
            var group = Array(repeating: 0, count: state.nodes.count)
            for (number, members) in groups.enumerated() {
                for node in members {
                    _ = state.nodes[node: node]
                    precondition(group[node] == 0, "node \(node) is in two groups of partition \(groups)")
                    group[node] = number + 1
                }
            }
            for node in state.nodes.indices { state.nodes[node].group = group[node] }
            state.log(.partitioned(groups))
            return Self.reconcile(&state)
        }
        deliver(notices)
    }

    /// Cuts `node` off from every other node.
    public func isolate(_ node: Int) { partition([[node]]) }

    /// Ends the partition: every pair of up nodes connects again (peerUp).
    public func heal() {
        let notices = state.withLock { state -> [Notice] in
            for node in state.nodes.indices { state.nodes[node].group = 0 }
            state.log(.healed)
            return Self.reconcile(&state)
        }
        deliver(notices)
    }

    /// Stops `node` as a SIGKILL would: its endpoint sends nothing and receives nothing from now on, its peers see
    /// peerDown, messages to and from it still on their way are lost. Its own delegate hears nothing more.
    public func crash(_ node: Int) {
        let notices = state.withLock { state -> [Notice] in
            precondition(state.nodes[node: node].up, "node \(node) is already down")
            state.nodes[node].up = false
            state.log(.crashed(node))
            return Self.reconcile(&state)
        }
        deliver(notices)
    }

    /// Brings a crashed node back with a new endpoint (same key, empty queues) that connects to every reachable node
    /// (peerUp on both sides). Attach the new endpoint to the node's new host; what the restarted node remembers is
    /// the test's business.
    @discardableResult
    public func restart(_ node: Int) -> SimulatedEndpoint {
        let (endpoint, notices) = state.withLock { state -> (SimulatedEndpoint, [Notice]) in
            precondition(!state.nodes[node: node].up, "node \(node) is up; crash it before restarting it")
            let incarnation = state.nodes[node].incarnation + 1
            let endpoint = SimulatedEndpoint(network: self, node: node, incarnation: incarnation,
                                             localID: state.nodes[node].key)
            state.nodes[node].incarnation = incarnation
            state.nodes[node].endpoint = endpoint
            state.nodes[node].up = true
            state.log(.restarted(node))
            return (endpoint, Self.reconcile(&state))
        }
        deliver(notices)
        return endpoint
    }

    // MARK: - Time

    /// The network's clock, in milliseconds.
    public var nowMs: UInt64 { state.withLock { $0.nowMs } }

    /// When the next message arrives (nil if none is on its way).
    public var nextEventMs: UInt64? { state.withLock { $0.queue.first?.timeMs } }

    /// Messages on their way (including ones that will be found lost when they arrive).
    public var inFlightCount: Int { state.withLock { $0.queue.count } }

    /// Moves the clock to `targetMs`, delivering every message due by then in (time, sequence) order, each to its
    /// endpoint's delegate as it arrives. A delegate may send during the call; messages due by `targetMs` are
    /// delivered in the same call. Returns how many messages were delivered.
    @discardableResult
    public func advance(toMs targetMs: UInt64) -> Int {
        precondition(targetMs >= nowMs, "SimulatedNetwork.advance(toMs: \(targetMs)) would move the clock back from "
            + "\(nowMs)")
        var delivered = 0
        while true {
            let step = state.withLock { state -> Step in
                guard let head = state.queue.first, head.timeMs <= targetMs else { return .done }
                let delivery = state.queue.removeFirst()
                state.nowMs = delivery.timeMs
                return Self.arrive(&state, delivery)
            }
            switch step {
            case .done:
                state.withLock { $0.nowMs = targetMs }
                return delivered
            case .lost:
                continue
            case .deliver(let message, let from, let endpoint):
                delivered += 1
                if let delegate = endpoint.delegate {
                    message.withUnsafeBytes { delegate.peerTransport(received: $0, from: from) }
                }
            }
        }
    }

    /// Sets the clock to `targetMs` without delivering anything; nothing may be due before it. A Simulation does this
    /// before its hosts run at `targetMs`, then delivers what arrives at `targetMs`.
    func moveClock(toMs targetMs: UInt64) {
        state.withLock { state in
            precondition(targetMs >= state.nowMs, "SimulatedNetwork clock moved back from \(state.nowMs) to \(targetMs)")
            precondition(state.queue.first.map { $0.timeMs >= targetMs } ?? true,
                         "SimulatedNetwork clock moved past a message due at \(state.queue.first!.timeMs) ms")
            state.nowMs = targetMs
        }
    }

    /// `advance(toMs: nowMs + deltaMs)`.
    @discardableResult
    public func advance(byMs deltaMs: UInt64) -> Int { advance(toMs: nowMs + deltaMs) }

    // MARK: - Trace

    /// A running BLAKE2b-256 over every delivery so far (arrival time, sender, receiver, hash of the message), in
    /// delivery order. Same seed and same inputs give the same hash; compare it to check a run is deterministic.
    public var traceHash: [UInt8] { state.withLock { $0.trace } }

    public var traceHashHex: String { PeerID(bytes: traceHash)!.hex }

    public var deliveredCount: UInt64 { state.withLock { $0.deliveredCount } }

    /// Messages lost: to drop faults, or because their connection went down before they arrived.
    public var lostCount: UInt64 { state.withLock { $0.lostCount } }

    /// Everything that happened, when the network was created with `recordsEvents` (empty otherwise), oldest first.
    public var eventLog: [NetLogEntry] { state.withLock { $0.eventLog ?? [] } }

    /// Events not logged because the log reached `eventLogCountMax`.
    public var eventLogOmitted: Int { state.withLock { $0.eventLogOmitted } }

    // MARK: - Endpoint operations

    func send(from endpoint: SimulatedEndpoint, header: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
              to peer: PeerID) -> PeerSendResult {
        guard body.count <= Int(MN_NET_MESSAGE_LEN_MAX) else { return .tooLarge }
        var message = [UInt8]()
        message.reserveCapacity(header.count + body.count)
        message.append(contentsOf: header)
        message.append(contentsOf: body)
        return state.withLock { state in Self.send(&state, from: endpoint, message: message, to: peer,
                                                   inFlightMax: inFlightPerLinkMax) }
    }

    func connectedPeers(of endpoint: SimulatedEndpoint) -> [PeerID] {
        state.withLock { state in
            guard state.isCurrent(endpoint) else { return [] }
            return state.nodes.indices.filter { state.connected[endpoint.node][$0] }.map { state.nodes[$0].key }
        }
    }

    func peerStatus(of endpoint: SimulatedEndpoint) -> [PeerStatus] {
        state.withLock { state in
            let me = endpoint.node
            let current = state.isCurrent(endpoint)
            return state.nodes.indices.filter { $0 != me }.map { peer in
                let connected = current && state.connected[me][peer]
                var status = PeerStatus(id: state.nodes[peer].key, address: "sim://node-\(peer)",
                                        state: connected ? .connected : .disconnected)
                if connected {
                    let roundTripMs = state.faults(from: me, to: peer).latencyMs
                        + state.faults(from: peer, to: me).latencyMs
                    status.rttMicros = UInt32(clamping: max(1, roundTripMs * 1000))
                }
                let out = state.links[me][peer], back = state.links[peer][me]
                status.messagesSent = out.sent
                status.bytesSent = out.bytesSent
                status.messagesReceived = back.received
                status.bytesReceived = back.bytesReceived
                status.queuedMessages = current ? out.inFlight : 0
                status.droppedMessages = out.refused
                return status
            }
        }
    }

    // MARK: - State

    struct Node {
        var key: PeerID
        var up: Bool
        var incarnation: Int
        var endpoint: SimulatedEndpoint
        /// Partition side; 0 for nodes named in no group (and everyone after heal).
        var group: Int
    }

    /// One direction of a pair of nodes.
    struct Link {
        /// Scheduled arrivals still counted against the in-flight bound (reset when the connection changes).
        var inFlight = 0
        /// The latest arrival time of an in-order message: later ones never arrive before it.
        var lastArrivalMs: UInt64 = 0
        var sent: UInt64 = 0
        var bytesSent: UInt64 = 0
        var received: UInt64 = 0
        var bytesReceived: UInt64 = 0
        /// Sends refused with `.queueFull`.
        var refused: UInt64 = 0
    }

    struct DirectedLink: Hashable {
        var from: Int
        var to: Int
    }

    struct Delivery {
        var timeMs: UInt64
        var sequence: UInt64
        var message: UInt64
        var from: Int
        var to: Int
        /// The connection's epoch when it was sent; it arrives only if the epoch is unchanged.
        var epoch: UInt64
        var bytes: [UInt8]
    }

    struct State {
        var nowMs: UInt64 = 0
        var random: SimulationRandom
        var defaultFaults: LinkFaults
        var linkFaults: [DirectedLink: LinkFaults] = [:]
        var nodes: [Node] = []
        var nodeByKey: [PeerID: Int] = [:]
        var links: [[Link]] = []
        /// Symmetric: both up and on the same side.
        var connected: [[Bool]] = []
        /// Symmetric: bumped on every connection change, so a message from an older connection is found lost.
        var epoch: [[UInt64]] = []
        var queue = DeliveryQueue()
        var nextSequence: UInt64 = 0
        var nextMessage: UInt64 = 0
        var trace: [UInt8]
        var deliveredCount: UInt64 = 0
        var lostCount: UInt64 = 0
        var eventLog: [NetLogEntry]?
        var eventLogOmitted = 0

        init(seed: UInt64, faults: LinkFaults, recordsEvents: Bool) {
            random = SimulationRandom(seed: seed)
            defaultFaults = faults
            trace = Blake2b.hash(Array("metanode/sim-trace/v1".utf8))
            eventLog = recordsEvents ? [] : nil
        }

        func faults(from: Int, to: Int) -> LinkFaults {
            linkFaults[DirectedLink(from: from, to: to)] ?? defaultFaults
        }

        func isCurrent(_ endpoint: SimulatedEndpoint) -> Bool {
            let node = nodes[endpoint.node]
            return node.up && node.incarnation == endpoint.incarnation
        }

        mutating func log(_ event: NetLogEntry.Event) {
            guard eventLog != nil else { return }
            guard eventLog!.count < SimulatedNetwork.eventLogCountMax else {
                eventLogOmitted += 1
                return
            }
            eventLog!.append(NetLogEntry(timeMs: nowMs, event: event))
        }

        mutating func schedule(_ delivery: Delivery) {
            queue.insert(delivery)
            links[delivery.from][delivery.to].inFlight += 1
        }
    }

    enum Step {
        case done
        case lost
        case deliver([UInt8], from: PeerID, to: SimulatedEndpoint)
    }

    /// A connection change for one endpoint's delegate.
    struct Notice {
        var endpoint: SimulatedEndpoint
        var peer: PeerID
        var up: Bool
    }

    private static func send(_ state: inout State, from endpoint: SimulatedEndpoint, message: [UInt8],
                             to peer: PeerID, inFlightMax: Int) -> PeerSendResult {
        let from = endpoint.node
        guard state.isCurrent(endpoint), let to = state.nodeByKey[peer], state.connected[from][to] else {
            return .notConnected
        }
        guard state.links[from][to].inFlight < inFlightMax else {
            state.links[from][to].refused += 1
            state.log(.refused(from: from, to: to))
            return .queueFull
        }
        let faults = state.faults(from: from, to: to)
        let id = state.nextMessage
        state.nextMessage += 1
        state.links[from][to].sent += 1
        state.links[from][to].bytesSent += UInt64(message.count)

        // The draws happen in a fixed order — drop, jitter, reorder, duplicate — and only for faults that are set.
        if state.random.chance(perMille: faults.dropPerMille) {
            state.lostCount += 1
            state.log(.dropped(message: id, from: from, to: to, reason: .dropFault))
            return .queued
        }
        var arrivalMs = state.nowMs + faults.latencyMs
        if faults.jitterMs > 0 { arrivalMs += state.random.upTo(faults.jitterMs) }
        let reordered = state.random.chance(perMille: faults.reorderPerMille)
        if reordered {
            arrivalMs += 1 + state.random.below(faults.reorderDelayMaxMs)
        } else {
            arrivalMs = max(arrivalMs, state.links[from][to].lastArrivalMs)
            state.links[from][to].lastArrivalMs = arrivalMs
        }
        let epoch = state.epoch[from][to]
        state.log(.sent(message: id, from: from, to: to, bytes: message.count, arrivesAtMs: arrivalMs,
                        reordered: reordered))
        state.schedule(Delivery(timeMs: arrivalMs, sequence: state.nextSequence, message: id, from: from, to: to,
                                epoch: epoch, bytes: message))
        state.nextSequence += 1
        if state.random.chance(perMille: faults.duplicatePerMille) {
            var copyMs = arrivalMs
            if faults.jitterMs > 0 { copyMs += state.random.upTo(faults.jitterMs) }
            state.log(.duplicated(message: id, from: from, to: to, arrivesAtMs: copyMs))
            state.schedule(Delivery(timeMs: copyMs, sequence: state.nextSequence, message: id, from: from, to: to,
                                    epoch: epoch, bytes: message))
            state.nextSequence += 1
        }
        return .queued
    }

    private static func arrive(_ state: inout State, _ delivery: Delivery) -> Step {
        let (from, to) = (delivery.from, delivery.to)
        guard delivery.epoch == state.epoch[from][to], state.connected[from][to] else {
            state.lostCount += 1
            state.log(.dropped(message: delivery.message, from: from, to: to, reason: .disconnected))
            return .lost
        }
        state.links[from][to].inFlight -= 1
        state.links[from][to].received += 1
        state.links[from][to].bytesReceived += UInt64(delivery.bytes.count)
        state.deliveredCount += 1
        var record = state.trace
        record.append(1)  // record kind: a delivery
        withUnsafeBytes(of: delivery.timeMs.littleEndian) { record.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(from).littleEndian) { record.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(to).littleEndian) { record.append(contentsOf: $0) }
        record.append(contentsOf: Blake2b.hash(delivery.bytes))
        state.trace = Blake2b.hash(record)
        state.log(.delivered(message: delivery.message, from: from, to: to))
        return .deliver(delivery.bytes, from: state.nodes[from].key, to: state.nodes[to].endpoint)
    }

    /// Brings `connected` in line with who is up and on which side; returns what each endpoint must be told, pairs
    /// in index order.
    private static func reconcile(_ state: inout State) -> [Notice] {
        var notices: [Notice] = []
        for a in state.nodes.indices {
            for b in state.nodes.indices where b > a {
                let reachable = state.nodes[a].up && state.nodes[b].up && state.nodes[a].group == state.nodes[b].group
                guard reachable != state.connected[a][b] else { continue }
                state.connected[a][b] = reachable
                state.connected[b][a] = reachable
                state.epoch[a][b] += 1
                state.epoch[b][a] += 1
                for (x, y) in [(a, b), (b, a)] {
                    state.links[x][y].inFlight = 0
                    state.links[x][y].lastArrivalMs = 0
                }
                state.log(reachable ? .linkUp(a, b) : .linkDown(a, b))
                for (me, peer) in [(a, b), (b, a)] where state.nodes[me].up {
                    notices.append(Notice(endpoint: state.nodes[me].endpoint, peer: state.nodes[peer].key,
                                          up: reachable))
                }
            }
        }
        return notices
    }

    private func deliver(_ notices: [Notice]) {
        for notice in notices {
            guard let delegate = notice.endpoint.delegate else { continue }
            if notice.up {
                delegate.peerTransport(peerUp: notice.peer)
            } else {
                delegate.peerTransport(peerDown: notice.peer)
            }
        }
    }
}

/// One node's view of a `SimulatedNetwork`: the `PeerTransport` its host uses.
public final class SimulatedEndpoint: PeerTransport, @unchecked Sendable {
    /// The node's index in the network.
    public let node: Int
    /// 0 for the first run of the node, then one more for each restart.
    public let incarnation: Int
    public let localID: PeerID
    private weak var network: SimulatedNetwork?
    private let delegateBox = HostLock(WeakDelegate())

    struct WeakDelegate {
        weak var delegate: (any PeerTransportDelegate)?
    }

    init(network: SimulatedNetwork, node: Int, incarnation: Int, localID: PeerID) {
        self.network = network
        self.node = node
        self.incarnation = incarnation
        self.localID = localID
    }

    /// The node's key, as plugins see it.
    public var key: PeerID { localID }

    var delegate: (any PeerTransportDelegate)? { delegateBox.withLock { $0.delegate } }

    /// Held weakly (a TestHost holds its transport): keep the delegate alive yourself.
    public func setDelegate(_ delegate: any PeerTransportDelegate) {
        delegateBox.withLock { $0.delegate = delegate }
    }

    public func send(header: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                     to peer: PeerID) -> PeerSendResult {
        network?.send(from: self, header: header, body: body, to: peer) ?? .notConnected
    }

    /// In node order.
    public func connectedPeers() -> [PeerID] { network?.connectedPeers(of: self) ?? [] }

    /// Every other node in the network, in node order. The RTT is the sum of both directions' `latencyMs`.
    public func peerStatus() -> [PeerStatus] { network?.peerStatus(of: self) ?? [] }
}

/// One entry of `SimulatedNetwork.eventLog`. Nodes are indices; messages are numbered in send order.
public struct NetLogEntry: Sendable, Equatable, CustomStringConvertible {
    public enum DropReason: String, Sendable {
        case dropFault = "lost to the drop fault"
        case disconnected = "its connection went down before it arrived"
    }

    public enum Event: Sendable, Equatable {
        case sent(message: UInt64, from: Int, to: Int, bytes: Int, arrivesAtMs: UInt64, reordered: Bool)
        case duplicated(message: UInt64, from: Int, to: Int, arrivesAtMs: UInt64)
        case delivered(message: UInt64, from: Int, to: Int)
        case dropped(message: UInt64, from: Int, to: Int, reason: DropReason)
        /// A send refused with `.queueFull`.
        case refused(from: Int, to: Int)
        case linkUp(Int, Int)
        case linkDown(Int, Int)
        case crashed(Int)
        case restarted(Int)
        case partitioned([[Int]])
        case healed
    }

    public var timeMs: UInt64
    public var event: Event

    public var description: String {
        let what: String
        switch event {
        case .sent(let message, let from, let to, let bytes, let arrivesAtMs, let reordered):
            what = "#\(message) \(from)→\(to) sent, \(bytes) bytes, arrives at \(arrivesAtMs) ms"
                + (reordered ? " (held back)" : "")
        case .duplicated(let message, let from, let to, let arrivesAtMs):
            what = "#\(message) \(from)→\(to) duplicated, the copy arrives at \(arrivesAtMs) ms"
        case .delivered(let message, let from, let to): what = "#\(message) \(from)→\(to) delivered"
        case .dropped(let message, let from, let to, let reason):
            what = "#\(message) \(from)→\(to) lost: \(reason.rawValue)"
        case .refused(let from, let to): what = "\(from)→\(to) send refused: in-flight bound reached"
        case .linkUp(let a, let b): what = "\(a)↔\(b) connected"
        case .linkDown(let a, let b): what = "\(a)↔\(b) disconnected"
        case .crashed(let node): what = "node \(node) crashed"
        case .restarted(let node): what = "node \(node) restarted"
        case .partitioned(let groups): what = "partitioned into \(groups), other nodes together"
        case .healed: what = "partition healed"
        }
        return "\(timeMs) ms: \(what)"
    }
}

/// A binary min-heap of deliveries by (time, sequence).
struct DeliveryQueue {
    private var heap: [SimulatedNetwork.Delivery] = []

    var count: Int { heap.count }
    var first: SimulatedNetwork.Delivery? { heap.first }

    private static func precedes(_ a: SimulatedNetwork.Delivery, _ b: SimulatedNetwork.Delivery) -> Bool {
        (a.timeMs, a.sequence) < (b.timeMs, b.sequence)
    }

    mutating func insert(_ delivery: SimulatedNetwork.Delivery) {
        heap.append(delivery)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.precedes(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeFirst() -> SimulatedNetwork.Delivery {
        precondition(!heap.isEmpty, "DeliveryQueue is empty")
        heap.swapAt(0, heap.count - 1)
        let first = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count, Self.precedes(heap[left], heap[smallest]) { smallest = left }
            if right < heap.count, Self.precedes(heap[right], heap[smallest]) { smallest = right }
            if smallest == parent { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }
}

enum Blake2b {
    static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let rc = bytes.withUnsafeBufferPointer { input in
            crypto_generichash(&out, 32, input.baseAddress, UInt64(input.count), nil, 0)
        }
        precondition(rc == 0, "crypto_generichash failed")
        return out
    }
}

extension Array {
    /// The node at `index`, with a precondition that names the bad index.
    subscript(node index: Int) -> Element {
        precondition(indices.contains(index), "no node \(index); the network has \(count)")
        return self[index]
    }
}
