import ArgumentParser
import Foundation
import MetanodeCore
import MetanodeKernel

@main
struct Metanode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metanode",
        abstract: "A node daemon that hosts feature plugins through one versioned C ABI.",
        discussion: """
            Quick start (development):
              metanode node init --dev     create a data directory with the bundled plugins enabled
              metanode node start          run the node (HTTP API on 127.0.0.1:7700)
              metanode plugin list         see what is installed and enabled

            Every command takes --data-dir (default $METANODE_DATA_DIR or ~/.metanode) and --json.
            """,
        version: MetanodeCLIVersion.current,
        subcommands: [NodeCommand.self, PluginCommand.self, NetCommand.self, ChainCommand.self, WalletCommand.self,
                      DockLockCommand.self, ReceiptCommand.self, TrustCommand.self, BenchCommand.self])
}

enum MetanodeCLIVersion {
    static let current = "0.1.0"
}

/// Options every command shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "The node's data directory (default: $METANODE_DATA_DIR or ~/.metanode).")
    var dataDir: String?

    @Flag(name: .customLong("json"), help: "Print machine-readable JSON instead of text.")
    var json = false

    var dataDirectory: DataDirectory { DataDirectory(dataDir ?? DataDirectory.defaultRoot()) }
}

/// Prints a result as text or JSON, and errors as `error: …` (or {"error": …} with --json) with exit status 1.
enum Output {
    static func emit(_ options: CommonOptions, json: JSONValue, text: @autoclosure () -> String) {
        if options.json {
            print(json.serialized(pretty: true))
        } else {
            let rendered = text()
            if !rendered.isEmpty { print(rendered) }
        }
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
    }

    /// Runs a command body, turning a MetanodeError into a clear message and exit status 1.
    static func run(_ options: CommonOptions, _ body: () async throws(MetanodeError) -> Void) async throws {
        do {
            try await body()
        } catch {
            if options.json {
                print(JSONValue.object(["error": .object([
                    "code": .string(error.code.description), "message": .string(error.message),
                ])]).serialized(pretty: true))
            } else {
                FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            }
            throw ExitCode(1)
        }
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}

/// Talks to the running node's HTTP API (address from <data>/run/http.addr).
enum RunningNode {
    static func address(_ data: DataDirectory) throws(MetanodeError) -> String {
        guard let address = data.runningNodeAddress() else {
            throw MetanodeError(.notFound, "no node is running from \(data.root) (start it with "
                + "`metanode node start --data-dir \(data.root)`)")
        }
        return address
    }

    static func get(_ data: DataDirectory, _ path: String) throws(MetanodeError) -> JSONValue {
        let response = try LoopbackHTTPClient.request("GET", address(data), path)
        return try decode(response, path)
    }

    static func post(_ data: DataDirectory, _ path: String, _ body: JSONValue) throws(MetanodeError) -> JSONValue {
        let response = try LoopbackHTTPClient.request("POST", address(data), path, body: body.serializedBytes())
        return try decode(response, path)
    }

    private static func decode(_ response: LoopbackHTTPClient.Response, _ path: String) throws(MetanodeError)
        -> JSONValue
    {
        let value = try? JSONValue.parse(response.body)
        if response.status >= 400 {
            // The kernel answers {"error": {"code", "message"}}; plugins such as BPI answer {"error": "message"}.
            let message = value?["error"]?["message"]?.stringValue ?? value?["error"]?.stringValue ?? response.text
            let byStatus: MetanodeError.Code = switch response.status {
            case 404: .notFound
            case 400: .invalidArgument
            default: .internal
            }
            let code = value?["error"]?["code"]?.stringValue.flatMap(MetanodeError.Code.init(name:)) ?? byStatus
            throw MetanodeError(code, message)
        }
        guard let value else { throw MetanodeError(.invalidJSON, "the node answered \(path) with non-JSON") }
        return value
    }
}
