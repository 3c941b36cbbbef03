/// replog's internal HTTP endpoint between a master and its secondaries, in one place.
///
/// - `POST /replicate` delivers a batch: the log's own binary records (`RecordFraming`,
///   checksums included) with content type `recordsContentType` and the master log's id
///   in the `logHeader` header. A person may send JSON instead (see `SecondaryRoutes`).
/// - `GET /replicate` is the heartbeat: it asks what the secondary holds and delivers nothing.
///
/// Both answer `200` with a `ReplicaState` as JSON, or `409` when the secondary follows
/// another master log. `/health` is for people and may change; this is for the master.
public enum InternalWire {
    public static let replicatePath = "/replicate"
    /// `GET /replicate/hash?seq=N`: the secondary's running hash at seq N (`LogHashAnswer`),
    /// for the master to find where a diverged secondary's log parts from its own.
    public static let hashPath = "/replicate/hash"
    public static let recordsContentType = "application/x-replog-records"
    public static let logHeader = "Replog-Log"
}

/// A secondary's answer to `GET /replicate/hash?seq=N`: its hash at `seq`, nil when it
/// does not hold that seq.
public struct LogHashAnswer: Codable, Sendable, Equatable {
    public let seq: Int
    public let hash: String?

    public init(seq: Int, hash: String?) {
        self.seq = seq
        self.hash = hash
    }
}

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
    /// The running hash of its log at `seq` (`HashChain`): the master compares it with its
    /// own at that seq to see that the secondary holds the same log. `nil` from a
    /// secondary that keeps no chain (an older version).
    public var hash: String?

    public init(seq: Int, incarnation: String, logID: String?, storageFailure: String? = nil, hash: String? = nil) {
        self.seq = seq
        self.incarnation = incarnation
        self.logID = logID
        self.storageFailure = storageFailure
        self.hash = hash
    }
}
