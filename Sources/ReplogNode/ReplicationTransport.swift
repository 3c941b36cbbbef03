import ReplogCore

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
