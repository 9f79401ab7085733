import MetanodePluginKit
import MetanodePluginTesting
import Testing

/// Each fault of the simulated network, seen by plugins through context.net.
@Suite struct SimulatedNetworkFaultTests {
    let seed = SimulationSeed.fromEnvironment(default: 7)

    @Test func pluginsOnFourNodesExchangeMessagesAndAnswers() throws {
        let sim = Simulation(nodes: 4, seed: seed)
        let probes = try sim.loadProbes(pong: true)
        #expect(try probes[0].context.net.broadcast("hello", on: "ping") == 3)
        #expect(sim.runUntilIdle(), "\(sim.reproduction)")
        for node in 1..<4 {
            #expect(probes[node].texts(on: "ping") == ["hello"])
            #expect(probes[node].senders(on: "ping") == [sim.key(0)])
        }
        #expect(Set(probes[0].senders(on: "pong")) == [sim.key(1), sim.key(2), sim.key(3)])
        #expect(probes[0].texts(on: "pong") == ["hello", "hello", "hello"])
    }

    @Test func messagesArriveNoEarlierThanTheLatencyAndWithinTheJitter() throws {
        let sim = Simulation(nodes: 2, seed: seed, faults: LinkFaults(latencyMs: 25, jitterMs: 10))
        let probes = try sim.loadProbes()
        sim.run(forMs: 100)
        var sentAt: [UInt64] = []
        for number in 0..<20 {
            try probes[0].context.net.send(Numbered.message(number), to: sim.key(1), on: "ping")
            sentAt.append(sim.nowMs)
            sim.run(forMs: 3)
        }
        sim.runUntilIdle()
        let received = probes[1].received
        #expect(received.count == 20)
        for message in received {
            let number = Numbered.numbers([message.text])[0]
            #expect(message.atMs >= sentAt[number] + 25, "\(sim.reproduction)")
            #expect(message.atMs <= sentAt[number] + 35, "\(sim.reproduction)")
        }
    }

    @Test func withDropAtOneThousandPerMilleNothingArrives() throws {
        let sim = Simulation(nodes: 2, seed: seed, faults: LinkFaults(dropPerMille: 1000))
        let probes = try sim.loadProbes()
        for number in 0..<50 {
            try probes[0].context.net.send(Numbered.message(number), to: sim.key(1), on: "ping")  // sends succeed
        }
        sim.runUntilIdle()
        #expect(probes[1].received.isEmpty)
        #expect(sim.network.lostCount == 50)
        #expect(sim.network.deliveredCount == 0)
    }

    @Test func withoutDropsEveryMessageArrivesExactlyOnce() throws {
        let sim = Simulation(nodes: 2, seed: seed, faults: LinkFaults(latencyMs: 5, jitterMs: 20))
        let probes = try sim.loadProbes()
        for number in 0..<200 {
            try probes[0].context.net.send(Numbered.message(number), to: sim.key(1), on: "ping")
            if number % 7 == 0 { sim.run(forMs: 1) }
        }
        sim.runUntilIdle()
        #expect(Numbered.numbers(probes[1].texts(on: "ping")).sorted() == Array(0..<200))
        #expect(sim.network.lostCount == 0)
    }

    @Test func duplicationDeliversSomeMessagesTwiceAndNoneMoreOften() throws {
        let sim = Simulation(nodes: 2, seed: seed, faults: LinkFaults(jitterMs: 5, duplicatePerMille: 500))
        let probes = try sim.loadProbes()
        for number in 0..<200 {
            try probes[0].context.net.send(Numbered.message(number), to: sim.key(1), on: "ping")
        }
        sim.runUntilIdle()
        var copies: [Int: Int] = [:]
        for number in Numbered.numbers(probes[1].texts(on: "ping")) { copies[number, default: 0] += 1 }
        #expect(copies.count == 200, "every message arrives")
        #expect(copies.values.allSatisfy { $0 == 1 || $0 == 2 })
        let twice = copies.values.filter { $0 == 2 }.count
        #expect(twice > 50 && twice < 150, "about half are duplicated: \(twice), \(sim.reproduction)")
    }

    @Test func reorderingLetsLaterMessagesOvertakeEarlierOnes() throws {
        let sim = Simulation(nodes: 2, seed: seed,
                             faults: LinkFaults(latencyMs: 10, reorderPerMille: 300, reorderDelayMaxMs: 50))
        let probes = try sim.loadProbes()
        for number in 0..<100 {
            try probes[0].context.net.send(Numbered.message(number), to: sim.key(1), on: "ping")
            sim.run(forMs: 1)
        }
        sim.runUntilIdle()
        let order = Numbered.numbers(probes[1].texts(on: "ping"))
        #expect(order.sorted() == Array(0..<100), "reordering loses nothing")
        #expect(order != Array(0..<100), "\(sim.reproduction)")
    }

    @Test func withoutReorderingJitterNeverChangesTheOrderOnALink() throws {
        let sim = Simulation(nodes: 3, seed: seed, faults: LinkFaults(latencyMs: 10, jitterMs: 50))
        let probes = try sim.loadProbes()
        for number in 0..<200 {
            try probes[0].context.net.send(Numbered.message(number), to: sim.key(1), on: "ping")
            try probes[2].context.net.send(Numbered.message(number), to: sim.key(1), on: "ping")
            if number % 3 == 0 { sim.run(forMs: 2) }
        }
        sim.runUntilIdle()
        for sender in [0, 2] {
            let fromSender = probes[1].received.filter { $0.peer == sim.key(sender) }.map(\.text)
            #expect(Numbered.numbers(fromSender) == Array(0..<200), "\(sim.reproduction)")
        }
    }

    @Test func arrivalsAtTheSameMillisecondKeepTheirSendOrder() throws {
        let sim = Simulation(nodes: 4, seed: seed, faults: LinkFaults(latencyMs: 10))
        let probes = try sim.loadProbes()
        for sender in [3, 1, 2] {
            try probes[sender].context.net.send("from \(sender)", to: sim.key(0), on: "ping")
        }
        sim.runUntilIdle()
        #expect(probes[0].texts(on: "ping") == ["from 3", "from 1", "from 2"])
        #expect(probes[0].received.map(\.atMs) == [10, 10, 10])
    }

    @Test func partitionBlocksTrafficBetweenGroupsOnly() throws {
        let sim = Simulation(nodes: 4, seed: seed)
        let probes = try sim.loadProbes()
        sim.partition([[0, 1], [2, 3]])
        #expect(try probes[0].context.net.broadcast("inside", on: "ping") == 1)
        #expect(throws: PluginError.self) { try probes[0].context.net.send("across", to: sim.key(2), on: "ping") }
        try probes[2].context.net.send("other side", to: sim.key(3), on: "ping")
        sim.runUntilIdle()
        #expect(probes[1].texts(on: "ping") == ["inside"])
        #expect(probes[2].received.isEmpty)
        #expect(probes[3].texts(on: "ping") == ["other side"])
    }

    @Test func nodesNamedInNoGroupStayTogether() throws {
        let sim = Simulation(nodes: 4, seed: seed)
        sim.partition([[0]])
        #expect(!sim.network.isConnected(0, 1))
        #expect(sim.network.isConnected(1, 2) && sim.network.isConnected(2, 3) && sim.network.isConnected(1, 3))
    }

    @Test func partitionReportsPeersDownAndHealReportsThemUp() throws {
        let sim = Simulation(nodes: 4, seed: seed)
        let probes = try sim.loadProbes(watch: true)
        sim.runUntilIdle()
        probes[0].peerEvents.removeAll()
        sim.partition([[0, 1], [2, 3]])
        sim.runUntilIdle()
        #expect(probes[0].peerEvents == [.init(peer: sim.key(2), up: false), .init(peer: sim.key(3), up: false)])
        probes[0].peerEvents.removeAll()
        sim.heal()
        sim.runUntilIdle()
        #expect(probes[0].peerEvents == [.init(peer: sim.key(2), up: true), .init(peer: sim.key(3), up: true)])
    }

    @Test func healRestoresTrafficAcrossTheFormerSplit() throws {
        let sim = Simulation(nodes: 4, seed: seed)
        let probes = try sim.loadProbes()
        sim.partition([[0, 1], [2, 3]])
        sim.run(forMs: 50)
        sim.heal()
        try probes[0].context.net.send("after heal", to: sim.key(3), on: "ping")
        sim.runUntilIdle()
        #expect(probes[3].texts(on: "ping") == ["after heal"])
    }

    @Test func messagesOnTheirWayAcrossAPartitionAreLostEvenIfItHealsFirst() throws {
        let sim = Simulation(nodes: 2, seed: seed, faults: LinkFaults(latencyMs: 100))
        let probes = try sim.loadProbes()
        try probes[0].context.net.send("doomed", to: sim.key(1), on: "ping")
        sim.run(forMs: 10)
        sim.isolate(0)
        sim.heal()  // reconnected before the arrival time: still a new connection
        sim.runUntilIdle()
        #expect(probes[1].received.isEmpty)
        #expect(sim.network.lostCount == 1)
    }

    @Test func crashedNodeGetsNothingAndItsPeersSeeItGoDown() throws {
        let sim = Simulation(nodes: 3, seed: seed, faults: LinkFaults(latencyMs: 50))
        let probes = try sim.loadProbes(watch: true)
        sim.runUntilIdle()
        try probes[0].context.net.send("too late", to: sim.key(2), on: "ping")
        sim.run(forMs: 10)
        sim.crash(2)
        sim.run(forMs: 100)
        #expect(probes[2].received.isEmpty)
        for node in [0, 1] { #expect(probes[node].peerEvents.last == .init(peer: sim.key(2), up: false)) }
        let error = #expect(throws: PluginError.self) {
            try probes[0].context.net.send("again", to: sim.key(2), on: "ping")
        }
        #expect(error?.status == PluginStatus.notFound)
    }

    @Test func crashedNodeCannotSend() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let probes = try sim.loadProbes()
        sim.crash(1)
        let error = #expect(throws: PluginError.self) {
            try probes[1].context.net.send("from the dead", to: sim.key(0), on: "ping")
        }
        #expect(error?.status == PluginStatus.notFound)
        #expect(try probes[1].context.net.broadcast("anyone?", on: "ping") == 0)
    }

    @Test func restartedNodeComesBackWithPeerUpAndTalksAgain() throws {
        let sim = Simulation(nodes: 3, seed: seed)
        let probes = try sim.loadProbes(watch: true)
        sim.run(forMs: 20)
        sim.crash(2)
        sim.run(forMs: 20)
        probes[0].peerEvents.removeAll()
        let (_, reborn) = try NetProbe.load(into: sim.restart(2), watch: true)
        sim.runUntilIdle()
        #expect(probes[0].peerEvents == [.init(peer: sim.key(2), up: true)])
        #expect(reborn.peerEvents == [.init(peer: sim.key(0), up: true), .init(peer: sim.key(1), up: true)])
        #expect(try reborn.context.net.localKey() == sim.key(2))
        try probes[0].context.net.send("welcome back", to: sim.key(2), on: "ping")
        sim.runUntilIdle()
        #expect(reborn.texts(on: "ping") == ["welcome back"])
        #expect(probes[2].received.isEmpty, "the crashed instance stays dead")
    }

    @Test func sendBeyondTheInFlightBoundIsLimitAndCounted() throws {
        let sim = Simulation(nodes: 2, seed: seed, faults: LinkFaults(latencyMs: 100), inFlightPerLinkMax: 4)
        let (_, probe) = try NetProbe.load(into: sim.host(0))
        for number in 0..<4 { try probe.context.net.send(Numbered.message(number), to: sim.key(1), on: "ping") }
        let error = #expect(throws: PluginError.self) {
            try probe.context.net.send("one too many", to: sim.key(1), on: "ping")
        }
        #expect(error?.status == PluginStatus.limit)
        #expect(sim.host(0).netCounters.sendDropped == 1)
        let status = try #require(sim.network.endpoint(0).peerStatus().first)
        #expect(status.queuedMessages == 4)
        #expect(status.droppedMessages == 1)
        sim.runUntilIdle()
        try probe.context.net.send("room again", to: sim.key(1), on: "ping")
    }

    @Test func perLinkFaultsOverrideTheDefault() throws {
        let sim = Simulation(nodes: 3, seed: seed, faults: LinkFaults(latencyMs: 10))
        sim.network.setFaults(LinkFaults(dropPerMille: 1000), from: 0, to: 2)
        let probes = try sim.loadProbes()
        #expect(try probes[0].context.net.broadcast("hi", on: "ping") == 2)
        try probes[2].context.net.send("back", to: sim.key(0), on: "ping")
        sim.runUntilIdle()
        #expect(probes[1].texts(on: "ping") == ["hi"])
        #expect(probes[2].received.isEmpty, "0→2 drops everything")
        #expect(probes[0].texts(on: "ping") == ["back"], "2→0 keeps the default")
    }
}
