import ArgumentParser
import DockLockCore
import Foundation
import MetanodeCore
import MetanodeCrypto
import MetanodeKernel
import MetanodeWire

/// DockLock's execution receipts, checked offline: no node needs to run, only the receipts file and the node's
/// public key.
struct ReceiptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "receipt", abstract: "DockLock execution receipts: check them offline.",
        discussion: """
            Every container execution on a node yields a receipt signed with the node's key, and each node's \
            receipts form a hash chain (plugin-sdk/docs/wire.md, "DockLock execution receipts").
            """,
        subcommands: [Verify.self])

    /// The biggest key file `--key` reads.
    static let keyFileBytesMax = 4_096

    /// A node public key from `--key`: 64 hex digits, or a file holding them (or a minisign public key file, such as
    /// a data directory's node.pub).
    static func nodeKey(_ text: String) throws(MetanodeError) -> [UInt8] {
        if text.utf8.count == 2 * WireCrypto.publicKeyBytes, let key = Hex.decode(text) { return key }
        guard FileIO.exists(text) else {
            throw MetanodeError(.invalidArgument, "--key '\(text.prefix(100))' is neither 64 hex digits (a node's "
                + "Ed25519 public key) nor a file holding them")
        }
        let contents = String(decoding: try FileIO.read(text, limit: keyFileBytesMax, what: "key file"), as: UTF8.self)
        let trimmed = contents.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.utf8.count == 2 * WireCrypto.publicKeyBytes, let key = Hex.decode(trimmed) { return key }
        if let minisign = try? MinisignPublicKey.parse(contents) { return minisign.key.bytes }
        throw MetanodeError(.invalidArgument, "key file \(text) holds neither 64 hex digits (a node's Ed25519 public "
            + "key) nor a minisign public key")
    }

    /// A DockLock failure as the CLI reports it, prefixed with where it happened.
    static func failure(_ error: DockLockError, _ prefix: String) -> MetanodeError {
        let code: MetanodeError.Code = switch error.code {
        case .integrity: .integrity
        case .limit: .limitExceeded
        case .notFound: .notFound
        case .exists: .alreadyExists
        case .unsupported, .system: .internal
        case .invalid: .invalidArgument
        }
        return MetanodeError(code, "\(prefix): \(error.message)")
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check a receipts file's signatures and hash chain against a node's key.",
            discussion: """
                Needs no node. FILE holds one receipt (a JSON object) or a node's receipts in order (a JSON \
                array), as DockLock writes them. Checks each receipt's fields and signature, that each names the \
                key's node, that the sequences follow one another, and that each receipt carries the hash of the \
                one before. A file that starts after sequence 0 is checked as a fragment: its first receipt's link \
                to its predecessor cannot be. Prints the first failure and exits 1 if there is one.
                """)
        @OptionGroup var options: CommonOptions
        @Argument(help: "The receipts file (JSON: one receipt object, or an array of them).") var file: String
        @Option(help: "The node's public key: 64 hex digits, or a file holding them (or the node's node.pub).")
        var key: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let publicKey = try ReceiptCommand.nodeKey(key)
                let bytes = try FileIO.read(file, limit: SignedReceipt.jsonBytesMax, what: "receipts file")
                let receipts: [SignedReceipt]
                do throws(DockLockError) { receipts = try SignedReceipt.decodeJSON(bytes) } catch {
                    throw ReceiptCommand.failure(error, file)
                }
                let verified: ReceiptChain.Verified
                do throws(DockLockError) { verified = try ReceiptChain.verify(receipts, publicKey: publicKey) } catch {
                    throw ReceiptCommand.failure(error, "\(file): not valid")
                }
                let noun = verified.count == 1 ? "1 receipt, sequence \(verified.firstSequence)"
                    : "\(verified.count) receipts, sequences \(verified.firstSequence)…\(verified.lastSequence)"
                let fragment = verified.anchored ? ""
                    : "\n(a fragment: receipt sequence \(verified.firstSequence)'s link to sequence "
                        + "\(verified.firstSequence - 1) is not in the file, so it was not checked)"
                Output.emit(options, json: .object([
                    "valid": .bool(true), "receipts": .int(Int64(verified.count)),
                    "firstSequence": .uint(verified.firstSequence), "lastSequence": .uint(verified.lastSequence),
                    "node": .string(Hex.encode(verified.node)), "anchored": .bool(verified.anchored),
                    "lastHash": .string(Hex.encode(verified.state.lastHash)),
                ]), text: "valid: \(noun), signed by \(Hex.encode(verified.node))\(fragment)")
            }
        }
    }
}
