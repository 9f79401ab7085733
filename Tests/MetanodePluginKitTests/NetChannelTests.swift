import MetanodePluginKit
import MetanodePluginTesting
import Testing

/// context.net through the ABI: what each net_* function answers, with the kernel's error semantics.
@Suite struct NetChannelTests {
    let seed = SimulationSeed.fromEnvironment(default: 3)

    @Test func netPeersListsEveryOtherNodeWithItsConnectionAndRTT() throws {
        let sim = Simulation(nodes: 3, seed: seed, faults: LinkFaults(latencyMs: 15))
        let (_, probe) = try NetProbe.load(into: sim.host(0))
        sim.partition([[0, 1], [2]])
        #expect(try probe.context.net.peers() == [
            NetPeer(key: sim.key(1), connected: true, rttMicros: 30_000),
            NetPeer(key: sim.key(2), connected: false, rttMicros: nil),
        ])
    }

    @Test func netLocalKeyIsTheNodeKey() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let (_, probe) = try NetProbe.load(into: sim.host(1))
        #expect(try probe.context.net.localKey() == sim.key(1))
        #expect(try probe.context.net.localKey().bytes == probe.context.signer.publicKey())
    }

    @Test func aHostWithoutANetworkHasNoPeersButKnowsItsKey() throws {
        let host = TestHost()
        let (_, probe) = try NetProbe.load(into: host)
        #expect(try probe.context.net.peers().isEmpty)
        #expect(try probe.context.net.broadcast("nobody", on: "ping") == 0)
        #expect(try probe.context.net.localKey().bytes == host.nodePublicKey)
    }

    @Test func sendToAPeerThatIsNotConnectedIsNotFound() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let (_, probe) = try NetProbe.load(into: sim.host(0))
        let stranger = try #require(PeerID(bytes: [UInt8](repeating: 7, count: 32)))
        let error = #expect(throws: PluginError.self) { try probe.context.net.send("hi", to: stranger, on: "ping") }
        #expect(error?.status == PluginStatus.notFound)
        #expect(error?.function == "net_send")
        #expect(error?.message.contains(stranger.short) == true)
    }

    @Test func sendToItselfIsNotFound() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let (_, probe) = try NetProbe.load(into: sim.host(0))
        let error = #expect(throws: PluginError.self) { try probe.context.net.send("me", to: sim.key(0), on: "ping") }
        #expect(error?.status == PluginStatus.notFound)
    }

    @Test func messageOverTheSizeLimitIsTooLarge() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let (_, probe) = try NetProbe.load(into: sim.host(0))
        let huge = [UInt8](repeating: 1, count: Int(MN_NET_MESSAGE_LEN_MAX) + 1)
        let error = #expect(throws: PluginError.self) { try probe.context.net.send(huge, to: sim.key(1), on: "ping") }
        #expect(error?.status == PluginStatus.tooLarge)
        #expect(sim.network.inFlightCount == 0)
    }

    @Test func registeringAProtocolTwiceIsExists() throws {
        let (_, probe) = try NetProbe.load(into: TestHost(), protocols: ["ping"])
        let error = #expect(throws: PluginError.self) { try probe.context.net.register("ping") { _, _ in } }
        #expect(error?.status == PluginStatus.exists)
    }

    @Test func malformedProtocolNameIsInvalid() throws {
        let (_, probe) = try NetProbe.load(into: TestHost(), protocols: [])
        let error = #expect(throws: PluginError.self) { try probe.context.net.register("Not/Valid") { _, _ in } }
        #expect(error?.status == PluginStatus.invalidArgument)
    }

    @Test func pluginWithoutTheNetGrantIsDenied() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let (_, probe) = try NetProbe.load(into: sim.host(0), grants: HostCapabilities.all.subtracting(.net),
                                           protocols: [])
        let send = #expect(throws: PluginError.self) { try probe.context.net.send("x", to: sim.key(1), on: "ping") }
        #expect(send?.status == PluginStatus.denied)
        let register = #expect(throws: PluginError.self) { try probe.context.net.register("ping") { _, _ in } }
        #expect(register?.status == PluginStatus.denied)
        #expect(sim.host(0).denials.map(\.function) == ["net_send", "net_register"])
        #expect(sim.host(0).denials.allSatisfy { $0.capability == "net" })
    }

    @Test func netOnAHostOlderThanABI11ThrowsVersion() throws {
        let host = TestHost()
        let (plugin, probe) = try NetProbe.load(into: host, protocols: [])
        plugin.context.vtable.pointee.abi_minor = 0  // what a 1.0 kernel would hand the plugin
        let error = #expect(throws: PluginError.self) { try probe.context.net.localKey() }
        #expect(error?.status == PluginStatus.version)
        #expect(error?.message.contains("1.1") == true)
    }

    @Test func watchPeersStartsWithUpForEveryConnectedPeer() throws {
        let sim = Simulation(nodes: 4, seed: seed)
        sim.isolate(3)
        let (_, probe) = try NetProbe.load(into: sim.host(0), watch: true)
        #expect(probe.peerEvents.isEmpty, "events run on the plugin's executor, when the simulation runs")
        sim.runUntilIdle()
        #expect(probe.peerEvents == [.init(peer: sim.key(1), up: true), .init(peer: sim.key(2), up: true)])
    }

    @Test func aSecondWatcherReplacesTheFirst() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let (_, probe) = try NetProbe.load(into: sim.host(0), watch: true)
        let second = Recorded<[Bool]>([])
        try probe.context.net.watchPeers { _, up in second.value.append(up) }
        sim.runUntilIdle()
        probe.peerEvents.removeAll()
        second.value.removeAll()
        sim.crash(1)
        sim.runUntilIdle()
        #expect(probe.peerEvents.isEmpty)
        #expect(second.value == [false])
    }

    @Test func messagesReachOnlyThePluginThatRegisteredTheProtocol() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let (_, alpha0) = try NetProbe.load(into: sim.host(0), name: "alpha", protocols: ["x"])
        let (_, alpha1) = try NetProbe.load(into: sim.host(1), name: "alpha", protocols: ["x"])
        let (_, beta1) = try NetProbe.load(into: sim.host(1), name: "beta", protocols: ["x"])
        try alpha0.context.net.send("for alpha", to: sim.key(1), on: "x")
        try alpha0.context.net.send("for nobody", to: sim.key(1), on: "y")
        sim.runUntilIdle()
        #expect(alpha1.texts(on: "x") == ["for alpha"])
        #expect(beta1.received.isEmpty)
        #expect(sim.host(1).netCounters.unroutable == 1)
    }

    @Test func stoppedPluginGetsNoMoreMessages() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let (_, sender) = try NetProbe.load(into: sim.host(0))
        let (plugin, receiver) = try NetProbe.load(into: sim.host(1))
        sim.host(1).stop(plugin)
        try sender.context.net.send("after stop", to: sim.key(1), on: "ping")
        sim.runUntilIdle()
        #expect(receiver.received.isEmpty)
        #expect(sim.host(1).netCounters.unroutable == 1)
    }

    @Test func peerStatusCountsTrafficBothWays() throws {
        let sim = Simulation(nodes: 2, seed: seed)
        let probes = try sim.loadProbes(pong: true)
        try probes[0].context.net.send("12345", to: sim.key(1), on: "ping")
        sim.runUntilIdle()
        let status = try #require(sim.network.endpoint(0).peerStatus().first)
        #expect(status.id == sim.key(1))
        #expect(status.state == .connected)
        #expect(status.messagesSent == 1 && status.messagesReceived == 1)
        #expect(status.bytesSent == 19 && status.bytesReceived == 19, "1 + 'netprobe/ping' + 5 bytes each way")
        #expect(status.queuedMessages == 0)
    }
}
