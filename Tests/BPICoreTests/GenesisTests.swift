import BPICore
import Foundation
import MetanodeWire
import Testing

@Suite("Genesis file")
struct GenesisTests {
    static let key = Ed25519Signer(seed: WireCrypto.domainHash("genesis-test", [])).publicKey

    static func parse(_ parameters: String) throws -> Genesis {
        let text = #"{"chainId": "g", "validators": [{"key": "\#(Hex.encode(key))"}]\#(parameters)}"#
        return try Genesis.parse(Array(text.utf8), source: "test")
    }

    @Test("test transactions are off unless the genesis turns them on, and turning them on changes the chain's hash")
    func testTransactionsAreOptIn() throws {
        let plain = try Self.parse("")
        let explicit = try Self.parse(#", "parameters": {"blockTransactionsMax": 5000, "blockBytesMax": 2097152, "#
            + #""pohTicksPerEntry": 1}"#)
        let on = try Self.parse(#", "parameters": {"blockTransactionsMax": 5000, "blockBytesMax": 2097152, "#
            + #""pohTicksPerEntry": 1, "testTransactions": true}"#)
        #expect(!plain.parameters.testTransactions && !explicit.parameters.testTransactions)
        #expect(on.parameters.testTransactions)
        #expect(plain.parameters.pohTicksPerEntry == 1, "one PoH tick per transaction unless the genesis says")
        #expect(plain.hash == explicit.hash, "a genesis without the flag hashes as before it existed")
        #expect(on.hash != plain.hash)
        #expect(throws: WireError.self) {
            try Self.parse(#", "parameters": {"testTransactions": true}"#)  // the limits are still required
        }
    }
}
