import Foundation
import MetanodeCore
import Testing

/// BPCI through the CLI against real node processes: the dev wallet `chain genesis` funds, transfers, balances,
/// history, refusals and a passphrase-sealed key.
extension ChainTests {
    @Test("on one node: the dev wallet pays a new wallet; balances, history, supply and fees agree; bad transfers are refused by name")
    func walletOnOneNode() throws {
        let net = try Network(validators: 1)
        defer { net.stopAll() }
        try #require(try net.waitForHeight(1), "\(net.logs)")
        let cli = CLI(dataDirectory: net.directories[0])
        let dev = try #require(try cli.json("wallet", "address", "dev")["address"]?.stringValue)
        let bob = try cli.ok("wallet", "new", "bob").split(separator: "\n").first.map(String.init) ?? ""
        #expect(bob.hasPrefix("mn1") && bob != dev)
        let mode = try FileManager.default.attributesOfItem(atPath: net.directories[0] + "/wallet/bob.json")[.posixPermissions]
        #expect(mode as? Int == 0o600)

        // Two without waiting, back to back: the second takes the nonce after the first, still in the mempool.
        let first = try cli.json("wallet", "transfer", "dev", "bob", "20", "FLX", "--no-wait")
        let second = try cli.json("wallet", "transfer", "dev", "bob", "5", "FLX", "--no-wait")
        #expect(first["status"]?.stringValue == "submitted" && second["status"]?.stringValue == "submitted",
                "\(first) \(second)")
        let sent = try cli.ok("wallet", "transfer", "dev", "bob", "0.5", "FLX")
        #expect(sent.contains("final at height") && sent.contains("0.5 FLX"), "\(sent)")
        let balance = try cli.json("wallet", "balance", bob)
        let flx = balance["balances"]?.arrayValue?.first { $0["denom"]?.stringValue == "FLX" }
        #expect(flx?["amount"]?.stringValue == "25.5", "\(balance)")
        // History is each node's index of finalized blocks, a moment behind finality.
        var history = try cli.json("wallet", "history", "dev")
        let indexed = Date().addingTimeInterval(5)
        while history["entries"]?[0] == nil, Date() < indexed {
            usleep(20_000)
            history = try cli.json("wallet", "history", "dev")
        }
        #expect(history["entries"]?[0]?["direction"]?.stringValue == "sent"
            && history["entries"]?[0]?["counterparty"]?.stringValue == bob, "\(history)")
        let supply = try JSONValue.parse(Array(try net.node(0).get("/v1/plugins/bpi/query/bpci/supply").body))
        #expect(supply["supply"]?[0]?["amount"]?.stringValue == "100000", "GEN is fixed: \(supply)")
        let fees = try JSONValue.parse(Array(try net.node(0).get("/v1/plugins/bpi/query/bpci/fees").body))
        #expect((fees["baseFee"]?["units"]?.intValue ?? 0) >= 1, "\(fees)")

        let refusals: [([String], String)] = [
            (["bob", "dev", "26", "FLX"], "bpci refused it: insufficient FLX: has 25.49"),
            (["bob", "dev", "1", "GEN"], "bpci refused it: insufficient GEN: has 0, needs 1"),
            (["dev", "bob", "0", "FLX"], "the amount must be greater than zero"),
            (["dev", "bob", "1", "XYZ"], "'XYZ' is not a token"),
            (["dev", "bob", "1.0000000001", "FLX"], "is not a FLX amount"),
            (["dev", "mn1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "1", "FLX"], "is not an address"),
            (["dev", "bob", "1", "FLX", "--fee", "0"], "bpci refused it: fee 0 FLX is below the base fee"),
        ]
        for (arguments, expected) in refusals {
            let error = try cli.fails(["wallet", "transfer"] + arguments)
            #expect(error.contains(expected), "\(arguments): \(error)")
        }
        // A multi-send pays everyone or no one.
        let carol = try cli.ok("wallet", "new", "carol").split(separator: "\n").first.map(String.init) ?? ""
        let many = try cli.ok("wallet", "multi-send", "dev", "carol:1.5:FLX", "\(carol):2:GEN")
        #expect(many.contains("final at height"), "\(many)")
        let carolBalances = try cli.json("wallet", "balance", "carol")["balances"]?.arrayValue ?? []
        #expect(carolBalances.map { $0["amount"]?.stringValue ?? "?" } == ["2", "0", "1.5", "0"], "\(carolBalances)")
        let partial = try cli.fails("wallet", "multi-send", "bob", "carol:1:FLX", "dev:1:GEN")
        #expect(partial.contains("insufficient GEN"), "\(partial)")
        let malformed = try cli.fails("wallet", "multi-send", "dev", "carol-1-FLX")
        #expect(malformed.contains("'carol-1-FLX' is not a payment: write TO:AMOUNT:TOKEN"), "\(malformed)")

        let after = try cli.json("wallet", "balance", "bob")
        #expect(after["balances"]?.arrayValue?.first { $0["denom"]?.stringValue == "FLX" }?["amount"]?.stringValue
            == "25.5", "refusals deduct nothing: \(after)")
    }

    @Test("on four validators: a transfer from one node is final and visible on every node; a sealed wallet needs its passphrase")
    func walletOnFourNodes() throws {
        let net = try Network(validators: 4)
        defer { net.stopAll() }
        try #require(try net.waitForHeight(1), "\(net.logs)")
        let first = CLI(dataDirectory: net.directories[0])
        let passphrase = net.scratch.file("passphrase")
        try "correct horse battery staple\n".write(toFile: passphrase, atomically: true, encoding: .utf8)
        let carol = try #require(try first.json("wallet", "new", "carol", "--passphrase-file", passphrase)["address"]?
            .stringValue)
        let sealed = try String(contentsOfFile: net.directories[0] + "/wallet/carol.json", encoding: .utf8)
        #expect(sealed.contains("argon2id13") && !sealed.contains("\"seed\""))

        try first.ok("wallet", "transfer", "dev", carol, "10", "FLX")
        try first.ok("wallet", "transfer", "dev", carol, "3", "AUR")
        for index in 0..<4 {
            let cli = CLI(dataDirectory: net.directories[index])
            var balances: [String: String] = [:]
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline, balances["AUR"] != "3" {
                let answer = try cli.json("wallet", "balance", carol)
                for entry in answer["balances"]?.arrayValue ?? [] {
                    balances[entry["denom"]?.stringValue ?? "?"] = entry["amount"]?.stringValue
                }
                if balances["AUR"] != "3" { usleep(50_000) }
            }
            #expect(balances["FLX"] == "10" && balances["AUR"] == "3", "node \(index): \(balances)")
        }
        let unsealed = try first.fails("wallet", "transfer", "carol", "dev", "1", "AUR")
        #expect(unsealed.contains("wallet 'carol' is sealed"), "\(unsealed)")
        let wrong = net.scratch.file("wrong")
        try "tr0ub4dor&3\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        let refused = try first.fails("wallet", "transfer", "carol", "dev", "1", "AUR", "--passphrase-file", wrong)
        #expect(refused.contains("wrong passphrase"), "\(refused)")
        let paid = try first.ok("wallet", "transfer", "carol", "dev", "1", "AUR", "--passphrase-file", passphrase)
        #expect(paid.contains("final at height"), "\(paid)")
        let top = try net.height(0)
        #expect(try net.waitForHeight(top), "\(net.logs)")
        let hashes = try Set((0..<4).map { try net.blockHash($0, height: top) })
        #expect(hashes.count == 1 && !hashes.contains(nil), "every node has the same block \(top): \(hashes)")
    }
}
