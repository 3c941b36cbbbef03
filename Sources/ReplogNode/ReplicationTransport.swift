import ReplogCore
import ReplogStorage

/// How the master talks to its secondaries. Two implementations: `HTTPTransport`
/// for real nodes and `InMemoryTransport` for tests that inject delays and failures.
public protocol ReplicationTransport: Sendable {
    /// Delivers a batch of consecutive entries (the log's own records) to `peer` and returns
    /// what it holds afterwards. Delivery is idempotent: resending entries the peer already
    /// holds is harmless.
    func replicate(_ batch: RecordBatch, of logID: String, to peer: String, timeout: Duration) async throws -> ReplicaState

    /// A heartbeat: asks `peer` what it holds, without sending anything.
    func probe(_ peer: String, timeout: Duration) async throws -> ReplicaState

    /// Asks `peer` for its running hash at `seq` (nil when it does not hold `seq`).
    func hash(of peer: String, at seq: Int, timeout: Duration) async throws -> String?

    /// Failover: tells `peer` to cut its log where it parts from this master's.
    func truncate(_ peer: String, _ request: TruncateRequest, timeout: Duration) async throws -> ReplicaState

    /// Failover: asks `peer` for its vote.
    func requestVote(_ request: VoteRequest, from peer: String, timeout: Duration) async throws -> VoteAnswer

    /// Where the replication stream to `peer` runs best (the thread its answers arrive on),
    /// or nil to run it where the master's other tasks run.
    func executor(for peer: String) -> (any TaskExecutor)?
}

extension ReplicationTransport {
    public func executor(for peer: String) -> (any TaskExecutor)? { nil }

    public func truncate(_ peer: String, _ request: TruncateRequest, timeout: Duration) async throws -> ReplicaState {
        throw TransportError.unreachable(peer)
    }

    public func requestVote(_ request: VoteRequest, from peer: String, timeout: Duration) async throws -> VoteAnswer {
        throw TransportError.unreachable(peer)
    }
}

extension ReplicationTransport {
    /// Delivers `entries` (consecutive, not empty), encoded as records.
    public func replicate(_ entries: [LogEntry], of logID: String, to peer: String, timeout: Duration) async throws -> ReplicaState {
        try await replicate(RecordBatch(entries), of: logID, to: peer, timeout: timeout)
    }
}

/// Failures a transport reports.
public enum TransportError: Error, Equatable, CustomStringConvertible {
    /// The peer could not be reached (connection refused, partition, crashed node).
    case unreachable(String)
    /// The peer answered with a status other than 200.
    case badStatus(Int)
    /// The peer did not answer within the timeout.
    case timedOut
    /// The peer refused this log (409): it holds another master log, or other messages at
    /// seqs it holds (it diverged).
    case foreignLog(String)
    /// The peer refused this node's proof of the cluster secret (401).
    case unauthorized
    /// The peer is in a later epoch than this master's (failover): this master is deposed.
    case staleEpoch(Int)

    public var description: String {
        switch self {
        case .unreachable(let peer): "\(peer) is unreachable"
        case .badStatus(let code): "peer answered HTTP \(code)"
        case .timedOut: "peer did not answer in time"
        case .foreignLog(let reason): reason
        case .staleEpoch(let epoch): "the peer is in epoch \(epoch), later than this master's"
        case .unauthorized:
            "the secondary refused this master's proof of the cluster secret (401): give every node the same "
                + "--cluster-secret or --cluster-secret-file"
        }
    }
}
