/// The JSON bodies of replog's public HTTP API (docs/openapi.yaml), in one place: the nodes
/// encode them and the `replog` client commands decode them, so a renamed field breaks the
/// build instead of silently reading as missing.

/// `201` to `POST /messages`: where the message landed.
public struct AppendResult: Codable, Sendable, Equatable {
    public let seq: Int
    public let message: String
    public let w: Int

    public init(seq: Int, message: String, w: Int) {
        self.seq = seq
        self.message = message
        self.w = w
    }
}

/// The `201` answer to a batch (`POST /messages` with `"messages"`): where it went.
public struct BatchAppendResult: Codable, Sendable, Equatable {
    public let firstSeq: Int
    public let lastSeq: Int
    public let count: Int
    public let w: Int

    public init(firstSeq: Int, lastSeq: Int, w: Int) {
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.count = lastSeq - firstSeq + 1
        self.w = w
    }
}

/// `GET /messages` on any node.
public struct MessagesPage: Codable, Sendable, Equatable {
    public let messages: [LogEntry]

    public init(messages: [LogEntry]) { self.messages = messages }
}

/// How much a read (`?read=` on `GET /messages` and `/messages/stream`) may show.
public enum ReadLevel: String, Sendable, CaseIterable, Codable {
    /// What the cluster committed: entries at or below the node's commit point, which no
    /// failover can replace. The default on every node.
    case committed
    /// What this node holds durably, including entries a failover may still cut (a `w=1`
    /// append that no majority holds yet).
    case local
    /// On the master only: committed, after the master confirmed with a majority that it is
    /// still the master of its epoch, so the read holds every write acknowledged by a
    /// majority before it began.
    case linearizable
}

/// Every error answer: `{"error": "human readable reason", …}`.
public struct ErrorBody: Codable, Sendable, Equatable {
    public let error: String
}

/// `GET /health` on the master.
public struct MasterHealthReport: Codable, Sendable, Equatable {
    public struct Secondary: Codable, Sendable, Equatable {
        public let url: String
        public let status: PeerStatus
        /// Highest seq the secondary holds, as far as the master knows.
        public let ackedSeq: Int
        public let lag: Int
        /// ISO 8601 with milliseconds, `nil` before the first answer.
        public let lastContact: String?
        /// Why it cannot follow this master (or why replication fails), if so.
        public let problem: String?
        /// Failover: the epoch the member said it is in when it last answered (`nil`
        /// before it answered, and on a cluster without failover).
        public var epoch: Int?

        public init(url: String, status: PeerStatus, ackedSeq: Int, lag: Int, lastContact: String?, problem: String?) {
            self.url = url
            self.status = status
            self.ackedSeq = ackedSeq
            self.lag = lag
            self.lastContact = lastContact
            self.problem = problem
        }
    }

    public var role = "master"
    /// The first seq the node still keeps (1 until retention drops the log's start).
    public var firstSeq: Int?
    /// Failover: the epoch this node is in, and the master it follows (itself here);
    /// `nil` on a cluster without failover.
    public var epoch: Int?
    public var master: String?
    public let seq: Int
    /// The highest seq no failover can replace: what a default (`committed`) read shows.
    public var commitSeq: Int?
    public let readOnly: Bool
    public let quorum: Quorum
    public var secondaries: [Secondary]
    public let storageFailure: String?
    /// The running hash of the log at `seq` (16 hex digits); equal on two nodes at the same
    /// seq when they hold the same log.
    public let hash: String?

    public init(seq: Int, readOnly: Bool, quorum: Quorum, secondaries: [Secondary], storageFailure: String?, hash: String? = nil) {
        self.seq = seq
        self.readOnly = readOnly
        self.quorum = quorum
        self.secondaries = secondaries
        self.storageFailure = storageFailure
        self.hash = hash
    }
}

/// `GET /health` on a secondary.
public struct SecondaryHealthReport: Codable, Sendable, Equatable {
    /// `secondary`, or with failover `candidate` / `pre-candidate` during an election.
    public var role = "secondary"
    /// The first seq the node still keeps (1 until retention drops the log's start).
    public var firstSeq: Int?
    /// The seq where this secondary last started its log again because it had fallen
    /// behind the master's `firstSeq`; absent when it never did since it started.
    public var restartedAt: Int?
    /// Failover: the epoch this node is in, and the master it follows (`nil` while it knows
    /// none, and on a cluster without failover).
    public var epoch: Int?
    public var master: String?
    /// Highest contiguous seq it holds durably (what `?read=local` lists).
    public let seq: Int
    /// The highest seq no failover can replace, as far as this node knows: what a default
    /// (`committed`) read shows.
    public var commitSeq: Int?
    public let incarnation: String
    public let logID: String?
    public let delayMs: Int64
    public let errorRate: Double
    /// Entries received out of order, waiting for a gap to fill.
    public let heldBack: Int
    public let storageFailure: String?
    /// The running hash of its log at `seq`, as on the master.
    public let hash: String?

    public init(
        seq: Int, incarnation: String, logID: String?, delayMs: Int64, errorRate: Double, heldBack: Int, storageFailure: String?,
        hash: String? = nil
    ) {
        self.hash = hash
        self.seq = seq
        self.incarnation = incarnation
        self.logID = logID
        self.delayMs = delayMs
        self.errorRate = errorRate
        self.heldBack = heldBack
        self.storageFailure = storageFailure
    }
}

extension AppendRequest: Encodable {
    /// The body a client sends: `timeout` in whole milliseconds, absent fields left out.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if let batch {
            try container.encode(batch, forKey: .messages)
        } else {
            try container.encode(message, forKey: .message)
        }
        try container.encodeIfPresent(w, forKey: .w)
        try container.encodeIfPresent(id, forKey: .id)
        try container.encodeIfPresent(timeout?.milliseconds, forKey: .timeout)
    }
}
