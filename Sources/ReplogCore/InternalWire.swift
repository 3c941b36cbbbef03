import Foundation

/// replog's internal HTTP endpoint between a master and its secondaries, in one place.
///
/// - `POST /replicate` delivers a batch: the log's own binary records (`RecordFraming`,
///   checksums included) with content type `recordsContentType` and the master log's id
///   in the `logHeader` header. A person may send JSON instead (see `SecondaryRoutes`).
/// - `GET /replicate` is the heartbeat: it asks what the secondary holds and delivers nothing.
///
/// Both answer `200` with a `ReplicaState` as JSON, or `409` with the `InternalRefusal`
/// that says why not (another master log, another message at a seq it holds, an older
/// epoch's master). `/health` is for people and may change; this is for the master.
public enum InternalWire {
    public static let replicatePath = "/replicate"
    /// `GET /replicate/hash?seq=N`: the secondary's running hash at seq N (`LogHashAnswer`),
    /// for the master to find where a diverged secondary's log parts from its own.
    public static let hashPath = "/replicate/hash"
    public static let recordsContentType = "application/x-replog-records"
    public static let logHeader = "Replog-Log"
    /// `POST /replicate/vote`: a candidate asks for a vote (`VoteRequest` → `VoteAnswer`).
    public static let votePath = "/replicate/vote"
    /// `POST /replicate/truncate` with a `TruncateRequest`: the master tells a member whose
    /// log parts from its own where to cut the rest (`ReplicaState` after the cut).
    public static let truncatePath = "/replicate/truncate"
    /// With failover, every request of a master carries its `EpochStamp` as JSON here.
    public static let epochHeader = "Replog-Epoch"
    /// With failover, every request of a master carries here the commit point the member
    /// may learn: the highest seq no failover can replace, as far as the member holds this
    /// master's log.
    public static let commitHeader = "Replog-Commit"
    /// On a delivery to a secondary that fell behind the master's first kept seq
    /// (retention): `<first seq> <64 hex digits of the hash chain's link before it>`. The
    /// secondary starts its log again there. Signed with the log id when there is a secret.
    public static let logStartHeader = "Replog-Log-Start"
}

/// What a master of an epoch says about itself in every request to a member (failover):
/// the member refuses an older epoch, follows a newer one, and learns the cluster from it.
public struct EpochStamp: Codable, Sendable, Equatable {
    public var epoch: Int
    /// The master's own URL (where `307` sends clients).
    public var master: String
    /// Every member, the master included.
    public var members: [String]
    /// The receiving member's URL, as the master knows it.
    public var you: String
    /// The master's epoch history: a member that holds its log through the last start
    /// holds all of it.
    public var history: EpochHistory
    /// The master's hash at its last start's seq: a member with the same hash there holds
    /// the master's log through it.
    public var startHash: String?

    public init(epoch: Int, master: String, members: [String], you: String, history: EpochHistory, startHash: String?) {
        self.epoch = epoch
        self.master = master
        self.members = members
        self.you = you
        self.history = history
        self.startHash = startHash
    }

    /// The header's text (compact JSON, one line).
    public var headerValue: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    public init?(headerValue: String) {
        guard let stamp = try? JSONDecoder().decode(Self.self, from: Data(headerValue.utf8)) else { return nil }
        self = stamp
    }
}

/// Why a member refused a master's request: the `refusal` in the body of its `409`, so that
/// the master reads what the refusal is instead of guessing it from the rest of the body.
public enum InternalRefusal: String, Codable, Sendable {
    /// The request came from an older epoch's master (the body is a `StaleEpochAnswer`).
    case staleEpoch
    /// The member follows another master log.
    case foreignLog
    /// The member holds another message at a seq the delivery carries.
    case diverged

    /// The body of any `409` from a member.
    public struct Answer: Decodable, Sendable {
        /// Absent from nodes that predate typed refusals (then `epoch` meant a stale epoch).
        public let refusal: InternalRefusal?
        public let error: String?
        public let epoch: Int?

        /// What the refusal is.
        public var kind: InternalRefusal { refusal ?? (epoch != nil ? .staleEpoch : .foreignLog) }
    }
}

/// A member's refusal of a request from an older epoch's master (`409`, with `epoch`).
public struct StaleEpochAnswer: Codable, Sendable, Equatable {
    public var refusal = InternalRefusal.staleEpoch
    public var error: String
    public var epoch: Int
    public var master: String?

    public init(epoch: Int, master: String?) {
        self.error = "stale epoch: this node is in epoch \(epoch)" + (master.map { " and follows \($0)" } ?? "")
        self.epoch = epoch
        self.master = master
    }
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
    /// The epoch this node is in (failover; nil from a node that has seen none).
    public var epoch: Int?

    public init(seq: Int, incarnation: String, logID: String?, storageFailure: String? = nil, hash: String? = nil, epoch: Int? = nil) {
        self.seq = seq
        self.incarnation = incarnation
        self.logID = logID
        self.storageFailure = storageFailure
        self.hash = hash
        self.epoch = epoch
    }
}

/// The body of `POST /replicate/truncate` (signed with the rest of the request).
///
/// "Cut everything after `after`, unless your hash at `after + 1` is `nextHash`": the master
/// found where the member's log parts from its own by asking for hashes, and the member may
/// have caught up meanwhile (a cut that an earlier answer asked for, then replication). A
/// member that holds the master's entry at `after + 1` holds the master's log up to there
/// (the hashes chain), so it cuts nothing that the master wrote.
public struct TruncateRequest: Codable, Sendable, Equatable {
    public var after: Int
    /// The master's running hash at `after + 1`, if it holds that seq.
    public var nextHash: String?

    public init(after: Int, nextHash: String?) {
        self.after = after
        self.nextHash = nextHash
    }
}
