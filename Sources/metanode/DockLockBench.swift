import ArgumentParser
import Foundation
import MetanodeCore
import MetanodeKernel

/// `metanode bench docklock`: container lifecycles through the running node's local API, as an orchestrator drives
/// them — each request creates, starts, waits for and deletes one container and returns its signed receipt.
struct DockLockBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docklock",
        abstract: "Container lifecycle latency and receipts per second through the running node's API.",
        discussion: """
            Phase 1: --runs sequential runs of the command (default /bin/true), timing request → result \
            (min / median / max). Phase 2: --clients concurrent clients for --seconds, counting signed receipts \
            per second. Needs a running node with DockLock and the image imported (make bench-docklock does both, \
            and times crun and runc beside it).
            """)

    @OptionGroup var options: CommonOptions
    @Option(help: "Image reference.") var image = "busybox"
    @Option(help: "Sequential runs for the latency phase.") var runs = 200
    @Option(help: "Warm-up runs, not counted.") var warmup = 10
    @Option(help: "Concurrent clients for the throughput phase (0 skips it).") var clients = 2
    @Option(help: "Length of the throughput phase.") var seconds = 5
    @Argument(parsing: .postTerminator, help: "The command (default: /bin/true).") var command: [String] = []

    func run() async throws {
        let data = options.dataDirectory
        let arguments = command.isEmpty ? ["/bin/true"] : command
        let body = JSONValue.object(["image": .string(image), "command": .array(arguments.map(JSONValue.string))])
            .serializedBytes()
        guard let address = data.runningNodeAddress() else {
            throw ValidationError("no node is running from \(data.root) (start it with `metanode node start`)")
        }
        let path = "\(DockLockCommand.apiPrefix)/run"

        @Sendable func once() throws -> Double {
            let start = ContinuousClock.now
            let response = try LoopbackHTTPClient.request("POST", address, path, body: body, timeoutSeconds: 60)
            let elapsed = ContinuousClock.now - start
            guard response.status == 200, let answer = try? JSONValue.parse(response.body),
                  answer["exitCode"]?.intValue == 0, answer["receipt"] != nil
            else {
                throw ValidationError("run failed (HTTP \(response.status)): \(response.text.prefix(300))")
            }
            return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        }

        for _ in 0..<warmup { _ = try once() }
        var latencies: [Double] = []
        for _ in 0..<runs { latencies.append(try once()) }
        latencies.sort()
        let median = latencies.isEmpty ? 0 : latencies[latencies.count / 2]

        var perSecond = 0.0
        if clients > 0 {
            let deadline = ContinuousClock.now + .seconds(seconds)
            let started = ContinuousClock.now
            // Each client counts its own runs; blocking HTTP calls stay on their own threads.
            let totals = await withTaskGroup(of: (Int, Int).self) { group in
                for _ in 0..<clients {
                    group.addTask {
                        var done = 0, failed = 0
                        while ContinuousClock.now < deadline {
                            if (try? once()) != nil { done += 1 } else { failed += 1 }
                        }
                        return (done, failed)
                    }
                }
                return await group.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
            }
            let elapsed = ContinuousClock.now - started
            perSecond = Double(totals.0) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            if totals.1 > 0 { Output.warn("\(totals.1) runs failed during the throughput phase") }
        }
        let json = JSONValue.object([
            "command": .array(arguments.map(JSONValue.string)), "runs": .int(Int64(latencies.count)),
            "minMs": .double(latencies.first ?? 0), "medianMs": .double(median), "maxMs": .double(latencies.last ?? 0),
            "clients": .int(Int64(clients)), "receiptsPerSecond": .double(perSecond),
        ])
        Output.emit(options, json: json, text: String(
            format: "docklock API, %@: %d sequential runs  min %.2f ms  median %.2f ms  max %.2f ms\n"
                + "%d concurrent clients for %d s: %.0f runs (signed receipts) per second",
            arguments.joined(separator: " "), latencies.count, latencies.first ?? 0, median, latencies.last ?? 0,
            clients, seconds, perSecond))
    }
}
