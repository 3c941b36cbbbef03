import ReplogCore
import ReplogStorage
import Synchronization
@testable import ReplogNode

/// The simulated network between the master and its secondaries (nodes as `replog secondary`
/// runs them). Every request may be
/// delayed (so requests overtake each other), lost before it arrives, delivered twice, or
/// delivered with its answer lost; a secondary may be down or cut off by a partition.
/// All choices come from the schedule's seeded generator.
final class FaultyTransport: ReplicationTransport {
    struct Faults: Sendable {
        var maxDelay: Duration = .milliseconds(50)
        var lossRate = 0.0
        var answerLossRate = 0.0
        var duplicateRate = 0.0
    }

    private struct Link {
        var node: Node?
        var partitioned = false
    }

    private let clock: ManualClock
    private let random: SimulationRandom
    private let links = Mutex<[String: Link]>([:])
    private let faults = Mutex(Faults())

    init(clock: ManualClock, random: SimulationRandom) {
        self.clock = clock
        self.random = random
    }

    func setFaults(_ faults: Faults) { self.faults.withLock { $0 = faults } }
    func connect(_ node: Node?, as peer: String) { links.withLock { $0[peer, default: Link()].node = node } }
    func setPartitioned(_ partitioned: Bool, _ peer: String) { links.withLock { $0[peer, default: Link()].partitioned = partitioned } }

    private func reachable(_ peer: String) -> Node? {
        links.withLock { link in link[peer].flatMap { $0.partitioned ? nil : $0.node } }
    }

    func replicate(_ batch: RecordBatch, of logID: String, to peer: String, timeout: Duration) async throws -> ReplicaState {
        let entries = try batch.entries()
        let faults = self.faults.withLock { $0 }
        try await clock.sleep(for: random.duration(.zero...faults.maxDelay))
        guard let node = reachable(peer), !random.chance(faults.lossRate) else { throw TransportError.unreachable(peer) }
        var state = try await node.receive(entries, of: logID, stamp: nil)
        if random.chance(faults.duplicateRate) {
            try await clock.sleep(for: random.duration(.zero...faults.maxDelay))
            if reachable(peer) === node { state = try await node.receive(entries, of: logID, stamp: nil) }
        }
        try await clock.sleep(for: random.duration(.zero...faults.maxDelay))
        // A process that crashed (or got cut off) after storing cannot answer any more.
        guard reachable(peer) === node, !random.chance(faults.answerLossRate) else { throw TransportError.timedOut }
        return state
    }

    func probe(_ peer: String, timeout: Duration) async throws -> ReplicaState {
        try await clock.sleep(for: random.duration(.zero...self.faults.withLock { $0.maxDelay }))
        guard let node = reachable(peer) else { throw TransportError.unreachable(peer) }
        return try await node.probe(stamp: nil)
    }

    func hash(of peer: String, at seq: Int, timeout: Duration) async throws -> String? {
        try await clock.sleep(for: random.duration(.zero...self.faults.withLock { $0.maxDelay }))
        guard let node = reachable(peer) else { throw TransportError.unreachable(peer) }
        return node.hash(at: seq)
    }
}
