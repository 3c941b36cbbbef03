import ReplogCore

/// A secondary's answer to the master: "I hold every message up to `seq`".
///
/// `incarnation` changes every time the secondary process starts, so the master can
/// tell a node that restarted (and may have lost its log) from one that merely lagged.
public struct ReplicaState: Codable, Sendable, Equatable {
    /// Highest contiguous seq the secondary holds (and lists).
    public var seq: Int
    /// Random id of this run of the secondary process.
    public var incarnation: String
    /// The master log this secondary follows (`nil` while it holds nothing).
    /// A master restarted without its data starts a new log, and a secondary that
    /// still holds the old one refuses it instead of silently mixing the two.
    public var logID: String?
    /// Why the secondary can store nothing more (its disk failed an fsync), if so.
    public var storageFailure: String?

    public init(seq: Int, incarnation: String, logID: String?, storageFailure: String? = nil) {
        self.seq = seq
        self.incarnation = incarnation
        self.logID = logID
        self.storageFailure = storageFailure
    }
}

/// How the master talks to its secondaries. Two implementations: `HTTPTransport`
/// for real nodes and `InMemoryTransport` for tests that inject delays and failures.
public protocol ReplicationTransport: Sendable {
    /// Delivers a batch of consecutive entries to `peer` and returns what it holds afterwards.
    /// Delivery is idempotent: resending entries the peer already holds is harmless.
    func replicate(_ entries: [LogEntry], of logID: String, to peer: String, timeout: Duration) async throws -> ReplicaState

    /// A heartbeat: asks `peer` what it holds, without sending anything.
    func probe(_ peer: String, timeout: Duration) async throws -> ReplicaState
}

/// Failures a transport reports.
public enum TransportError: Error, Equatable, CustomStringConvertible {
    /// The peer could not be reached (connection refused, partition, crashed node).
    case unreachable(String)
    /// The peer answered with a status other than 200.
    case badStatus(Int)
    /// The peer did not answer within the timeout.
    case timedOut
    /// The peer holds a different master log and refused this one.
    case foreignLog(String)

    public var description: String {
        switch self {
        case .unreachable(let peer): "\(peer) is unreachable"
        case .badStatus(let code): "peer answered HTTP \(code)"
        case .timedOut: "peer did not answer in time"
        case .foreignLog(let reason): reason
        }
    }
}
