import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import ReplogCore
import ReplogStorage
import ReplogTestKit
import Synchronization
@testable import ReplogNode

/// A master and secondaries in one process, on the in-memory transport and a manual clock.
final class TestCluster: Sendable {
    let clock = ManualClock()
    let transport: InMemoryTransport
    /// The master's node, as `replog master` runs it.
    let masterNode: MasterNode
    var master: Master { masterNode.master }
    let names: [String]
    private let secondaries: Mutex<[String: SecondaryNode]>

    init(
        secondaries: Int = 2,
        retryPolicy: RetryPolicy = RetryPolicy(initialBackoff: .milliseconds(100), maxBackoff: .seconds(1)),
        heartbeatInterval: Duration = .seconds(1),
        thresholds: PeerHealth.Thresholds = .init(suspectAfterMisses: 2, unhealthyAfterMisses: 4),
        secondarySettings: SecondarySettings = SecondarySettings(),
        replicationLinger: Duration = .zero,
        random: @escaping @Sendable () -> Double = { 0.5 },
        masterStore: any LogStore = InMemoryLogStore()
    ) {
        let clock = self.clock
        transport = InMemoryTransport(clock: clock)
        names = (1...max(secondaries, 1)).prefix(secondaries).map { "s\($0)" }
        var secondaries: [String: SecondaryNode] = [:]
        for name in names {
            let secondary = try! SecondaryNode(settings: secondarySettings, clock: clock, random: random)  // no data dir: nothing to fail
            transport.connect(secondary.node, as: name)
            secondaries[name] = secondary
        }
        self.secondaries = Mutex(secondaries)
        masterNode = try! MasterNode(  // no data dir: nothing to fail
            settings: MasterSettings(
                secondaries: names, heartbeatInterval: heartbeatInterval, healthThresholds: thresholds,
                replicationLinger: replicationLinger, retryPolicy: retryPolicy),
            store: masterStore, transport: transport, clock: clock, random: random)
    }

    /// The secondary role of node `name`.
    func replica(_ name: String) -> Node { secondaries.withLock { $0[name]! }.replica }

    /// Simulates a crash and a restart with an empty in-memory log (a new incarnation).
    func restartEmpty(_ name: String, settings: SecondarySettings = SecondarySettings()) {
        let secondary = try! SecondaryNode(settings: settings, clock: clock)
        secondaries.withLock { $0[name] = secondary }
        transport.connect(secondary.node, as: name)
    }

    /// Every node's visible log, master first.
    func logs() throws -> [[LogEntry]] {
        [try master.read(from: 1, limit: .max)] + (try names.map { try replica($0).read(from: 1, limit: .max) })
    }

    /// Runs `body` while the master's replication streams (and, if asked, heartbeats) run.
    func withReplication<T: Sendable>(
        heartbeats: Bool = false, _ body: @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await self.master.runReplicationStreams()
                return nil
            }
            if heartbeats {
                group.addTask {
                    await self.master.monitorHeartbeats()
                    return nil
                }
            }
            let result = try await body()
            group.cancelAll()
            return result
        }
    }

    /// The condition of `advance(by:until:)` did not hold within its real-time limit.
    struct ConditionNeverHeld: Error, CustomStringConvertible {
        let limit: Duration
        let simulated: Duration
        var description: String { "the condition did not hold after \(limit) of real time (\(simulated) on the manual clock)" }
    }

    /// Moves the manual clock on in `step`s, whenever something sleeps on it, until
    /// `condition` holds. Between checks it yields real time briefly so other tasks run;
    /// what the test asserts never depends on how long that takes.
    /// - Throws: `ConditionNeverHeld` after `limit` of real time, so that a condition that
    ///   never comes true fails the test with a reason instead of running into its time limit.
    func advance(by step: Duration, until condition: @Sendable () -> Bool, limit: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else { throw ConditionNeverHeld(limit: limit, simulated: clock.now) }
            if clock.sleeperCount > 0 { clock.advance(by: step) }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    func append(_ message: String, w: Int? = nil, id: String? = nil, timeout: Duration? = nil) async throws -> Master.AppendResult {
        try await master.append(AppendRequest(message: message, w: w, id: id, timeout: timeout))
    }
}

/// Numbers in 0..<1 from a seeded generator, shareable across tasks.
final class SeededRandom: Sendable {
    private let generator: Mutex<SplitMix64>
    init(seed: UInt64) { generator = Mutex(SplitMix64(seed: seed)) }
    func next() -> Double { generator.withLock { $0.unit() } }
}

/// A JSON object answer of the router, or an empty one if the body is not one.
func json(_ buffer: ByteBuffer) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(buffer: buffer))) as? [String: Any] ?? [:]
}
