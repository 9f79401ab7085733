import Benchmark
import Foundation
import Logging
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeKernel
import MetanodeStorage

// Issue 2's figures:
//   kv put/get through the host vtable vs the same calls straight to RocksDB (goal: <= 10% overhead)
//   in-process bus publish -> deliver (goal: >= 1,000,000 messages/s)
//   `metanode node start` to ready with six trivial plugins (goal: <= 300 ms)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .cpuTotal], timeUnits: .nanoseconds, warmupIterations: 3,
        maxDuration: .seconds(5), maxIterations: 200)

    // kv: one sample = 1000 operations, so the figures read per 1000 ops; the vtable and direct variants run the
    // same C loop body against the same kind of database.
    for (name, function) in [("kv put via host vtable", \Fixture.putVtable), ("kv put direct RocksDB", \Fixture.putDirect),
                             ("kv get via host vtable", \Fixture.getVtable), ("kv get direct RocksDB", \Fixture.getDirect)] {
        Benchmark(name, configuration: .init(scalingFactor: .kilo)) { benchmark in
            let call = Fixture.shared[keyPath: function]
            var key = UInt64.random(in: 0..<1_000_000_000)
            for _ in benchmark.scaledIterations {
                key &+= 1
                let status = call(key % Fixture.keySpace)
                precondition(status == 0 || status == 3, "\(name) failed with status \(status)")
            }
        }
    }

    // The same comparison interleaved: each sample alternates blocks of 100 direct and 100 vtable operations, so
    // machine noise hits both alike; reports ns/op of each (compare the medians: a per-sample ratio would lose the
    // samples where the vtable came out faster, as metrics cannot be negative).
    for (name, vtable, direct) in [("kv get overhead, interleaved", \Fixture.getVtable, \Fixture.getDirect),
                                   ("kv put overhead, interleaved", \Fixture.putVtable, \Fixture.putDirect)] {
        Benchmark(name, configuration: .init(metrics: [Fixture.vtableNs, Fixture.directNs],
                                             maxIterations: 100)) { benchmark in
            let fixture = Fixture.shared
            let viaVtable = fixture[keyPath: vtable], straight = fixture[keyPath: direct]
            var key = UInt64.random(in: 0..<1_000_000_000)
            var vtableTime = Duration.zero, directTime = Duration.zero
            for _ in 0..<20 {
                for (call, total) in [(straight, 0), (viaVtable, 1)] {
                    let started = ContinuousClock.now
                    for _ in 0..<100 {
                        key &+= 1
                        let status = call(key % Fixture.keySpace)
                        precondition(status == 0 || status == 3, "\(name) failed with status \(status)")
                    }
                    let elapsed = ContinuousClock.now - started
                    if total == 0 { directTime += elapsed } else { vtableTime += elapsed }
                }
            }
            let vtableNs = Double(vtableTime.components.attoseconds) / 1e9 / 2000
                + Double(vtableTime.components.seconds) * 1e9 / 2000
            let directNs = Double(directTime.components.attoseconds) / 1e9 / 2000
                + Double(directTime.components.seconds) * 1e9 / 2000
            benchmark.measurement(Fixture.vtableNs, Int(vtableNs))
            benchmark.measurement(Fixture.directNs, Int(directNs))
        }
    }

    // bus: one sample publishes 50,000 messages from plugin bench-pub and waits until plugin bench-sub's on_message
    // has seen every one: publish, the subscriber's mailbox and its executor thread. Reported as messages/s.
    Benchmark("bus publish->deliver, 50k x 64-byte messages",
              configuration: .init(metrics: [.wallClock, .cpuTotal, Fixture.messagesPerSecond], timeUnits: .milliseconds,
                                   maxIterations: 60)) { benchmark in
        let fixture = Fixture.shared
        let batch: UInt64 = 50_000
        let before = fixture.received()
        let started = ContinuousClock.now
        benchmark.startMeasurement()
        var sent: UInt64 = 0
        while sent < batch {
            // Stay under the mailbox depth (65,536) so nothing is dropped: this measures delivery, not loss.
            let chunk = min(8192, batch - sent)
            while sent - (fixture.received() - before) > 32_768 { sched_yield() }
            precondition(fixture.publish(chunk, 64) == 0)
            sent += chunk
        }
        while fixture.received() - before < batch { sched_yield() }
        benchmark.stopMeasurement()
        let seconds = Double((ContinuousClock.now - started).components.attoseconds) / 1e18
            + Double((ContinuousClock.now - started).components.seconds)
        benchmark.measurement(Fixture.messagesPerSecond, Int(Double(batch) / seconds))
    }

    // Issue 3: two node processes on loopback, through the encrypted transport and the plugin ABI both ways.
    Benchmark("net bulk, 64 KiB messages between two nodes",
              configuration: .init(metrics: [.wallClock, NetFixture.bytesPerSecond, NetFixture.messagesPerSecond,
                                             NetFixture.cpuPerMessage],
                                   timeUnits: .milliseconds, warmupIterations: 1, maxDuration: .seconds(20),
                                   maxIterations: 20)) { benchmark in
        NetFixture.shared.transfer(benchmark, count: 4096, size: 64 * 1024)  // 256 MiB per sample
    }
    Benchmark("net messages, 256 bytes between two nodes",
              configuration: .init(metrics: [.wallClock, NetFixture.messagesPerSecond, NetFixture.cpuPerMessage],
                                   timeUnits: .milliseconds, warmupIterations: 1, maxDuration: .seconds(20),
                                   maxIterations: 20)) { benchmark in
        NetFixture.shared.transfer(benchmark, count: 200_000, size: 256)
    }

    // node start: spawn the real binary with six signed, installed, enabled plugins; time until it writes
    // run/http.addr (every plugin started and the API listening); then SIGTERM it.
    Benchmark("node start to ready, 6 plugins",
              configuration: .init(metrics: [.wallClock], timeUnits: .milliseconds, warmupIterations: 1,
                                   maxDuration: .seconds(20), maxIterations: 30)) { benchmark in
        try StartupFixture.shared.startOnce(benchmark)
    }
}

