import Foundation
import MetanodeCore
import Testing

/// Nodes as real processes on loopback, talking through the kernel's authenticated, encrypted transport.
@Suite("Peer-to-peer networking between real node processes", .serialized)
struct NetworkTests {
    struct Member {
        let node: TestNode
        let key: String
        let port: Int
    }

    static let netExports: [(name: String, signature: String)] = [
        ("bench_send", "int32_t net_bench_send(const char *peer, uint64_t count, uint32_t size)"),
        ("bench_received", "uint64_t net_bench_received(void)"),
        ("bench_bytes", "uint64_t net_bench_bytes(void)"),
    ]

    /// `count` initialised nodes, each listening on its own port, each listing the others as peers, each running the
    /// netter plugin with the http and net grants.
    static func cluster(_ count: Int, label: String) throws -> [Member] {
        var members: [Member] = []
        for index in 0..<count {
            let node = try TestNode("\(label)\(index)")
            let port = try freeLoopbackPort()
            try node.cli.ok("net", "listen", "127.0.0.1:\(port)")
            let key = try #require(try node.cli.json("node", "id")["key"]?.stringValue)
            let package = try Packages.testPlugin(in: node.scratch, name: "netter", abi: "1.1",
                                                  capabilities: ["http", "net"], source: "netplugin.c",
                                                  exports: netExports)
            try node.installSigned(package)
            members.append(Member(node: node, key: key, port: port))
        }
        for member in members {
            for other in members where other.key != member.key {
                try member.node.cli.ok("net", "add-peer", "127.0.0.1:\(other.port)", other.key)
            }
        }
        return members
    }

    /// The peers `process` reports as connected, by key.
    static func connectedPeers(_ process: NodeProcess) throws -> Set<String> {
        let peers = try JSONValue.parse(try process.get("/v1/net/peers").body).arrayValue ?? []
        return Set(peers.filter { $0["state"]?.stringValue == "connected" }.compactMap { $0["key"]?.stringValue })
    }

    static func waitUntil(timeoutSeconds: Double = 10, _ condition: () throws -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(10_000)
        }
        return try condition()
    }

    @Test("three nodes connect, exchange messages on two protocols, and a node killed with SIGKILL is back within 1 s")
    func threeNodes() throws {
        let members = try Self.cluster(3, label: "net")
        var processes = try members.map { try $0.node.start() }
        defer { for process in processes { process.stop() } }
        for (index, process) in processes.enumerated() {
            let others = Set(members.map(\.key)).subtracting([members[index].key])
            #expect(try Self.waitUntil { try Self.connectedPeers(process) == others }, "node \(index) did not connect")
        }

        // Directed messages on two protocols.
        #expect(try processes[0].post("/v1/plugins/netter/send?to=\(members[1].key)&proto=alpha", "hello one").text
            == "MN_OK")
        #expect(try processes[0].post("/v1/plugins/netter/send?to=\(members[2].key)&proto=beta", "hello two").text
            == "MN_OK")
        #expect(try processes[2].post("/v1/plugins/netter/send?to=\(members[0].key)&proto=alpha", "back").text
            == "MN_OK")
        let one = try processes[1].eventually("/v1/plugins/netter/received?proto=alpha") { $0.text.hasPrefix("1 ") }
        #expect(one.text == "1 \(members[0].key) hello one")
        let two = try processes[2].eventually("/v1/plugins/netter/received?proto=beta") { $0.text.hasPrefix("1 ") }
        #expect(two.text == "1 \(members[0].key) hello two")
        let back = try processes[0].eventually("/v1/plugins/netter/received?proto=alpha") { $0.text.hasPrefix("1 ") }
        #expect(back.text == "1 \(members[2].key) back")
        #expect(try processes[1].get("/v1/plugins/netter/received?proto=beta").text.hasPrefix("0 "))

        // A broadcast reaches both other nodes; the plugin sees its peers through the ABI too.
        #expect(try processes[1].post("/v1/plugins/netter/broadcast?proto=beta", "to all").text == "MN_OK 2")
        for index in [0, 2] {
            let seen = try processes[index].eventually("/v1/plugins/netter/received?proto=beta") {
                $0.text.hasSuffix("to all")
            }
            #expect(seen.text.contains(members[1].key))
        }
        let listed = try processes[0].get("/v1/plugins/netter/peers").text
        #expect(listed.contains("\(members[1].key) 1 ") && listed.contains("\(members[2].key) 1 "), "\(listed)")
        #expect(try processes[0].get("/v1/plugins/netter/me").text == members[0].key)

        // SIGKILL node 1; the others notice; restarted, it is reconnected to both within 1 s of being ready.
        kill(processes[1].process.processIdentifier, SIGKILL)
        #expect(processes[1].waitForExit())
        #expect(try Self.waitUntil { !(try Self.connectedPeers(processes[0]).contains(members[1].key)) })
        processes[1] = try members[1].node.start()
        let ready = Date()
        let reconnected = try Self.waitUntil(timeoutSeconds: 5) {
            try Self.connectedPeers(processes[0]).contains(members[1].key)
                && Self.connectedPeers(processes[2]).contains(members[1].key)
        }
        let elapsed = Date().timeIntervalSince(ready)
        #expect(reconnected)
        #expect(elapsed < 1.0, "reconnected after \(elapsed) s")
        let events = try processes[1].eventually("/v1/plugins/netter/events") { $0.text == "up=2 down=0" }
        #expect(events.text == "up=2 down=0")
        #expect(try processes[1].post("/v1/plugins/netter/send?to=\(members[0].key)&proto=alpha", "again").text
            == "MN_OK")
        let again = try processes[0].eventually("/v1/plugins/netter/received?proto=alpha") {
            $0.text.hasSuffix("again")
        }
        #expect(again.text == "2 \(members[1].key) again")
    }

    @Test("a peer presenting another key than configured is refused, with both keys in the log")
    func wrongKeyRefused() throws {
        let members = try Self.cluster(2, label: "wrongkey")
        let impostorKey = String(repeating: "ab", count: 32)
        // Node 0 expects node 1's address to present `impostorKey`; node 1 really has members[1].key.
        try members[0].node.cli.ok("net", "remove-peer", members[1].key)
        try members[0].node.cli.ok("net", "add-peer", "127.0.0.1:\(members[1].port)", impostorKey)
        let first = try members[0].node.start()
        defer { first.stop() }
        let second = try members[1].node.start()
        defer { second.stop() }
        #expect(try Self.waitUntil {
            first.log.contains(members[1].key) && first.log.contains(impostorKey)
        }, "\(first.log)")
        let refusal = first.log.split(separator: "\n").first { $0.contains(impostorKey) && $0.contains(members[1].key) }
        #expect(refusal != nil, "\(first.log)")
        #expect(try Self.connectedPeers(first).isEmpty)
        #expect(try Self.connectedPeers(second).isEmpty)
        #expect(try first.post("/v1/plugins/netter/send?to=\(impostorKey)&proto=alpha", "x").text == "MN_ERR_NOT_FOUND")
    }

    @Test("peers listed only in a shared genesis file connect; a malformed genesis file is refused")
    func peersFromGenesisFile() throws {
        var members: [Member] = []
        for index in 0..<2 {
            let node = try TestNode("genesis\(index)")
            let port = try freeLoopbackPort()
            try node.cli.ok("net", "listen", "127.0.0.1:\(port)")
            members.append(Member(node: node, key: try #require(try node.cli.json("node", "id")["key"]?.stringValue),
                                  port: port))
        }
        let genesis = members[0].node.scratch.file("genesis.json")
        let peers = members.map { #"{"address": "127.0.0.1:\#($0.port)", "key": "\#($0.key)"}"# }
        try #"{"chainId": "test", "peers": [\#(peers.joined(separator: ", "))]}"#
            .write(toFile: genesis, atomically: true, encoding: .utf8)
        for member in members { try member.node.cli.ok("net", "genesis", genesis) }
        let processes = try members.map { try $0.node.start() }
        defer { for process in processes { process.stop() } }
        #expect(try Self.waitUntil { try Self.connectedPeers(processes[0]) == [members[1].key] })
        #expect(try Self.waitUntil { try Self.connectedPeers(processes[1]) == [members[0].key] })

        let broken = members[0].node.scratch.file("broken.json")
        try #"{"peers": [{"address": "127.0.0.1:1"}]}"#.write(toFile: broken, atomically: true, encoding: .utf8)
        #expect(try members[0].node.cli.fails("net", "genesis", broken).contains("needs \"address\""))
    }

    @Test("a node with no net section reports no peers and plugin sends find no one")
    func noNetwork() throws {
        let node = try TestNode("nonet")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "netter", abi: "1.1",
                                                   capabilities: ["http", "net"], source: "netplugin.c",
                                                   exports: Self.netExports))
        let process = try node.start()
        defer { process.stop() }
        #expect(try JSONValue.parse(try process.get("/v1/net").body)["enabled"]?.boolValue == false)
        let key = String(repeating: "00", count: 32)
        #expect(try process.post("/v1/plugins/netter/send?to=\(key)&proto=alpha", "x").text == "MN_ERR_NOT_FOUND")
    }
}
