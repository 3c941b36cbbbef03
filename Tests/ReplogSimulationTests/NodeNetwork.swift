import ReplogCore
import ReplogStorage
import Synchronization
@testable import ReplogNode

/// The simulated network between `Node`s: every node reaches every other one, as
/// over HTTP, through an `Endpoint` (its `ReplicationTransport`). A request waits a random
/// delay (so requests overtake each other), may be lost on the way there or its answer on
/// the way back, and fails when either end is down or isolated. A node's requests carry
/// its epoch stamp, and a node's refusal of an older epoch comes back as
/// `TransportError.staleEpoch`, as `HTTPTransport` reports a `409`.
final class NodeNetwork: Sendable {
    struct Faults: Sendable {
        var maxDelay: Duration = .milliseconds(20)
        var lossRate = 0.0
    }

    private struct State {
        /// The node running under each name, and which run of it (a restart is a new run).
        var nodes: [String: (node: Node, run: Int)] = [:]
        var isolated: Set<String> = []
        var faults = Faults()
    }

    private let clock: ManualClock
    private let random: SimulationRandom
    private let state = Mutex(State())

    init(clock: ManualClock, random: SimulationRandom) {
        self.clock = clock
        self.random = random
    }

    func setFaults(_ faults: Faults) { state.withLock { $0.faults = faults } }
    func attach(_ node: Node, as name: String, run: Int) { state.withLock { $0.nodes[name] = (node, run) } }
    func detach(_ name: String) { _ = state.withLock { $0.nodes.removeValue(forKey: name) } }
    func setIsolated(_ isolated: Bool, _ name: String) {
        state.withLock { state in
            if isolated { state.isolated.insert(name) } else { state.isolated.remove(name) }
        }
    }

    /// The node `to` if run `run` of `from` can reach it now: both up, neither isolated.
    private func reach(_ to: String, from: String, run: Int) -> Node? {
        state.withLock { state in
            guard state.nodes[from]?.run == run, !state.isolated.contains(from), !state.isolated.contains(to) else { return nil }
            return state.nodes[to]?.node
        }
    }

    /// One request and its answer between two nodes.
    fileprivate func exchange<Answer: Sendable>(
        from endpoint: Endpoint, to peer: String, _ serve: (Node) async throws -> Answer
    ) async throws -> Answer {
        let faults = state.withLock { $0.faults }
        try await clock.sleep(for: random.duration(.zero...faults.maxDelay))
        guard let node = reach(peer, from: endpoint.name, run: endpoint.run), !random.chance(faults.lossRate) else {
            throw TransportError.unreachable(peer)
        }
        let answer: Answer
        do {
            answer = try await serve(node)
        } catch let stale as Node.StaleEpoch {
            throw TransportError.staleEpoch(stale.answer.epoch)
        }
        try await clock.sleep(for: random.duration(.zero...faults.maxDelay))
        // A node that crashed (or got cut off) after serving cannot answer any more.
        guard reach(peer, from: endpoint.name, run: endpoint.run) === node, !random.chance(faults.lossRate) else {
            throw TransportError.timedOut
        }
        return answer
    }

    func endpoint(for name: String, run: Int) -> Endpoint { Endpoint(network: self, name: name, run: run) }

    /// How one run of one node sends: what `HTTPTransport` is for a real node.
    final class Endpoint: ReplicationTransport {
        let network: NodeNetwork
        let name: String
        let run: Int
        /// Set by the node while it is master: the stamp its requests carry.
        let stamps = EpochStamps()

        init(network: NodeNetwork, name: String, run: Int) {
            self.network = network
            self.name = name
            self.run = run
        }

        func replicate(_ batch: RecordBatch, of logID: String, to peer: String, timeout: Duration) async throws -> ReplicaState {
            let keyed = try batch.keyedEntries()
            let stamped = stamps.stampAndCommit(for: peer)
            return try await network.exchange(from: self, to: peer) {
                try await $0.receive(keyed, of: logID, stamp: stamped?.stamp, commit: stamped?.commit)
            }
        }

        func probe(_ peer: String, timeout: Duration) async throws -> ReplicaState {
            let stamped = stamps.stampAndCommit(for: peer)
            return try await network.exchange(from: self, to: peer) { try await $0.probe(stamp: stamped?.stamp, commit: stamped?.commit) }
        }

        func hash(of peer: String, at seq: Int, timeout: Duration) async throws -> String? {
            try await network.exchange(from: self, to: peer) { $0.hash(at: seq) }
        }

        func truncate(_ peer: String, _ request: TruncateRequest, timeout: Duration) async throws -> ReplicaState {
            let stamp = stamps.stamp(for: peer)
            return try await network.exchange(from: self, to: peer) { try await $0.truncate(request, stamp: stamp) }
        }

        func requestVote(_ request: VoteRequest, from peer: String, timeout: Duration) async throws -> VoteAnswer {
            try await network.exchange(from: self, to: peer) { try await $0.vote(request) }
        }
    }
}
