import DockLockCore
import Foundation
import MetanodeWire
import Testing

@Suite("Execution receipts: JSON files")
struct ReceiptJSONTests {
    static let key = ReceiptFixture.node.publicKey

    static func object(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    static func bytes(_ object: Any) throws -> [UInt8] {
        [UInt8](try JSONSerialization.data(withJSONObject: object))
    }

    @Test("a signed receipt survives JSON exactly, and its signature still verifies")
    func roundTrip() throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        let decoded = try SignedReceipt.decodeJSON(try SignedReceipt.json([signed]))
        #expect(decoded == [signed])
        try decoded[0].verify(publicKey: Self.key)
    }

    @Test("one receipt is written as an object with readable fields, the hash and the signature in hex")
    func readableFields() throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        let object = try Self.object(try SignedReceipt.json([signed]))
        #expect(object["version"] as? Int == 1)
        #expect(object["node"] as? String == Hex.encode(Self.key))
        #expect(object["sequence"] as? Int == 0)
        #expect(object["containerId"] as? String == "c-0001")
        #expect(object["imageDigest"] as? String == signed.receipt.imageDigest)
        #expect(object["command"] as? [String] == ["/bin/echo", "hello"])
        #expect(object["outcome"] as? [String: Int] == ["exit": 0])
        #expect((object["profile"] as? [String: Any])?["network"] as? String == "none")
        #expect((object["stdout"] as? [String: Any])?["size"] as? Int == 6)
        #expect(object["hash"] as? String == Hex.encode(signed.hash))
        #expect(object["signature"] as? String == Hex.encode(signed.signature))
    }

    @Test("a signal outcome is written as {\"signal\": n}")
    func signalOutcome() throws {
        var receipt = ReceiptFixture.golden()
        receipt.outcome = .signaled(signal: 9)
        receipt.oomKilled = true
        let signed = try ReceiptFixture.signed(receipt)
        let json = try SignedReceipt.json([signed])
        #expect(try Self.object(json)["outcome"] as? [String: Int] == ["signal": 9])
        #expect(try SignedReceipt.decodeJSON(json) == [signed])
    }

    @Test("a chain is written as an array and read back as one")
    func chainRoundTrip() throws {
        let chain = try ReceiptFixture.chain(5)
        let json = try SignedReceipt.json(chain)
        #expect(json.first == UInt8(ascii: "["))
        let decoded = try SignedReceipt.decodeJSON(json)
        #expect(decoded == chain)
        #expect(try ReceiptChain.verify(decoded, publicKey: Self.key).count == 5)
    }

    @Test("the largest values and non-ASCII text survive JSON exactly")
    func extremes() throws {
        var receipt = ReceiptFixture.golden()
        receipt.sequence = UInt64.max - 1
        receipt.previousHash = [UInt8](repeating: 0xFF, count: 32)
        receipt.profile.memoryBytesMax = .max
        receipt.profile.cpuMillicores = .max
        receipt.usage.ioWriteBytes = .max - 1
        receipt.endedAtMs = .max
        receipt.command = ["/bin/printf", "héllo \u{1F600}", "e\u{301}", "tab\there \"quoted\" back\\slash",
                           "bell\u{7} del\u{7F} line\u{2028}"]
        receipt.hostname = "höst"
        let signed = try ReceiptFixture.signed(receipt)
        let decoded = try SignedReceipt.decodeJSON(try SignedReceipt.json([signed]))
        #expect(decoded[0].receipt.encoded == receipt.encoded)
        try decoded[0].verify(publicKey: Self.key)
    }

    @Test("the file form and the Codable form are the same object, the file's fields in layout order")
    func fileFormIsCodableForm() throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        let file = try SignedReceipt.json([signed])
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let codable = [UInt8](try encoder.encode(signed))
        #expect(try Self.object(file) as NSDictionary == Self.object(codable) as NSDictionary)
        let text = String(decoding: file, as: UTF8.self)
        let keys = ["\"version\"", "\"node\"", "\"sequence\"", "\"previousHash\"", "\"hash\"", "\"containerId\"",
                    "\"profile\"", "\"outcome\"", "\"endedAtMs\"", "\"signature\""]
        let positions = keys.map { text.range(of: $0)?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
    }

    @Test("a field edited in the JSON fails verification on the signature", arguments: [
        "exit", "stdoutSize", "command", "hash only",
    ])
    func tamperedField(_ edit: String) throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        var object = try Self.object(try SignedReceipt.json([signed]))
        switch edit {
        case "exit": object["outcome"] = ["exit": 1]
        case "stdoutSize": object["stdout"] = ["hash": Hex.encode(signed.receipt.stdout.hash), "size": 7]
        case "command": object["command"] = ["/bin/echo", "hellO"]
        default: object["hash"] = String(repeating: "0", count: 64)
        }
        let decoded = try SignedReceipt.decodeJSON(try Self.bytes(object))
        let message = ReceiptFixture.failure { try decoded[0].verify(publicKey: Self.key) }
        if edit == "hash only" {
            // "hash" is for readers; the verifier recomputes it, so the receipt itself is intact.
            #expect(message == nil)
        } else {
            #expect(message?.contains("the signature does not verify") == true, "\(message ?? "verified")")
        }
    }

    @Test("a missing field is named, with its entry in an array")
    func missingField() throws {
        let chain = try ReceiptFixture.chain(3)
        var array = try #require(JSONSerialization.jsonObject(with: Data(try SignedReceipt.json(chain))) as? [Any])
        var entry = try #require(array[2] as? [String: Any])
        var profile = try #require(entry["profile"] as? [String: Any])
        profile["memoryBytesMax"] = nil
        entry["profile"] = profile
        array[2] = entry
        #expect(ReceiptFixture.failure { _ = try SignedReceipt.decodeJSON(try Self.bytes(array)) }
            == "entry 2: profile.memoryBytesMax is missing")
    }

    @Test("a broken field rule is named, with its entry in an array")
    func brokenRule() throws {
        let chain = try ReceiptFixture.chain(2)
        var array = try #require(JSONSerialization.jsonObject(with: Data(try SignedReceipt.json(chain))) as? [Any])
        var entry = try #require(array[1] as? [String: Any])
        entry["user"] = "root"
        array[1] = entry
        #expect(ReceiptFixture.failure { _ = try SignedReceipt.decodeJSON(try Self.bytes(array)) }
            == "entry 1: receipt.user 'root' must be 'uid:gid' in decimal with no leading zeros, such as '1000:1000'")
    }

    @Test("a hash that is not 64 hex digits is named")
    func badHex() throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        var object = try Self.object(try SignedReceipt.json([signed]))
        object["environmentHash"] = "abc"
        #expect(ReceiptFixture.failure { _ = try SignedReceipt.decodeJSON(try Self.bytes(object)) }
            == "environmentHash must be 64 hex digits, not 'abc'")
    }

    @Test("an unknown version is refused")
    func unknownVersion() throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        var object = try Self.object(try SignedReceipt.json([signed]))
        object["version"] = 2
        #expect(ReceiptFixture.failure { _ = try SignedReceipt.decodeJSON(try Self.bytes(object)) }
            == "receipt version 2 is unknown; this build reads version 1")
    }

    @Test("an outcome that is neither exit nor signal is refused")
    func badOutcome() throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        var object = try Self.object(try SignedReceipt.json([signed]))
        object["outcome"] = ["exit": 0, "signal": 9]
        #expect(ReceiptFixture.failure { _ = try SignedReceipt.decodeJSON(try Self.bytes(object)) }
            == "outcome must be {\"exit\": code} or {\"signal\": number}")
    }

    @Test("text that is neither a receipt object nor an array is refused", arguments: [
        ("", "the receipts JSON must be a receipt object or an array of them"),
        ("42", "the receipts JSON must be a receipt object or an array of them"),
        ("[]", "the receipts JSON is an empty array"),
    ])
    func notReceipts(text: String, message: String) {
        #expect(ReceiptFixture.failure { _ = try SignedReceipt.decodeJSON(Array(text.utf8)) } == message)
    }

    @Test("malformed JSON is refused as such")
    func malformed() {
        let message = ReceiptFixture.failure { _ = try SignedReceipt.decodeJSON(Array("{\"version\": ".utf8)) }
        #expect(message?.hasPrefix("the receipts JSON is not valid JSON") == true, "\(message ?? "decoded")")
    }
}
