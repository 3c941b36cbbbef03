import ReplogCore
import ReplogStorage
import Synchronization

/// Connects a master to secondaries (`Node`s, as `replog secondary` runs them) in
/// the same process, with faults a test sets per link: delay, partition, failures. Delays
/// run on the injected clock.
///
/// The course's `MockedTransport`: `setDelay(.seconds(5), to: "s1")`, then an
/// `append("m1")` with `w = 3` is answered when the clock has moved 5 s.
///
/// With `stamps` (the master node's), requests carry the epoch stamp and the commit point
/// as over HTTP, so that an elected master's members hear its epoch.
public final class InMemoryTransport: ReplicationTransport {
    private struct Link {
        var node: Node?
        var delay: Duration = .zero
        var partitioned = false
        /// Requests still to fail (before reaching the replica).
        var failuresLeft = 0
    }

    private let clock: any NodeClock
    private let stamps: EpochStamps?
    private let links = Mutex<[String: Link]>([:])
    private let deliveries = Mutex(0)

    public init(clock: any NodeClock, stamps: EpochStamps? = nil) {
        self.clock = clock
        self.stamps = stamps
    }

    /// Connects (or reconnects, after a restart) a secondary under the name `peer`.
    public func connect(_ node: Node, as peer: String) {
        links.withLock { $0[peer, default: Link()].node = node }
    }

    /// Simulates a crash: `peer` stops answering until `connect` is called again.
    public func disconnect(_ peer: String) {
        links.withLock { $0[peer, default: Link()].node = nil }
    }

    /// Every request to `peer` waits `delay` on the clock before it arrives.
    public func setDelay(_ delay: Duration, to peer: String) {
        links.withLock { $0[peer, default: Link()].delay = delay }
    }

    /// While partitioned, requests to `peer` fail as unreachable.
    public func setPartitioned(_ partitioned: Bool, _ peer: String) {
        links.withLock { $0[peer, default: Link()].partitioned = partitioned }
    }

    /// The next `count` requests to `peer` fail before reaching it.
    public func failNext(_ count: Int, to peer: String) {
        links.withLock { $0[peer, default: Link()].failuresLeft = count }
    }

    /// Replication requests delivered so far (over all links).
    public var deliveryCount: Int { deliveries.withLock { $0 } }

    public func replicate(
        _ batch: RecordBatch, of logID: String, to peer: String, timeout: Duration
    ) async throws -> ReplicaState {
        let node = try await reach(peer)
        deliveries.withLock { $0 += 1 }
        let stamped = stamps?.stampAndCommit(for: peer)
        return try await staleAsOverHTTP { try await node.receive(try batch.keyedEntries(), of: logID, stamp: stamped?.stamp, commit: stamped?.commit) }
    }

    public func probe(_ peer: String, timeout: Duration) async throws -> ReplicaState {
        let node = try await reach(peer)
        let stamped = stamps?.stampAndCommit(for: peer)
        return try await staleAsOverHTTP { try await node.probe(stamp: stamped?.stamp, commit: stamped?.commit) }
    }

    /// A member's refusal of an older epoch, as the HTTP transport reads its `409`.
    private func staleAsOverHTTP(_ request: () async throws -> ReplicaState) async throws -> ReplicaState {
        do { return try await request() } catch let stale as Node.StaleEpoch { throw TransportError.staleEpoch(stale.answer.epoch) }
    }

    public func hash(of peer: String, at seq: Int, timeout: Duration) async throws -> String? {
        try await reach(peer).hash(at: seq)
    }

    private func reach(_ peer: String) async throws -> Node {
        let delay = links.withLock { $0[peer]?.delay ?? .zero }
        if delay > .zero { try await clock.sleep(for: delay) }
        return try links.withLock { links in
            var link = links[peer] ?? Link()
            defer { links[peer] = link }
            guard let node = link.node, !link.partitioned else { throw TransportError.unreachable(peer) }
            if link.failuresLeft > 0 {
                link.failuresLeft -= 1
                throw TransportError.badStatus(500)
            }
            return node
        }
    }
}
