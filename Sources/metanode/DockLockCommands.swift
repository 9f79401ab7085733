import ArgumentParser
import DockLockCore
import Foundation
import MetanodeCore
import MetanodeKernel

/// `metanode docklock …`: containers run by the node (the running daemon starts them; no runtime binary per run).
struct DockLockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docklock",
        abstract: "Run containers with signed execution receipts, and manage their images.",
        subcommands: [DockLockImageCommand.self, Run.self, PS.self, Logs.self, Kill.self, Remove.self, Receipts.self,
                      Verify.self])

    static let apiPrefix = "/v1/plugins/docklock"

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "Run a command in a new container and wait for it (its stdout and stderr are passed through; "
                + "the exit status is the container's).",
            discussion: """
                Example: metanode docklock run busybox -- sh -c 'echo hello'
                With --deterministic: the image by digest, a fixed environment, hostname and user, no network, the
                default limits and one CPU, so `docklock verify` can run it again and compare.
                """)
        @OptionGroup var options: CommonOptions
        @Argument(help: "Image: a tag (busybox, busybox:1), a digest (sha256:…) or a unique digest prefix.")
        var image: String
        @Argument(parsing: .postTerminator, help: "The command and its arguments (default: the image's).")
        var command: [String] = []
        @Option(name: [.customShort("e"), .customLong("env")], help: "NAME=value (repeatable).") var env: [String] = []
        @Option(name: .customLong("workdir")) var workdir: String?
        @Option(name: .customLong("user"), help: "uid[:gid] (names are not looked up).") var user: String?
        @Option(name: .customLong("hostname")) var hostname: String?
        @Option(name: .customLong("network"), help: "none (default) or loopback.") var network: String?
        @Option(name: .customLong("memory"), help: "Memory limit in bytes, or with k/m/g (default 256m).")
        var memory: String?
        @Option(name: .customLong("cpus"), help: "CPU limit in millicores (1000 = one CPU; default 1000).")
        var cpuMillicores: UInt32?
        @Option(name: .customLong("pids"), help: "Process limit (default 256).") var pids: UInt32?
        @Option(name: .customLong("timeout"), help: "Kill after this many milliseconds (default: none).")
        var timeoutMs: UInt64?
        @Option(name: .customLong("stdin"), help: "A file whose bytes become the container's stdin.")
        var stdinFile: String?
        @Flag(name: .customLong("detach"), help: "Start it and print its id; see `ps`, `logs`, `kill`.")
        var detach = false
        @Flag(name: .customLong("deterministic"), help: "Run reproducibly (see above).") var deterministic = false

        func run() async throws {
            var body: [String: JSONValue] = ["image": .string(image)]
            try await Output.run(options) { () throws(MetanodeError) in
                if !command.isEmpty { body["command"] = .array(command.map(JSONValue.string)) }
                if !env.isEmpty { body["env"] = .array(env.map(JSONValue.string)) }
                if let workdir { body["workdir"] = .string(workdir) }
                if let user { body["user"] = .string(user) }
                if let hostname { body["hostname"] = .string(hostname) }
                if let network { body["network"] = .string(network) }
                if let memory { body["memoryBytes"] = .int(Int64(try DockLockCommand.parseBytes(memory))) }
                if let cpuMillicores { body["cpuMillicores"] = .int(Int64(cpuMillicores)) }
                if let pids { body["pids"] = .int(Int64(pids)) }
                if let timeoutMs { body["timeoutMs"] = .int(Int64(timeoutMs)) }
                if let stdinFile {
                    let bytes = try FileIO.read(stdinFile, limit: 16 << 20, what: "stdin file")
                    body["stdin"] = .string(Data(bytes).base64EncodedString())
                }
                if detach { body["detach"] = .bool(true) }
                if deterministic {
                    body["deterministic"] = .bool(true)
                    if !image.hasPrefix("sha256:") {
                        // Pin the digest here, so the receipt and a later verify name exactly this image.
                        let record = try DockLockImageCommand.store(options.dataDirectory).resolve(image)
                        body["image"] = .string(record.digest.description)
                    }
                }
            }
            let data = options.dataDirectory
            var answer: JSONValue = .null
            try await Output.run(options) { () throws(MetanodeError) in
                answer = try DockLockCommand.call(data, "POST", "\(DockLockCommand.apiPrefix)/run",
                                                  body: .object(body), timeoutSeconds: 3700)
            }
            if detach {
                Output.emit(options, json: answer, text: answer["id"]?.stringValue ?? "")
                return
            }
            if options.json {
                Output.emit(options, json: answer, text: "")
            } else {
                for (key, handle) in [("stdout", FileHandle.standardOutput), ("stderr", FileHandle.standardError)] {
                    if let text = answer[key]?.stringValue, let bytes = Data(base64Encoded: text) { handle.write(bytes) }
                }
                if answer["stdoutTruncated"]?.boolValue == true || answer["stderrTruncated"]?.boolValue == true {
                    Output.warn("output was longer than the node returns inline; the receipt hashes all of it")
                }
                if answer["oomKilled"]?.boolValue == true { Output.warn("the container ran out of memory and was killed") }
                if answer["timedOut"]?.boolValue == true { Output.warn("the container was killed at its timeout") }
            }
            if let code = answer["exitCode"]?.intValue, code != 0 { throw ExitCode(Int32(truncatingIfNeeded: code)) }
            if let signal = answer["signal"]?.intValue { throw ExitCode(128 + Int32(truncatingIfNeeded: signal)) }
        }
    }

    struct PS: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ps", abstract: "Running and recently ended containers.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let answer = try RunningNode.get(options.dataDirectory, "\(DockLockCommand.apiPrefix)/containers")
                let rows = (answer["containers"]?.arrayValue ?? []).map { entry -> [String] in
                    let status = entry["exitCode"]?.intValue.map { "exited \($0)" }
                        ?? entry["signal"]?.intValue.map { "killed by signal \($0)" } ?? "running"
                    let command = (entry["command"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")
                    return [entry["id"]?.stringValue ?? "?", String((entry["image"]?.stringValue ?? "?").prefix(19)),
                            status, command]
                }
                Output.emit(options, json: answer, text: Output.table(["ID", "IMAGE", "STATUS", "COMMAND"], rows))
            }
        }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "logs",
            abstract: "A detached container's stdout and stderr (--follow: as it writes them, until it ends).")
        @OptionGroup var options: CommonOptions
        @Argument var id: String
        @Flag(name: [.customShort("f"), .customLong("follow")], help: "Keep printing until the container ends.")
        var follow = false

        func run() async throws {
            var offsets = ["stdout": UInt64(0), "stderr": UInt64(0)]
            var collected: [String: [UInt8]] = ["stdout": [], "stderr": []]
            var truncated: Set<String> = []
            while true {
                var answer: JSONValue = .null
                try await Output.run(options) { () throws(MetanodeError) in
                    answer = try RunningNode.get(options.dataDirectory, "\(DockLockCommand.apiPrefix)/containers/\(id)/logs"
                        + "?stdoutFrom=\(offsets["stdout"]!)&stderrFrom=\(offsets["stderr"]!)")
                }
                var progressed = false
                for (key, handle) in [("stdout", FileHandle.standardOutput), ("stderr", FileHandle.standardError)] {
                    guard let text = answer[key]?.stringValue, let bytes = Data(base64Encoded: text), !bytes.isEmpty
                    else { continue }
                    progressed = true
                    offsets[key] = answer["\(key)Next"]?.uintValue ?? answer["\(key)Next"]?.intValue.map(UInt64.init)
                        ?? offsets[key]! + UInt64(bytes.count)
                    if options.json { collected[key]! += Array(bytes) } else { handle.write(bytes) }
                }
                for key in ["stdout", "stderr"] where answer["\(key)Truncated"]?.boolValue == true { truncated.insert(key) }
                let running = answer["running"]?.boolValue == true
                if progressed { continue }  // more may be waiting beyond the chunk just read
                if !follow || !running { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            if options.json {
                Output.emit(options, json: .object([
                    "id": .string(id), "stdout": .string(Data(collected["stdout"]!).base64EncodedString()),
                    "stderr": .string(Data(collected["stderr"]!).base64EncodedString()),
                    "stdoutTruncated": .bool(truncated.contains("stdout")),
                    "stderrTruncated": .bool(truncated.contains("stderr")),
                ]), text: "")
            } else {
                for key in truncated.sorted() {
                    FileHandle.standardError.write(Data("metanode: the \(key) log stopped at its size limit; the receipt hashes the whole stream\n".utf8))
                }
            }
        }
    }

    struct Kill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kill", abstract: "Stop a running container (SIGKILL unless --signal).")
        @OptionGroup var options: CommonOptions
        @Argument var id: String
        @Option(name: .customLong("signal")) var signal: Int32?

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let query = signal.map { "?signal=\($0)" } ?? ""
                let answer = try RunningNode.post(options.dataDirectory,
                                                  "\(DockLockCommand.apiPrefix)/containers/\(id)/kill\(query)", .object([:]))
                Output.emit(options, json: answer, text: "killed \(id)")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Forget an ended container and its logs.")
        @OptionGroup var options: CommonOptions
        @Argument var id: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let answer = try DockLockCommand.call(options.dataDirectory, "DELETE",
                                                      "\(DockLockCommand.apiPrefix)/containers/\(id)")
                Output.emit(options, json: answer, text: "removed \(id)")
            }
        }
    }

    struct Receipts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "receipts",
            abstract: "The node's signed execution receipts.", subcommands: [List.self, Show.self])

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "list", abstract: "Receipts in sequence order.")
            @OptionGroup var options: CommonOptions
            @Option(name: .customLong("after"), help: "Start after this sequence number.") var after: UInt64?
            @Option(name: .customLong("limit")) var limit: Int = 100

            func run() async throws {
                try await Output.run(options) { () throws(MetanodeError) in
                    var query = "?limit=\(limit)"
                    if let after { query += "&after=\(after)" }
                    let answer = try RunningNode.get(options.dataDirectory, "\(DockLockCommand.apiPrefix)/receipts\(query)")
                    let rows = (answer.arrayValue ?? []).map { receipt -> [String] in
                        let outcome = receipt["outcome"]?["exit"]?.intValue.map { "exit \($0)" }
                            ?? receipt["outcome"]?["signal"]?.intValue.map { "signal \($0)" } ?? "?"
                        return ["\(receipt["sequence"]?.intValue ?? -1)", receipt["containerId"]?.stringValue ?? "?",
                                outcome, (receipt["command"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")]
                    }
                    Output.emit(options, json: answer, text: Output.table(["SEQ", "CONTAINER", "OUTCOME", "COMMAND"], rows))
                }
            }
        }

        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "show",
                abstract: "One receipt as JSON (by sequence, receipt hash or container id); save it and check it "
                    + "offline with `metanode receipt verify FILE --key KEY`.",
                discussion: """
                    With BPI on the node, "ledger" beside the receipt's fields says where the ledger holds it \
                    (status, txId, height, batchIndex) or that it is pending. Once it is in a block, show fetches \
                    the proofs (the batch transaction's Merkle path to the block's transactions root, the block's \
                    seals, and the state proof of docklock/r/<receipt hash>), checks them here, adds them as \
                    "ledger"."proof", and says on stderr that they verified; if one does not, it exits 1. \
                    `receipt verify` ignores "ledger": the output still verifies as a receipt file.
                    """)
            @OptionGroup var options: CommonOptions
            @Argument var reference: String
            @Flag(name: .customLong("no-proof"), help: "Do not fetch and check the ledger's proofs.")
            var noProof = false
            @Option(help: ArgumentHelp("Check block seals against this genesis file's validators (default: bpi's "
                + "genesis file, else the node's current validators)."))
            var genesis: String?

            func run() async throws {
                try await Output.run(options) { () throws(MetanodeError) in
                    let data = options.dataDirectory
                    var answer = try RunningNode.get(data, "\(DockLockCommand.apiPrefix)/receipts/\(reference)")
                    guard !noProof, case .object(var fields) = answer, case .object(var ledger)? = fields["ledger"],
                          ledger["height"] != nil else {
                        print(answer.serialized(pretty: true))
                        if let status = answer["ledger"]?["status"]?.stringValue, status != "anchored" {
                            Output.warn("not in a finalized block yet (\(status))"
                                + (answer["ledger"]?["problem"]?.stringValue.map { ": \($0)" } ?? ""))
                        }
                        return
                    }
                    let receipt: SignedReceipt
                    do throws(DockLockError) {
                        guard let decoded = try SignedReceipt.decodeJSON(answer.serializedBytes()).first else {
                            throw DockLockError(.invalid, "no receipt in the answer")
                        }
                        receipt = decoded
                    } catch { throw ReceiptCommand.failure(error, "the node's receipt \(reference)") }
                    let validators = try ReceiptLedgerProof.validators(data, genesis: genesis)
                    let proof = try ReceiptLedgerProof.check(data, receipt: receipt, ledger: .object(ledger),
                                                            validators: validators)
                    ledger["proof"] = proof
                    fields["ledger"] = .object(ledger)
                    answer = .object(fields)
                    print(answer.serialized(pretty: true))
                    guard proof["verified"]?.boolValue == true else {
                        let problems = (proof["problems"]?.arrayValue ?? []).compactMap(\.stringValue)
                        throw MetanodeError(.integrity, "the ledger's proofs for receipt \(reference) do not verify: "
                            + problems.joined(separator: "; "))
                    }
                    FileHandle.standardError.write(Data("\(proof["summary"]?.stringValue ?? "verified")\n".utf8))
                }
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Run a --deterministic receipt's execution again on this node and compare.",
            discussion: """
                Says "reproducible", or which recorded results differ (outcome, stdout, stderr, oomKilled, timedOut, \
                profile), and exits 1. The receipt's signature is checked first. For another node's receipt, give the \
                run's environment (--env, repeatable) and stdin (--stdin): the receipt holds only their hashes.
                """)
        @OptionGroup var options: CommonOptions
        @Argument(help: "A receipt file (from `docklock receipts show`), or a sequence, receipt hash or container id on this node.")
        var receipt: String
        @Option(name: [.customShort("e"), .customLong("env")], help: "NAME=value (repeatable).") var env: [String] = []
        @Option(name: .customLong("stdin"), help: "The file whose bytes were the run's stdin.") var stdinFile: String?

        func run() async throws {
            var answer: JSONValue = .null
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                var signed: JSONValue
                if FileIO.exists(receipt) {
                    let text = try FileIO.read(receipt, limit: 1 << 20, what: "receipt file")
                    signed = try JSONValue.parse(text)
                    if let first = signed.arrayValue {
                        guard first.count == 1 else {
                            throw MetanodeError(.invalidArgument, "\(receipt) holds \(first.count) receipts; verify runs one")
                        }
                        signed = first[0]
                    }
                } else {
                    signed = try RunningNode.get(data, "\(DockLockCommand.apiPrefix)/receipts/\(receipt)")
                }
                var body: [String: JSONValue] = ["receipt": signed]
                if !env.isEmpty { body["env"] = .array(env.map(JSONValue.string)) }
                if let stdinFile {
                    let bytes = try FileIO.read(stdinFile, limit: 16 << 20, what: "stdin file")
                    body["stdin"] = .string(Data(bytes).base64EncodedString())
                }
                answer = try DockLockCommand.call(data, "POST", "\(DockLockCommand.apiPrefix)/verify", body: .object(body),
                                                  timeoutSeconds: 3700)
                let differ = (answer["differ"]?.arrayValue ?? []).compactMap(\.stringValue)
                let again = answer["repeat"]?["sequence"]?.intValue ?? -1
                Output.emit(options, json: answer, text: differ.isEmpty
                    ? "reproducible: ran again as receipt \(again) with the same outcome, stdout and stderr"
                    : "not reproducible: \(differ.joined(separator: ", ")) differ (the repeat is receipt \(again))")
            }
            if answer["reproducible"]?.boolValue == false { throw ExitCode(1) }
        }
    }

    /// An API call with any method and a long wait (a run answers when the container ends).
    static func call(_ data: DataDirectory, _ method: String, _ path: String, body: JSONValue? = nil,
                     timeoutSeconds: Int = 30) throws(MetanodeError) -> JSONValue {
        let response = try LoopbackHTTPClient.request(method, RunningNode.address(data), path,
                                                      body: body?.serializedBytes() ?? [], timeoutSeconds: timeoutSeconds)
        let value = try? JSONValue.parse(response.body)
        guard response.status < 400 else {
            let code: MetanodeError.Code = response.status == 404 ? .notFound : response.status == 400 ? .invalidArgument : .internal
            throw MetanodeError(code, value?["error"]?.stringValue ?? value?["error"]?["message"]?.stringValue ?? response.text)
        }
        guard let value else { throw MetanodeError(.invalidJSON, "the node answered \(path) with non-JSON") }
        return value
    }

    /// "256m", "1g", "65536".
    static func parseBytes(_ text: String) throws(MetanodeError) -> UInt64 {
        let lower = text.lowercased()
        let units: [(String, UInt64)] = [("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)]
        for (suffix, factor) in units where lower.hasSuffix(suffix) {
            guard let value = UInt64(lower.dropLast()), value <= UInt64.max / factor else { break }
            return value * factor
        }
        guard let value = UInt64(lower) else {
            throw MetanodeError(.invalidArgument, "memory '\(text)' is not a byte count (like 268435456, 256m or 1g)")
        }
        return value
    }
}
