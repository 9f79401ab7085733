import DockLockCore
import MetanodeWire
import Testing

/// Receipts and keys the receipt tests share.
enum ReceiptFixture {
    /// The golden vector's node key: seed 00 01 … 1f.
    static let node = Ed25519Signer(seed: Array(0..<32))
    static let stranger = Ed25519Signer(seed: [UInt8](repeating: 0x42, count: 32))

    static let profile = ExecutionProfile(
        seccompProfileHash: [UInt8](repeating: 0xAA, count: 32), memoryBytesMax: 256 << 20, cpuMillicores: 500,
        pidsMax: 64, network: .none, readOnlyRoot: true, deterministic: true, timeoutMs: 10_000)

    static let environment = ["PATH=/usr/bin:/bin", "HOME=/root"]

    /// The golden vector (plugin-sdk/docs/wire.md): `/bin/echo hello`, sequence 0.
    static func golden() -> ExecutionReceipt {
        ExecutionReceipt(
            node: node.publicKey, sequence: 0, previousHash: ExecutionReceipt.zeroHash, containerID: "c-0001",
            imageDigest: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            command: ["/bin/echo", "hello"], environmentHash: ExecutionReceipt.environmentHash(environment),
            hostname: "docklock", user: "1000:1000", workingDirectory: "/", profile: profile,
            stdin: .empty, stdout: StreamDigest(of: Array("hello\n".utf8)), stderr: .empty,
            outcome: .exited(code: 0), oomKilled: false, timedOut: false,
            usage: ResourceUsage(cpuMs: 3, peakMemoryBytes: 1 << 20, pidsPeak: 1, ioReadBytes: 0, ioWriteBytes: 0),
            startedAtMs: 1_700_000_000_000, endedAtMs: 1_700_000_000_012)
    }

    /// The golden receipt at `sequence` after `previousHash`, with a distinct container and times.
    static func receipt(sequence: UInt64, previousHash: [UInt8], signer: Ed25519Signer = node) -> ExecutionReceipt {
        var receipt = golden()
        receipt.node = signer.publicKey
        receipt.sequence = sequence
        receipt.previousHash = previousHash
        receipt.containerID = "c-\(sequence)"
        receipt.startedAtMs += sequence * 1_000
        receipt.endedAtMs += sequence * 1_000
        return receipt
    }

    static func signed(_ receipt: ExecutionReceipt, by signer: Ed25519Signer = node) throws -> SignedReceipt {
        try SignedReceipt.sign(receipt, with: signer)
    }

    /// A chain of `count` receipts from sequence 0, built as the plugin builds them: `State.next`, sign, `record`.
    static func chain(_ count: Int) throws -> [SignedReceipt] {
        var state = ReceiptChain.State.start(node: node.publicKey)
        var receipts: [SignedReceipt] = []
        for index in 0..<count {
            let base = golden()
            let receipt = try state.next(
                containerID: "c-\(index)", imageDigest: base.imageDigest, command: ["/bin/sh", "-c", "exit \(index)"],
                environmentHash: base.environmentHash, hostname: base.hostname, user: base.user,
                workingDirectory: base.workingDirectory, profile: base.profile, stdin: base.stdin,
                stdout: base.stdout, stderr: base.stderr, outcome: .exited(code: Int32(index)), oomKilled: false,
                timedOut: false, usage: base.usage, startedAtMs: base.startedAtMs + UInt64(index) * 1_000,
                endedAtMs: base.endedAtMs + UInt64(index) * 1_000)
            receipts.append(try signed(receipt))
            try state.record(receipt)
        }
        return receipts
    }

    /// The message of the DockLockError `body` throws, or nil if it throws none.
    static func failure(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as DockLockError {
            return error.message
        } catch {
            return "not a DockLockError: \(error)"
        }
    }
}

/// One change to one field, for the tables below.
struct ReceiptMutation: Sendable, CustomTestStringConvertible {
    let field: String
    let change: @Sendable (inout ExecutionReceipt) -> Void

    var testDescription: String { field }

    static let all: [ReceiptMutation] = [
        .init(field: "node") { $0.node = ReceiptFixture.stranger.publicKey },
        .init(field: "sequence") { $0.sequence = 1 },
        .init(field: "previousHash") {
            $0.sequence = 1
            $0.previousHash[31] = 1
        },
        .init(field: "containerID") { $0.containerID = "c-0002" },
        .init(field: "imageDigest") { $0.imageDigest = "sha256:" + String(repeating: "0", count: 64) },
        .init(field: "command argument") { $0.command[1] = "hellp" },
        .init(field: "command count") { $0.command.append("") },
        .init(field: "command split") { $0.command = ["/bin/echo hello"] },
        .init(field: "environmentHash") { $0.environmentHash = ExecutionReceipt.environmentHash(["A=1"]) },
        .init(field: "hostname") { $0.hostname = "" },
        .init(field: "user") { $0.user = "0:0" },
        .init(field: "workingDirectory") { $0.workingDirectory = "/tmp" },
        .init(field: "profile.seccompProfileHash") { $0.profile.seccompProfileHash[0] = 0 },
        .init(field: "profile.memoryBytesMax") { $0.profile.memoryBytesMax += 1 },
        .init(field: "profile.cpuMillicores") { $0.profile.cpuMillicores = 1_000 },
        .init(field: "profile.pidsMax") { $0.profile.pidsMax = 65 },
        .init(field: "profile.network") { $0.profile.network = .loopback },
        .init(field: "profile.readOnlyRoot") { $0.profile.readOnlyRoot = false },
        .init(field: "profile.deterministic") { $0.profile.deterministic = false },
        .init(field: "profile.timeoutMs") { $0.profile.timeoutMs = 0 },
        .init(field: "stdin.hash") { $0.stdin.hash[5] ^= 1 },
        .init(field: "stdin.size") { $0.stdin.size = 1 },
        .init(field: "stdout.hash") { $0.stdout.hash[31] ^= 0x80 },
        .init(field: "stdout.size") { $0.stdout.size = 5 },
        .init(field: "stderr.hash") { $0.stderr.hash[0] ^= 1 },
        .init(field: "stderr.size") { $0.stderr.size = 1 << 40 },
        .init(field: "outcome code") { $0.outcome = .exited(code: 1) },
        .init(field: "outcome kind") { $0.outcome = .signaled(signal: 9) },
        .init(field: "oomKilled") { $0.oomKilled = true },
        .init(field: "timedOut") { $0.timedOut = true },
        .init(field: "usage.cpuMs") { $0.usage.cpuMs = 4 },
        .init(field: "usage.peakMemoryBytes") { $0.usage.peakMemoryBytes -= 1 },
        .init(field: "usage.pidsPeak") { $0.usage.pidsPeak = 2 },
        .init(field: "usage.ioReadBytes") { $0.usage.ioReadBytes = 1 },
        .init(field: "usage.ioWriteBytes") { $0.usage.ioWriteBytes = 1 },
        .init(field: "startedAtMs") { $0.startedAtMs -= 1 },
        .init(field: "endedAtMs") { $0.endedAtMs += 1 },
    ]
}

@Suite("Execution receipts: encoding, hash, signature")
struct ReceiptTests {
    @Test("a receipt decodes to itself")
    func roundTrip() throws {
        let receipt = ReceiptFixture.golden()
        #expect(try ExecutionReceipt.decode(receipt.encoded) == receipt)
    }

    @Test("a signed receipt decodes to itself, signature included")
    func signedRoundTrip() throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        #expect(try SignedReceipt.decode(signed.encoded) == signed)
        #expect(signed.encoded.count == signed.receipt.encoded.count + 64)
    }

    @Test("the hash is BLAKE2b-256 of the signed message, which is the domain, a zero byte and the encoding")
    func hashDefinition() {
        let receipt = ReceiptFixture.golden()
        #expect(receipt.signedMessage == Array("metanode/docklock/receipt/v1".utf8) + [0] + receipt.encoded)
        #expect(receipt.hash == WireCrypto.blake2b256(receipt.signedMessage))
    }

    @Test("the node key signs the host's plugin scope around the signed message, under the name docklock")
    func signingBytes() throws {
        let receipt = ReceiptFixture.golden()
        #expect(receipt.signingBytes == Array("metanode/plugin-sig/v1".utf8) + [0] + Array("docklock".utf8) + [0]
            + receipt.signedMessage)
        let signed = try ReceiptFixture.signed(receipt)
        #expect(NodeSignature.verify(signature: signed.signature, nodeKey: ReceiptFixture.node.publicKey,
                                     plugin: "docklock", message: receipt.signedMessage))
    }

    @Test("changing any field changes the hash", arguments: ReceiptMutation.all)
    func hashCoversField(_ mutation: ReceiptMutation) throws {
        let original = ReceiptFixture.golden()
        var changed = original
        mutation.change(&changed)
        try changed.checkFields()
        #expect(changed != original)
        #expect(changed.hash != original.hash)
    }

    @Test("an exit code and a signal of the same number hash differently")
    func outcomeKindIsHashed() {
        var exited = ReceiptFixture.golden()
        exited.outcome = .exited(code: 9)
        var signaled = exited
        signaled.outcome = .signaled(signal: 9)
        #expect(exited.hash != signaled.hash)
    }

    @Test("a signature verifies with the node's key")
    func signatureVerifies() throws {
        let signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        try signed.verify(publicKey: ReceiptFixture.node.publicKey)
    }

    @Test("changing any field after signing fails verification", arguments: ReceiptMutation.all)
    func signatureCoversField(_ mutation: ReceiptMutation) throws {
        var signed = try ReceiptFixture.signed(ReceiptFixture.golden())
        mutation.change(&signed.receipt)
        let message = ReceiptFixture.failure { try signed.verify(publicKey: ReceiptFixture.node.publicKey) }
        let expected = mutation.field == "node" ? "the receipt names node" : "the signature does not verify"
        #expect(message?.contains(expected) == true, "\(message ?? "verified")")
    }

    @Test("a flipped bit in any byte of a signed receipt is refused, by decoding or by the signature")
    func everyByteIsCovered() throws {
        let encoded = try ReceiptFixture.signed(ReceiptFixture.golden()).encoded
        for index in encoded.indices {
            var flipped = encoded
            flipped[index] ^= 0x01
            let message = ReceiptFixture.failure {
                try SignedReceipt.decode(flipped).verify(publicKey: ReceiptFixture.node.publicKey)
            }
            #expect(message != nil, "flipping byte \(index) went unnoticed")
        }
    }

    @Test("a receipt signed by another key does not verify with the node's key")
    func wrongKeyFails() throws {
        var receipt = ReceiptFixture.golden()
        receipt.node = ReceiptFixture.stranger.publicKey
        let forged = SignedReceipt(receipt: ReceiptFixture.golden(),
                                   signature: ReceiptFixture.stranger.sign(ReceiptFixture.golden().signingBytes))
        #expect(ReceiptFixture.failure { try forged.verify(publicKey: ReceiptFixture.node.publicKey) }?
            .contains("the signature does not verify") == true)
        let honest = try ReceiptFixture.signed(receipt, by: ReceiptFixture.stranger)
        #expect(ReceiptFixture.failure { try honest.verify(publicKey: ReceiptFixture.node.publicKey) }?
            .hasPrefix("the receipt names node") == true)
    }

    @Test("a signature made without the plugin scope does not verify")
    func bareSignatureFails() throws {
        let receipt = ReceiptFixture.golden()
        let bare = SignedReceipt(receipt: receipt, signature: ReceiptFixture.node.sign(receipt.signedMessage))
        #expect(throws: DockLockError.self) { try bare.verify(publicKey: ReceiptFixture.node.publicKey) }
    }

    @Test("signing refuses a receipt that names another node")
    func signRefusesOtherNode() {
        var receipt = ReceiptFixture.golden()
        receipt.node = ReceiptFixture.stranger.publicKey
        #expect(throws: DockLockError.self) { try SignedReceipt.sign(receipt, with: ReceiptFixture.node) }
    }

    /// The vector in plugin-sdk/docs/wire.md, "DockLock execution receipts": another implementation must produce
    /// these bytes from the same inputs.
    @Test("golden vector: seed 00..1f, /bin/echo hello, sequence 0")
    func goldenVector() throws {
        let receipt = ReceiptFixture.golden()
        #expect(Hex.encode(receipt.node) == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
        #expect(Hex.encode(receipt.environmentHash) == Self.goldenEnvironmentHash)
        #expect(Hex.encode(receipt.stdout.hash) == "93becc6e9882211c3ec3708c95bcd69baab7bb59c7f4bc84ce637b88a534b783")
        #expect(Hex.encode(receipt.stdin.hash) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8")
        #expect(Hex.encode(receipt.encoded) == Self.goldenEncoding)
        #expect(Hex.encode(receipt.hash) == Self.goldenHash)
        let signed = try ReceiptFixture.signed(receipt)
        #expect(Hex.encode(signed.signature) == Self.goldenSignature)
    }

    static let goldenEnvironmentHash = "a016dc9887321009c07dee687bf50e80c1f9e490444edd420dc861b70cc32036"
    /// Field by field, as wire.md lists it.
    static let goldenEncoding = "01"
        + "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
        + "0000000000000000"
        + "0000000000000000000000000000000000000000000000000000000000000000"
        + "0006632d30303031"
        + "0047" + "7368613235363a" + "6533623063343432393866633163313439616662663463383939366662393234"
        + "3237616534316534363439623933346361343935393931623738353262383535"
        + "0002" + "00092f62696e2f6563686f" + "000568656c6c6f"
        + goldenEnvironmentHash
        + "0008646f636b6c6f636b" + "0009313030303a31303030" + "00012f"
        + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + "0000000010000000" + "000001f4"
        + "00000040" + "00" + "01" + "01" + "0000000000002710"
        + "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8" + "0000000000000000"
        + "93becc6e9882211c3ec3708c95bcd69baab7bb59c7f4bc84ce637b88a534b783" + "0000000000000006"
        + "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8" + "0000000000000000"
        + "00" + "00000000" + "00" + "00"
        + "0000000000000003" + "0000000000100000" + "0000000000000001" + "0000000000000000" + "0000000000000000"
        + "0000018bcfe56800" + "0000018bcfe5680c"
    static let goldenHash = "03193ccfd025c23647f8f57619a84a5bfefe6631562aaecf82d2ffd10b7d0d28"
    static let goldenSignature = "a65b7e8f6a4f89d41659afbae19a59d26e6e1afdc27c7847fd541b5e0d615ea7"
        + "4e1437f298d93d48e7ccdc38a373a13e5ffe650831a1a8d9154c71a6a860040c"
}

@Suite("Execution receipts: decoding refuses bad bytes")
struct ReceiptDecodingTests {
    static func expectRefused(_ bytes: [UInt8], _ message: String, code: DockLockError.Code = .invalid,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let receipt = try ExecutionReceipt.decode(bytes)
            Issue.record("decoded \(receipt.containerID); expected: \(message)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.message == message, sourceLocation: sourceLocation)
            #expect(error.code == code, sourceLocation: sourceLocation)
        }
    }

    @Test("every truncation of a receipt is refused, naming the field it ends inside")
    func truncation() {
        let encoded = ReceiptFixture.golden().encoded
        for count in 0..<encoded.count {
            #expect(throws: DockLockError.self) { try ExecutionReceipt.decode(Array(encoded.prefix(count))) }
        }
        Self.expectRefused(Array(encoded.prefix(10)), "receipt ends inside node: needs 32 byte(s), 9 left")
        Self.expectRefused(Array(encoded.dropLast()), "receipt ends inside endedAtMs: needs 8 byte(s), 7 left")
    }

    @Test("trailing bytes are refused")
    func trailingBytes() {
        Self.expectRefused(ReceiptFixture.golden().encoded + [0], "receipt has 1 byte(s) after its last field")
    }

    @Test("a signed receipt with trailing bytes is refused")
    func signedTrailingBytes() throws {
        let encoded = try ReceiptFixture.signed(ReceiptFixture.golden()).encoded
        #expect(ReceiptFixture.failure { _ = try SignedReceipt.decode(encoded + [7]) }
            == "receipt has 1 byte(s) after its last field")
    }

    @Test("an unknown version is refused")
    func wrongVersion() {
        var encoded = ReceiptFixture.golden().encoded
        encoded[0] = 2
        Self.expectRefused(encoded, "receipt version 2 is unknown; this build reads version 1")
    }

    @Test("an argument longer than commandArgumentBytesMax is refused when decoding")
    func longArgumentDecoding() {
        var receipt = ReceiptFixture.golden()
        receipt.command[1] = String(repeating: "x", count: ExecutionReceipt.commandArgumentBytesMax + 1)
        Self.expectRefused(receipt.encoded, "receipt.command[1] is 4097 bytes; at most 4096", code: .limit)
    }

    @Test("a command over commandBytesMax in all is refused when decoding")
    func longCommandDecoding() {
        var receipt = ReceiptFixture.golden()
        receipt.command = ["/bin/x"] + Array(repeating: String(repeating: "x", count: 4_096), count: 16)
        Self.expectRefused(receipt.encoded, "receipt.command is more than 65536 bytes in all (at argument 16)",
                           code: .limit)
    }

    @Test("more arguments than commandArgumentsMax are refused when decoding")
    func manyArgumentsDecoding() {
        var receipt = ReceiptFixture.golden()
        receipt.command = Array(repeating: "x", count: ExecutionReceipt.commandArgumentsMax + 1)
        Self.expectRefused(receipt.encoded, "receipt.command has 1025 items; at most 1024", code: .limit)
    }

    @Test("an argument count larger than the bytes left is refused before reading")
    func argumentCountBeyondBytes() {
        let encoded = ReceiptFixture.golden().encoded
        // version, node, sequence, previousHash, containerID "c-0001", imageDigest: the command count comes next.
        let countOffset = 1 + 32 + 8 + 32 + (2 + 6) + (2 + 71)
        var bytes = Array(encoded.prefix(countOffset))
        bytes += [0x03, 0xFF]
        Self.expectRefused(bytes, "receipt.command claims 1023 items but only 0 bytes remain")
    }

    @Test("more bytes than encodedBytesMax are refused before reading a field")
    func oversizedInput() {
        let bytes = [UInt8](repeating: 1, count: ExecutionReceipt.encodedBytesMax + 1)
        Self.expectRefused(bytes, "a receipt is \(bytes.count) bytes; at most \(ExecutionReceipt.encodedBytesMax)",
                           code: .limit)
    }

    @Test("a malformed image digest is refused, naming the field")
    func badImageDigest() {
        var receipt = ReceiptFixture.golden()
        receipt.imageDigest = "sha256:" + String(repeating: "G", count: 64)
        Self.expectRefused(receipt.encoded, "receipt.imageDigest '\(receipt.imageDigest)' must be 'sha256:' and 64 "
            + "lowercase hex digits")
    }

    @Test("an unknown network mode is refused, naming the field")
    func badNetwork() {
        var encoded = ReceiptFixture.golden().encoded
        let offset = 1 + 32 + 8 + 32 + (2 + 6) + (2 + 71) + 2 + (2 + 9) + (2 + 5) + 32 + (2 + 8) + (2 + 9) + (2 + 1)
            + 32 + 8 + 4 + 4
        #expect(encoded[offset] == 0)
        encoded[offset] = 2
        Self.expectRefused(encoded, "receipt.profile.network is 2; it is 0 (none) or 1 (loopback)")
    }

    @Test("a flag other than 0 or 1 is refused")
    func badFlag() {
        var encoded = ReceiptFixture.golden().encoded
        // oomKilled sits before usage (5 × u64) and the two times (2 × u64).
        let offset = encoded.count - 7 * 8 - 2
        encoded[offset] = 2
        Self.expectRefused(encoded, "receipt.oomKilled is 2; a flag is 0 or 1")
    }
}

@Suite("Execution receipts: field rules")
struct ReceiptFieldTests {
    @Test("the golden receipt follows every rule")
    func goldenIsValid() throws {
        try ReceiptFixture.golden().checkFields()
    }

    @Test("a broken rule is refused with the field named", arguments: [
        ("containerID", "receipt.containerID '' must be 1-128 characters of A-Z, a-z, 0-9, '-', '_' or '.'"),
        ("command", "receipt.command is empty; it needs at least argv[0]"),
        ("argv0", "receipt.command[0] is empty; it names the program"),
        ("nul", "receipt.command[1] holds a NUL byte"),
        ("user", "receipt.user '1000' must be 'uid:gid' in decimal with no leading zeros, such as '1000:1000'"),
        ("userZeros", "receipt.user '01:1' must be 'uid:gid' in decimal with no leading zeros, such as '1000:1000'"),
        ("workingDirectory",
         "receipt.workingDirectory 'tmp' must be an absolute path of at most 4096 bytes with no NUL"),
        ("exit", "receipt.outcome: an exit code is 0-255, not 256"),
        ("signal", "receipt.outcome: a signal is 1-64, not 0"),
        ("times", "receipt.endedAtMs 1699999999999 is before startedAtMs 1700000000000"),
        ("previousHash", "receipt.previousHash is " + String(repeating: "01", count: 32)
            + "; sequence 0 has none, so it must be 32 zero bytes"),
        ("node", "receipt.node is 31 bytes; an Ed25519 public key is 32"),
        ("stdout", "receipt.stdout.hash is 0 bytes; a BLAKE2b-256 hash is 32"),
        ("sequence", "receipt.sequence is 18446744073709551615; the last a chain can use is 18446744073709551614"),
    ])
    func brokenRule(field: String, message: String) {
        var receipt = ReceiptFixture.golden()
        switch field {
        case "containerID": receipt.containerID = ""
        case "command": receipt.command = []
        case "argv0": receipt.command[0] = ""
        case "nul": receipt.command[1] = "a\0b"
        case "user": receipt.user = "1000"
        case "userZeros": receipt.user = "01:1"
        case "workingDirectory": receipt.workingDirectory = "tmp"
        case "exit": receipt.outcome = .exited(code: 256)
        case "signal": receipt.outcome = .signaled(signal: 0)
        case "times": receipt.endedAtMs = receipt.startedAtMs - 1
        case "previousHash": receipt.previousHash = [UInt8](repeating: 1, count: 32)
        case "node": receipt.node.removeLast()
        case "stdout": receipt.stdout.hash = []
        case "sequence":
            receipt.sequence = .max
            receipt.previousHash = [UInt8](repeating: 1, count: 32)
        default: Issue.record("no such case \(field)")
        }
        #expect(ReceiptFixture.failure { try receipt.checkFields() } == message)
    }

    @Test("a command with more than commandArgumentsMax arguments is over the limit")
    func tooManyArguments() {
        var receipt = ReceiptFixture.golden()
        receipt.command = Array(repeating: "x", count: ExecutionReceipt.commandArgumentsMax + 1)
        do {
            try receipt.checkFields()
            Issue.record("accepted \(receipt.command.count) arguments")
        } catch {
            #expect(error.code == .limit)
            #expect(error.message == "receipt.command has 1025 arguments; at most 1024")
        }
    }

    @Test("an argument longer than commandArgumentBytesMax is over the limit")
    func argumentTooLong() {
        var receipt = ReceiptFixture.golden()
        receipt.command[0] = "/" + String(repeating: "x", count: ExecutionReceipt.commandArgumentBytesMax)
        #expect(ReceiptFixture.failure { try receipt.checkFields() }
            == "receipt.command[0] is 4097 bytes; at most 4096")
    }

    @Test("a command longer than commandBytesMax in all is over the limit")
    func commandTooLong() {
        var receipt = ReceiptFixture.golden()
        receipt.command = ["/bin/x"] + Array(repeating: String(repeating: "y", count: 4_096), count: 16)
        #expect(ReceiptFixture.failure { try receipt.checkFields() }
            == "receipt.command is 65542 bytes in all; at most 65536")
    }

    @Test("the largest receipt the rules allow encodes within encodedBytesMax and decodes")
    func largestReceipt() throws {
        var receipt = ReceiptFixture.golden()
        receipt.containerID = String(repeating: "c", count: ExecutionReceipt.containerIDBytesMax)
        receipt.command = Array(repeating: "z", count: ExecutionReceipt.commandArgumentsMax - 16)
            + Array(repeating: String(repeating: "y", count: 4_032), count: 16)
        receipt.hostname = String(repeating: "h", count: ExecutionReceipt.hostnameBytesMax)
        receipt.user = "4294967295:4294967295"
        receipt.workingDirectory = "/" + String(repeating: "w", count: ExecutionReceipt.workingDirectoryBytesMax - 1)
        try receipt.checkFields()
        #expect(ExecutionReceipt.encodedBytesMax == 72_323)  // as wire.md says
        #expect(receipt.encoded.count <= ExecutionReceipt.encodedBytesMax)
        #expect(try ExecutionReceipt.decode(receipt.encoded) == receipt)
    }
}

@Suite("Execution receipts: environment hash")
struct ReceiptEnvironmentTests {
    @Test("the environment hash does not depend on the order of the entries")
    func orderIndependent() {
        let environment = ["PATH=/usr/bin", "HOME=/root", "LANG=C.UTF-8", "TERM=xterm"]
        let hash = ExecutionReceipt.environmentHash(environment)
        #expect(ExecutionReceipt.environmentHash(environment.reversed()) == hash)
        #expect(ExecutionReceipt.environmentHash([environment[2], environment[0], environment[3], environment[1]])
            == hash)
    }

    @Test("the environment hash changes with any entry, and duplicates count")
    func contentDependent() {
        let base = ExecutionReceipt.environmentHash(["A=1", "B=2"])
        #expect(ExecutionReceipt.environmentHash(["A=1", "B=3"]) != base)
        #expect(ExecutionReceipt.environmentHash(["A=1"]) != base)
        #expect(ExecutionReceipt.environmentHash(["A=1", "B=2", "B=2"]) != base)
        #expect(ExecutionReceipt.environmentHash(["A=1B=2"]) != base)
        #expect(ExecutionReceipt.environmentHash([]) != base)
    }

    @Test("the environment hash is the domain hash of the sorted, length-prefixed entries")
    func definition() {
        var writer = WireWriter()
        writer.u32(2)
        writer.bytes32(Array("HOME=/root".utf8))
        writer.bytes32(Array("PATH=/usr/bin:/bin".utf8))
        #expect(ExecutionReceipt.environmentHash(ReceiptFixture.environment)
            == WireCrypto.domainHash("metanode/docklock/environment/v1", writer.bytes))
    }

    @Test("entries sort by their UTF-8 bytes, not by Unicode collation")
    func byteOrder() {
        // "Z" (0x5A) sorts before "a" (0x61), and "é" (0xC3 0xA9) after both.
        var writer = WireWriter()
        writer.u32(3)
        for entry in ["Z=1", "a=1", "é=1"] { writer.bytes32(Array(entry.utf8)) }
        #expect(ExecutionReceipt.environmentHash(["é=1", "a=1", "Z=1"])
            == WireCrypto.domainHash("metanode/docklock/environment/v1", writer.bytes))
    }
}
