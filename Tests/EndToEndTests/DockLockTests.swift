import Foundation
import MetanodeCore
import Testing

/// DockLock through the CLI against a real dev node: an image built from Debian's busybox-static, runs attached and
/// detached, refusals by name, and receipts that verify offline and fail when edited.
@Suite(.serialized)
struct DockLockTests {
    /// A busybox tree like the one container-baseline.sh gives crun and runc.
    static func busyboxTree(in scratch: Scratch) throws -> String {
        let root = scratch.file("rootfs")
        for directory in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(directory)", withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: "\(root)/bin/busybox")
        for applet in ["sh", "true", "echo", "cat", "sleep", "hostname", "id", "ls", "mount", "seq"] {
            try FileManager.default.createSymbolicLink(atPath: "\(root)/bin/\(applet)", withDestinationPath: "busybox")
        }
        return root
    }

    @Test("a dev node runs containers from a built image and signs a receipt chain that verifies offline")
    func runAndVerify() throws {
        let node = try TestNode("docklock", dev: true, bundled: Repo.binDirectory + "/metanode-plugins")
        let cli = node.cli
        let built = try cli.json("docklock", "image", "build", try Self.busyboxTree(in: node.scratch), "--tag", "busybox")
        let digest = try #require(built["digest"]?.stringValue, "\(built)")
        // The operator's ceilings (plugin config), validated against the manifest's schema.
        #expect(try cli.fails("plugin", "config", "docklock", #"{"stateDirectory": "x", "ceilings": {"pidsMax": 0}}"#)
            .contains("pidsMax"))
        try cli.ok("plugin", "config", "docklock", #"{"stateDirectory": "\#(node.data)/docklock", "ceilings": "#
            + #"{"memoryBytesMax": 134217728, "pidsMax": 64, "timeoutMsMax": 120000}}"#)
        let process = try node.start()
        defer { _ = process.stop() }

        // Attached: output through, exit status through.
        let hello = try cli("docklock", "run", "busybox", "--", "sh", "-c", "echo hello; echo warn >&2; hostname")
        #expect(hello.status == 0 && hello.stdout == "hello\ndocklock\n" && hello.stderr.contains("warn"), "\(hello)")
        let failed = try cli("docklock", "run", "busybox", "--", "sh", "-c", "exit 7")
        #expect(failed.status == 7, "\(failed)")
        let stdinFile = node.scratch.file("input")
        try "piped".write(toFile: stdinFile, atomically: true, encoding: .utf8)
        let cat = try cli("docklock", "run", "busybox", "--stdin", stdinFile, "--", "cat")
        #expect(cat.stdout == "piped", "\(cat)")
        let json = try cli.json("docklock", "run", "busybox", "--memory", "64m", "--pids", "16", "--", "/bin/true")
        #expect(json["exitCode"]?.intValue == 0 && json["receipt"]?["sequence"]?.intValue == 3, "\(json)")

        // Refusals name what was wrong.
        #expect(try cli.fails("docklock", "run", "nosuch", "--", "true").contains("no image 'nosuch'"))
        #expect(try cli.fails("docklock", "run", "busybox", "--", "nosuchcommand").contains("no nosuchcommand in the image"))
        #expect(try cli.fails("docklock", "run", "busybox", "--network", "host", "--", "true").contains("network 'host'"))
        #expect(try cli.fails("docklock", "run", "busybox", "--memory", "lots", "--", "true").contains("not a byte count"))
        #expect(try cli.fails("docklock", "run", "busybox", "--deterministic", "--hostname", "x", "--", "true")
            .contains("--deterministic fixes hostname"))
        #expect(try cli.fails("docklock", "run", "busybox", "--user", "4294967295", "--", "true").contains("below 4294967295"))
        #expect(try cli.fails("docklock", "run", "busybox", "--memory", "1g", "--", "true")
            .contains("over this node's ceiling of 134217728 bytes (docklock config ceilings.memoryBytesMax)"))
        #expect(try cli.fails("docklock", "run", "busybox", "--pids", "65", "--", "true").contains("ceilings.pidsMax"))
        #expect(try cli.fails("docklock", "run", "busybox", "--timeout", "120001", "--", "true")
            .contains("ceilings.timeoutMsMax"))
        // Defaults over a ceiling come down to it (256 MiB and 256 PIDs here): the receipt's profile shows them.
        let clamped = try cli.json("docklock", "run", "busybox", "--", "/bin/true")
        let shown = try cli.json("docklock", "receipts", "show", "\(clamped["receipt"]?["sequence"]?.intValue ?? -1)")
        #expect(shown["profile"]?["memoryBytesMax"]?.intValue == 134_217_728, "\(shown)")
        #expect(shown["profile"]?["pidsMax"]?.intValue == 64, "\(shown)")
        #expect(shown["profile"]?["timeoutMs"]?.intValue == 120_000, "\(shown)")
        // A timeout near UInt64.max is refused by name, not a crash of the node.
        let huge = try process.post("/v1/plugins/docklock/run",
                                    #"{"image": "busybox", "command": ["true"], "timeoutMs": 18446744073709551615}"#)
        #expect(huge.status == 400 && huge.text.contains("over the maximum"), "\(huge.status) \(huge.text)")

        // A timeout and a detached container.
        let slow = try cli("docklock", "run", "busybox", "--timeout", "300", "--", "sleep", "30")
        #expect(slow.status == 137 && slow.stderr.contains("timeout"), "\(slow)")
        let id = try cli.ok("docklock", "run", "--detach", "busybox", "--", "sh", "-c", "echo started; sleep 30")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try cli.ok("docklock", "ps").contains("\(id)"))
        let deadline = Date().addingTimeInterval(5)
        var logs = ""
        while !logs.contains("started"), Date() < deadline {
            logs = try cli.ok("docklock", "logs", id)
            usleep(20_000)
        }
        #expect(logs == "started\n")
        #expect(try cli.fails("docklock", "rm", id).contains("is running"))
        // The image it runs on cannot be removed under it.
        #expect(try cli.fails("docklock", "image", "rm", "busybox").contains("in use by running container(s) \(id)"))
        try cli.ok("docklock", "kill", id)
        let killedBy = Date().addingTimeInterval(5)
        while try !cli.ok("docklock", "ps").contains("signal 9"), Date() < killedBy { usleep(20_000) }
        try cli.ok("docklock", "rm", id)
        #expect(try !cli.ok("docklock", "ps").contains(id))
        // --follow streams a detached container's output as it comes and returns when it ends.
        let streamer = try cli.ok("docklock", "run", "--detach", "busybox", "--", "sh", "-c",
                                  "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo done >&2")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let followed = try cli("docklock", "logs", "--follow", streamer)
        #expect(followed.status == 0 && followed.stdout == "line1\nline2\nline3\n" && followed.stderr == "done\n",
                "\(followed)")

        // Receipts: one per execution, chained, signed by the node key, checked with no node involved.
        let list = try cli.json("docklock", "receipts", "list")
        let receipts = try #require(list.arrayValue)
        #expect(receipts.count == 8, "\(list)")
        #expect(receipts.allSatisfy { $0["imageDigest"]?.stringValue == digest })
        let key = try #require(try JSONValue.parse(Array(try process.get("/v1/plugins/docklock/node").body))["publicKey"]?
            .stringValue)
        let chainFile = node.scratch.file("chain.json")
        try list.serialized(pretty: true).write(toFile: chainFile, atomically: true, encoding: .utf8)
        let verified = try run(Repo.metanode, ["receipt", "verify", chainFile, "--key", key])
        #expect(verified.status == 0 && verified.stdout.contains("valid: 8 receipts"), "\(verified)")

        let one = try cli.ok("docklock", "receipts", "show", "1")
        #expect(one.contains("\"exit\": 7"), "\(one)")
        let edited = node.scratch.file("edited.json")
        try one.replacingOccurrences(of: "\"exit\": 7", with: "\"exit\": 0").write(toFile: edited, atomically: true, encoding: .utf8)
        let refused = try run(Repo.metanode, ["receipt", "verify", edited, "--key", key])
        #expect(refused.status != 0 && refused.output.contains("signature does not verify"), "\(refused)")
        let wrongKey = String(repeating: "ab", count: 32)
        #expect(try run(Repo.metanode, ["receipt", "verify", chainFile, "--key", wrongKey]).status != 0)
    }

    @Test("after chain genesis, a run's receipt is anchored in a finalized block and show proves it")
    func receiptsAnchoredInTheLedger() throws {
        let node = try TestNode("docklock-ledger", dev: true, bundled: Repo.binDirectory + "/metanode-plugins")
        let cli = node.cli
        let genesis = try cli.json("chain", "genesis", "--chain-id", "docklock-e2e")
        let account = try #require(genesis["docklockLedgerAccount"]?.stringValue, "\(genesis)")
        let keyFile = "\(node.data)/docklock/ledger.key"
        let mode = try FileManager.default.attributesOfItem(atPath: keyFile)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600 && FileManager.default.contents(atPath: keyFile)?.count == 32)
        let genesisText = try String(contentsOfFile: "\(node.data)/genesis.json", encoding: .utf8)
        #expect(genesisText.contains(account), "the genesis funds the ledger account")
        try cli.ok("docklock", "image", "build", try Self.busyboxTree(in: node.scratch), "--tag", "busybox")
        let process = try node.start()
        defer { _ = process.stop() }

        let status = try JSONValue.parse(Array(try process.get("/v1/plugins/docklock/node").body))
        #expect(status["ledger"]?["address"]?.stringValue == account, "\(status)")
        // BPI is DockLock's optional dependency: it starts first, so DockLock finds its ledger service at init.
        let log = try String(contentsOfFile: node.scratch.file("node.log"), encoding: .utf8)
        let bpiStarted = try #require(log.range(of: "plugin bpi 0.1.0 started"), "\(log)")
        let registered = try #require(log.range(of: "registered ledger module docklock"), "\(log)")
        #expect(bpiStarted.upperBound < registered.lowerBound)
        let hello = try cli("docklock", "run", "busybox", "--", "echo", "to the ledger")
        #expect(hello.status == 0 && hello.stdout == "to the ledger\n", "\(hello)")

        // Pending until a block holds it; then show fetches the proofs and checks them here.
        let deadline = Date().addingTimeInterval(15)
        var shown = try cli("docklock", "receipts", "show", "0")
        while !shown.stdout.contains("\"status\": \"anchored\""), Date() < deadline {
            usleep(100_000)
            shown = try cli("docklock", "receipts", "show", "0")
        }
        #expect(shown.status == 0, "\(shown)")
        let answer = try JSONValue.parse(shown.stdout)
        let ledger = try #require(answer["ledger"], "\(shown.stdout)")
        #expect(ledger["status"]?.stringValue == "anchored" && (ledger["height"]?.intValue ?? 0) >= 1, "\(ledger)")
        #expect(ledger["batchIndex"]?.intValue == 0 && ledger["txId"]?.stringValue?.count == 64)
        #expect(ledger["proof"]?["verified"]?.boolValue == true, "\(ledger)")
        #expect(shown.stderr.contains("verified: receipt 0") && shown.stderr.contains("sealed by 1 of 1"), "\(shown)")

        // The chain agrees: the batch transaction is final and paid its fee from the funded account.
        let txID = try #require(ledger["txId"]?.stringValue)
        let transaction = try cli.json("chain", "tx", txID)
        #expect(transaction["transaction"]?["kind"]?.stringValue == "docklock/receipts", "\(transaction)")
        #expect(transaction["result"]?["status"]?.intValue == 0)
        let proofFile = node.scratch.file("tx-proof.json")
        try transaction.serialized(pretty: true).write(toFile: proofFile, atomically: true, encoding: .utf8)
        let blockFile = node.scratch.file("block.bin")
        let height = try #require(ledger["height"]?.intValue)
        try Data(try process.get("/v1/plugins/bpi/blocks/\(height)?format=raw").body).write(to: URL(fileURLWithPath: blockFile))
        let proven = try cli("chain", "verify-proof", "--genesis", "\(node.data)/genesis.json", "--block", blockFile,
                             "--proof", proofFile)
        #expect(proven.status == 0 && proven.stdout.contains("proven: transaction \(txID)"), "\(proven)")

        // The shown receipt, ledger entry and all, still verifies offline as a receipt file.
        let file = node.scratch.file("receipt.json")
        try shown.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        let key = try #require(status["publicKey"]?.stringValue)
        let verified = try run(Repo.metanode, ["receipt", "verify", file, "--key", key])
        #expect(verified.status == 0 && verified.stdout.contains("valid: 1 receipt"), "\(verified)")
    }

    @Test("verify repeats a --deterministic run: the same output is reproducible, a random one is caught")
    func deterministicVerify() throws {
        let node = try TestNode("docklock-verify", dev: true, bundled: Repo.binDirectory + "/metanode-plugins")
        let cli = node.cli
        try cli.ok("docklock", "image", "build", try Self.busyboxTree(in: node.scratch), "--tag", "busybox")
        let process = try node.start()
        defer { _ = process.stop() }

        let stable = try cli.json("docklock", "run", "--deterministic", "-e", "GREETING=hi", "busybox", "--",
                                  "sh", "-c", "echo $GREETING from $(hostname); echo $LANG $TZ")
        #expect(String(decoding: Data(base64Encoded: stable["stdout"]?.stringValue ?? "") ?? Data(), as: UTF8.self)
            == "hi from docklock\nC.UTF-8 UTC\n", "\(stable)")
        let sequence = try #require(stable["receipt"]?["sequence"]?.intValue)
        let again = try cli("docklock", "verify", "\(sequence)")
        #expect(again.status == 0 && again.stdout.contains("reproducible"), "\(again)")

        // The same check from a file, as another party would hold it.
        let file = node.scratch.file("receipt.json")
        try cli.ok("docklock", "receipts", "show", "\(sequence)").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try cli("docklock", "verify", file).status == 0)

        let random = try cli.json("docklock", "run", "--deterministic", "busybox", "--", "cat", "/proc/sys/kernel/random/uuid")
        let randomSequence = try #require(random["receipt"]?["sequence"]?.intValue)
        let caught = try cli("docklock", "verify", "\(randomSequence)")
        #expect(caught.status == 1 && caught.stdout.contains("not reproducible: stdout differ"), "\(caught)")

        let plain = try cli.json("docklock", "run", "busybox", "--", "/bin/true")
        let plainSequence = try #require(plain["receipt"]?["sequence"]?.intValue)
        #expect(try cli.fails("docklock", "verify", "\(plainSequence)").contains("not of a --deterministic run"))
    }
}
