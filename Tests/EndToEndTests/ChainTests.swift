import BPICore
import Foundation
import MetanodeCore
import MetanodeKernel
import MetanodeWire
import Testing

/// Four validators as real node processes on loopback, made by `metanode chain genesis`.
@Suite("BPI chain across real node processes", .serialized)
struct ChainTests {
    static let sender = Ed25519Signer(seed: WireCrypto.domainHash("e2e-sender", []))

    final class Network {
        let scratch: Scratch
        let directories: [String]
        var processes: [NodeProcess?]

        init(validators: Int) throws {
            try Repo.requireBinary()
            scratch = try Scratch("chain")
            let base = try freeLoopbackPortRange(validators)
            let out = scratch.file("net")
            let made = try run(Repo.metanode, ["chain", "genesis", "--test-transactions",
                                               "--validators", "\(validators)", "--out", out,
                                               "--base-port", "\(base)", "--http-base-port", "\(base + validators)",
                                               "--bundled-plugins", Repo.binDirectory + "/metanode-plugins"])
            try made.requireSuccess()
            directories = (0..<validators).map { "\(out)/node-\($0)" }
            processes = try directories.map { try NodeProcess.start($0) }
        }

        func node(_ index: Int) throws -> NodeProcess { try #require(processes[index]) }

        func status(_ index: Int) throws -> JSONValue {
            try JSONValue.parse(Array(try node(index).get("/v1/plugins/bpi/status").body))
        }

        func height(_ index: Int) throws -> Int64 { try status(index)["height"]?.intValue ?? -1 }

        func submit(_ index: Int, nonce: UInt64) throws -> LoopbackHTTPClient.Response {
            let transaction = try Transaction.signed(chainID: "metanode-local", signer: ChainTests.sender, nonce: nonce,
                                                     fee: 10, kind: "test/op", payload: Array("e2e \(nonce)".utf8))
            return try node(index).post("/v1/plugins/bpi/tx", #"{"tx": "\#(Hex.encode(transaction.encoded))"}"#)
        }

        /// Waits until every running node is at `height` or above.
        func waitForHeight(_ height: Int64, timeoutSeconds: Double = 10) throws -> Bool {
            let deadline = Date().addingTimeInterval(timeoutSeconds)
            while Date() < deadline {
                let heights = try processes.indices.filter { processes[$0] != nil }.map(self.height)
                if heights.allSatisfy({ $0 >= height }) { return true }
                usleep(20_000)
            }
            return false
        }

        func blockHash(_ index: Int, height: Int64) throws -> String? {
            let response = try node(index).get("/v1/plugins/bpi/blocks/\(height)")
            return try JSONValue.parse(Array(response.body))["header"]?["hash"]?.stringValue
        }

        func kill9(_ index: Int) throws {
            let process = try node(index).process
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            processes[index] = nil
        }

        func restart(_ index: Int) throws { processes[index] = try NodeProcess.start(directories[index]) }

        var logs: String {
            processes.enumerated().map { "--- node \($0.offset)\n\($0.element?.log.suffix(3000) ?? "(down)")" }
                .joined(separator: "\n")
        }

        func stopAll() { for process in processes { process?.stop() } }
    }

    @Test("a transaction is final on all four; with the next proposer, then another node killed -9, the chain goes on, restarted nodes catch up, and no two nodes disagree on any block")
    func fourValidatorsSurviveCrashes() throws {
        let net = try Network(validators: 4)
        defer { net.stopAll() }
        // Block 1 comes at once: it applies the genesis modules' sections (the bpci balances).
        try #require(try net.waitForHeight(1), "\(net.logs)")
        #expect(try net.submit(0, nonce: 0).status == 202)
        try #require(try net.waitForHeight(2), "\(net.logs)")

        var nonce: UInt64 = 1
        for victim in [3, 2] {  // the proposer of height 3 (round 0) is validator 3
            try net.kill9(victim)
            let killed = Date()
            let before = try net.height(0)
            let submitted = try net.submit(0, nonce: nonce)
            #expect(submitted.status == 202, "\(submitted.text)")
            nonce += 1
            #expect(try net.waitForHeight(before + 1), "with node \(victim) down\n\(net.logs)")
            #expect(Date().timeIntervalSince(killed) < 5)
            try net.restart(victim)
            #expect(try net.waitForHeight(before + 1), "node \(victim) caught up\n\(net.logs)")
        }
        let top = try net.height(0)
        for height in 1...top {
            let hashes = try Set((0..<4).map { try net.blockHash($0, height: height) })
            #expect(hashes.count == 1 && !hashes.contains(nil), "height \(height): \(hashes)")
        }
        let refused = try net.submit(1, nonce: 0)
        #expect(refused.status == 400 && refused.text.contains("nonce 0 already used"), "\(refused.text)")

        // Offline proofs with the CLI: the sender's nonce in the state, and the first transaction in block 1.
        let cli = CLI(dataDirectory: net.directories[0])
        let blockFile = net.scratch.file("tip.bin")
        let tip = try net.node(0).get("/v1/plugins/bpi/blocks/latest?format=raw")
        try Data(tip.body).write(to: URL(fileURLWithPath: blockFile))
        let stateKey = Hex.encode(BlockRules.nonceKey(ChainTests.sender.publicKey))
        let stateFile = net.scratch.file("state.json")
        try cli.ok("chain", "state", stateKey, "--hex", "--json").write(toFile: stateFile, atomically: true,
                                                                       encoding: .utf8)
        let genesis = net.scratch.file("net/genesis.json")
        let proven = try cli.ok("chain", "verify-proof", "--genesis", genesis, "--block", blockFile, "--proof",
                                stateFile)
        #expect(proven.contains("has value \(Hex.encode(BlockRules.nonceValue(nonce)))"), "\(proven)")
        var tampered = Array(tip.body)
        tampered[40] ^= 1  // inside the header: its hash changes, so the seals no longer match
        try Data(tampered).write(to: URL(fileURLWithPath: blockFile))
        let refusedProof = try cli.fails("chain", "verify-proof", "--genesis", genesis, "--block", blockFile,
                                         "--proof", stateFile)
        #expect(refusedProof.contains("not proven"), "\(refusedProof)")
    }
}

extension ChainTests {
    @Test("the CLI changes the validator set: three approvals, one proposal, and from the next height the chain runs on the new set")
    func validatorSetChangeThroughTheCLI() throws {
        let net = try Network(validators: 4)
        defer { net.stopAll() }
        let keys = try (0..<4).map { index in
            try #require(try CLI(dataDirectory: net.directories[index]).json("node", "id")["key"]?.stringValue)
        }
        let newSet = Array(keys[0..<3])
        let approvals = try (0..<3).map { index in
            try CLI(dataDirectory: net.directories[index]).ok(
                ["chain", "validators", "approve"] + newSet).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let cli = CLI(dataDirectory: net.directories[0])
        let proposed = try cli.ok(["chain", "validators", "propose"] + newSet + approvals.flatMap { ["--approval", $0] })
        #expect(proposed.contains("submitted validator set change (3 validators)"), "\(proposed)")
        let deadline = Date().addingTimeInterval(10)
        var count = 4
        while Date() < deadline, count != 3 {
            count = try net.status(3)["validators"]?.arrayValue?.count ?? 4
            usleep(50_000)
        }
        #expect(count == 3, "\(net.logs)")
        let refused = try cli.fails(["chain", "validators", "propose"] + newSet + ["--approval", approvals[0]])
        #expect(refused.contains("1 approval(s)") || refused.contains("does not verify"), "\(refused)")
    }
}

extension ChainTests {
    @Test("GET /v1/streams/bpi/blocks streams each finalized block as a server-sent event")
    func blockStream() throws {
        let net = try Network(validators: 1)
        defer { net.stopAll() }
        let output = net.scratch.file("stream.txt")
        FileManager.default.createFile(atPath: output, contents: nil)
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-sN", "--max-time", "20", "http://\(try net.node(0).address)/v1/streams/bpi/blocks"]
        curl.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        try curl.run()
        defer { if curl.isRunning { curl.terminate() } }
        // The stream is open once its comment line has arrived.
        let opened = Date().addingTimeInterval(10)
        while Date() < opened, (try? String(contentsOfFile: output, encoding: .utf8))?.contains(": bpi blocks") != true {
            usleep(20_000)
        }
        #expect(try net.submit(0, nonce: 0).status == 202)
        #expect(try net.submit(0, nonce: 1).status == 202)
        let deadline = Date().addingTimeInterval(10)
        var events: [JSONValue] = []
        while Date() < deadline, events.reduce(0, { $0 + ($1["transactions"]?.intValue ?? 0) }) < 2 {
            usleep(50_000)
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            events = text.split(separator: "\n").filter { $0.hasPrefix("data: ") }
                .compactMap { try? JSONValue.parse(Array($0.dropFirst(6).utf8)) }
        }
        #expect((events.first?["height"]?.intValue ?? 0) >= 1, "\(events)")
        #expect(events.reduce(0, { $0 + ($1["transactions"]?.intValue ?? 0) }) == 2, "\(events)")
        #expect(events.allSatisfy { $0["hash"]?.stringValue?.count == 64 })
        // SIGTERM with the stream still open: the node ends the stream and exits rather than wait for the client.
        let node = try net.node(0)
        node.process.terminate()
        #expect(node.waitForExit(timeoutSeconds: 10), "\(node.log)")
    }
}

extension ChainTests {
    @Test("a transaction built and signed in C (plugin-sdk/examples/sign-tx-c) matches the golden vector and is finalized")
    func transactionFromC() throws {
        let scratch = try Scratch("sign-tx")
        let binary = scratch.file("sign_tx")
        try run("/usr/bin/cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", binary,
                                Repo.sdk + "/examples/sign-tx-c/sign_tx.c", "-lsodium"]).requireSuccess()
        let golden = try run(binary, [])
        try golden.requireSuccess()
        let swift = try Transaction.signed(chainID: "metanode-dev", signer: Ed25519Signer(seed: Array(0..<32)), nonce: 7,
                                           fee: 1000, kind: "bpci/transfer", payload: Array("hello".utf8))
        #expect(golden.stdout == """
            public-key \(Hex.encode(swift.sender))
            body \(Hex.encode(swift.body))
            signature \(Hex.encode(swift.signature))
            id \(Hex.encode(swift.id))

            """)

        let net = try Network(validators: 1)
        defer { net.stopAll() }
        let seed = Hex.encode(WireCrypto.domainHash("c-sender", []))
        let made = try run(binary, [seed, "metanode-local", "0", "5", "test/op", "from C"])
        try made.requireSuccess()
        let hex = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let transaction = try Transaction.decode(try #require(Hex.decode(hex)))
        #expect(transaction.hasValidSignature && transaction.payload == Array("from C".utf8))
        let answer = try net.node(0).post("/v1/plugins/bpi/tx", #"{"tx": "\#(hex)"}"#)
        #expect(answer.status == 202, "\(answer.text)")
        let deadline = Date().addingTimeInterval(10)
        var final = try net.node(0).get("/v1/plugins/bpi/tx/\(Hex.encode(transaction.id))")
        while final.status != 200, Date() < deadline {
            usleep(50_000)
            final = try net.node(0).get("/v1/plugins/bpi/tx/\(Hex.encode(transaction.id))")
        }
        #expect(final.status == 200, "\(final.text)")
    }

    @Test("bench chain with more senders than a genesis file may hold fails at once, quoting the node's error, and leaves no node running")
    func benchNodesThatDoNotStart() throws {
        try Repo.requireBinary()
        let started = Date()
        let result = try run(Repo.metanode, ["bench", "chain", "--senders", "12000", "--transactions", "500",
                                             "--seconds", "1", "--ceiling-seconds", "0",
                                             "--bundled-plugins", Repo.binDirectory + "/metanode-plugins"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("did not start: genesis file") && result.stderr.contains("the limit is"),
                "\(result.output)")
        #expect(Date().timeIntervalSince(started) < 30, "it waited for nodes that had already exited")
        // The failed network stays for its logs; nothing of it may still run.
        let root = try #require(result.stderr.firstRange(of: #/(/tmp/metanode-bench-chain-[A-Za-z0-9]+)/#)
            .map { String(result.stderr[$0]) })
        defer { try? FileManager.default.removeItem(atPath: root) }
        let running = (try FileManager.default.contentsOfDirectory(atPath: "/proc")).filter { pid in
            guard pid.allSatisfy(\.isNumber), let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
            else { return false }
            return String(decoding: cmdline, as: UTF8.self).contains(root)
        }
        #expect(running.isEmpty, "node processes of \(root) still run: \(running)")
    }
}

/// `count` consecutive TCP ports on 127.0.0.1 that were free a moment ago.
func freeLoopbackPortRange(_ count: Int) throws -> Int {
    for _ in 0..<50 {
        let base = try freeLoopbackPort()
        guard base + count < 65_000 else { continue }
        let fds = (0..<count).map { offset -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(base + offset).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if bound != 0 { close(fd); return -1 }
            return fd
        }
        for fd in fds where fd >= 0 { close(fd) }
        if fds.allSatisfy({ $0 >= 0 }) { return base }
    }
    throw CancellationError()
}
